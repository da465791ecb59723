// The AVX2 bf16 GEMV (bf16_gemv.h): 16 weights per 32-byte load, one weight row
// at a time (a single sequential stream, which the hardware prefetcher follows),
// 4 loads in flight with their own even and odd accumulators (8 chains, 64 partial sums).
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include "bf16_gemv.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include "dot_tiles.h"

namespace bitops::cpu::avx2 {

using ymm::hsum_ps;

void bf16_gemv(const float* xe, const float* xo, const uint16_t* w, int64_t k, Tile t, const float* bias, float* out,
               int64_t ldo) {
  constexpr int64_t kChunk = 16;  // weights per load
  const int64_t chunks = k / kChunk, kh = (k + 1) / 2;
  const __m256i high = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  for (int64_t n = t.n0; n < t.n1; ++n) {
    const uint16_t* row = w + n * k;
    for (int64_t m = t.m0; m < t.m1; ++m) {
      const float* e = xe + m * kh;
      const float* o = xo + m * kh;
      __m256 ae[4], ao[4];
      for (int u = 0; u < 4; ++u) ae[u] = ao[u] = _mm256_setzero_ps();
      int64_t c = 0;
      for (; c + 4 <= chunks; c += 4)
        for (int u = 0; u < 4; ++u) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + (c + u) * kChunk));
          ae[u] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), _mm256_loadu_ps(e + (c + u) * 8), ae[u]);
          ao[u] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, high)), _mm256_loadu_ps(o + (c + u) * 8), ao[u]);
        }
      for (; c < chunks; ++c) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c * kChunk));
        ae[0] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), _mm256_loadu_ps(e + c * 8), ae[0]);
        ao[0] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, high)), _mm256_loadu_ps(o + c * 8), ao[0]);
      }
      const __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(ae[0], ao[0]), _mm256_add_ps(ae[1], ao[1])),
                                     _mm256_add_ps(_mm256_add_ps(ae[2], ao[2]), _mm256_add_ps(ae[3], ao[3])));
      float y = hsum_ps(s) + bf16_dot_tail(e, o, row, chunks * kChunk, k);
      if (bias) y += bias[n];
      out[m * ldo + n] = y;
    }
  }
}

}  // namespace bitops::cpu::avx2

#pragma GCC pop_options
#endif
