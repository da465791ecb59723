// The AVX-512 bf16 GEMV (bf16_gemv.h): 32 weights per 64-byte load, one weight
// row at a time (a single sequential stream), 4 loads in flight with their own
// even and odd accumulators (8 chains, 128 partial sums). Plain AVX-512 F + BW:
// no avx512_bf16 (vdpbf16ps flushes denormals and fixes no order of its two adds).
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include "bf16_gemv.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512bw")

namespace bitops::cpu::avx512 {

void bf16_gemv(const float* xe, const float* xo, const uint16_t* w, int64_t k, Tile t, const float* bias, float* out,
               int64_t ldo) {
  constexpr int64_t kChunk = 32;  // weights per load
  const int64_t chunks = k / kChunk, kh = (k + 1) / 2;
  const __m512i high = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  for (int64_t n = t.n0; n < t.n1; ++n) {
    const uint16_t* row = w + n * k;
    for (int64_t m = t.m0; m < t.m1; ++m) {
      const float* e = xe + m * kh;
      const float* o = xo + m * kh;
      __m512 ae[4], ao[4];
      for (int u = 0; u < 4; ++u) ae[u] = ao[u] = _mm512_setzero_ps();
      int64_t c = 0;
      for (; c + 4 <= chunks; c += 4)
        for (int u = 0; u < 4; ++u) {
          const __m512i v = _mm512_loadu_si512(row + (c + u) * kChunk);
          ae[u] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), _mm512_loadu_ps(e + (c + u) * 16), ae[u]);
          ao[u] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v, high)), _mm512_loadu_ps(o + (c + u) * 16), ao[u]);
        }
      for (; c < chunks; ++c) {
        const __m512i v = _mm512_loadu_si512(row + c * kChunk);
        ae[0] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), _mm512_loadu_ps(e + c * 16), ae[0]);
        ao[0] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v, high)), _mm512_loadu_ps(o + c * 16), ao[0]);
      }
      const __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(ae[0], ao[0]), _mm512_add_ps(ae[1], ao[1])),
                                     _mm512_add_ps(_mm512_add_ps(ae[2], ao[2]), _mm512_add_ps(ae[3], ao[3])));
      float y = _mm512_reduce_add_ps(s) + bf16_dot_tail(e, o, row, chunks * kChunk, k);
      if (bias) y += bias[n];
      out[m * ldo + n] = y;
    }
  }
}

}  // namespace bitops::cpu::avx512

#pragma GCC pop_options
#endif
