// The portable weight quantisers and the byte transpose of weight_quantize.h.
#include "weight_quantize.h"
#include <algorithm>
#include <cmath>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace bitops::cpu {

void quantize_ternary_weights(const float* w, int64_t k, float d, int64_t n0, int64_t n1, int8_t* wq) {
  for (int64_t n = n0; n < n1; ++n) {
    const float* src = w + n * k;
    int8_t* dst = wq + (n - n0) * k;
    for (int64_t i = 0; i < k; ++i) {
      const float q = std::nearbyint(src[i] / d);  // the default rounding mode: half to even
      dst[i] = std::isnan(q) ? 0 : q >= 1.0f ? 1 : q <= -1.0f ? -1 : 0;
    }
  }
}

void quantize_binary_weights(const float* w, int64_t k, int64_t n0, int64_t n1, int8_t* wq) {
  for (int64_t n = n0; n < n1; ++n) {
    const float* src = w + n * k;
    int8_t* dst = wq + (n - n0) * k;
    for (int64_t i = 0; i < k; ++i) dst[i] = src[i] >= 0.0f ? 1 : -1;
  }
}

namespace {

void transpose_scalar(const int8_t* src, int64_t ld_src, int64_t i0, int64_t i1, int64_t j0, int64_t j1, int8_t* dst,
                      int64_t ld_dst) {
  for (int64_t j = j0; j < j1; ++j)
    for (int64_t i = i0; i < i1; ++i) dst[j * ld_dst + i] = src[i * ld_src + j];
}

#if defined(__SSE2__)
// One 16 x 16 block: four rounds of byte, word, dword and qword interleaves (SSE2, in every
// x86-64 CPU), 64 unpacks for 256 bytes instead of 256 single-byte moves.
void transpose16(const int8_t* src, int64_t ld_src, int8_t* dst, int64_t ld_dst) {
  __m128i a[16], b[16], c[16];
  for (int i = 0; i < 16; ++i) a[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i * ld_src));
  for (int j = 0; j < 8; ++j) {  // rows 2j, 2j+1: columns 0-7, then 8-15, two bytes a column
    b[2 * j] = _mm_unpacklo_epi8(a[2 * j], a[2 * j + 1]);
    b[2 * j + 1] = _mm_unpackhi_epi8(a[2 * j], a[2 * j + 1]);
  }
  for (int g = 0; g < 4; ++g) {  // rows 4g..4g+3: columns 0-3, 4-7, 8-11, 12-15, four bytes a column
    c[4 * g] = _mm_unpacklo_epi16(b[4 * g], b[4 * g + 2]);
    c[4 * g + 1] = _mm_unpackhi_epi16(b[4 * g], b[4 * g + 2]);
    c[4 * g + 2] = _mm_unpacklo_epi16(b[4 * g + 1], b[4 * g + 3]);
    c[4 * g + 3] = _mm_unpackhi_epi16(b[4 * g + 1], b[4 * g + 3]);
  }
  for (int h = 0; h < 2; ++h)  // rows 8h..8h+7: column pairs 0..7, eight bytes a column
    for (int q = 0; q < 4; ++q) {
      a[8 * h + 2 * q] = _mm_unpacklo_epi32(c[8 * h + q], c[8 * h + 4 + q]);
      a[8 * h + 2 * q + 1] = _mm_unpackhi_epi32(c[8 * h + q], c[8 * h + 4 + q]);
    }
  for (int p = 0; p < 8; ++p) {  // all 16 rows of columns 2p and 2p+1
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (2 * p) * ld_dst), _mm_unpacklo_epi64(a[p], a[8 + p]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (2 * p + 1) * ld_dst), _mm_unpackhi_epi64(a[p], a[8 + p]));
  }
}
#endif

}  // namespace

void transpose_bytes(const int8_t* src, int64_t ld_src, int64_t rows, int64_t cols, int8_t* dst, int64_t ld_dst) {
#if defined(__SSE2__)
  const int64_t rows16 = rows / 16 * 16, cols16 = cols / 16 * 16;
  for (int64_t i = 0; i < rows16; i += 16)
    for (int64_t j = 0; j < cols16; j += 16) transpose16(src + i * ld_src + j, ld_src, dst + j * ld_dst + i, ld_dst);
  transpose_scalar(src, ld_src, 0, rows16, cols16, cols, dst, ld_dst);  // the ragged edges
  transpose_scalar(src, ld_src, rows16, rows, 0, cols, dst, ld_dst);
#else
  transpose_scalar(src, ld_src, 0, rows, 0, cols, dst, ld_dst);
#endif
}

}  // namespace bitops::cpu
