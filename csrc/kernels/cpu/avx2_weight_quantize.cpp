// AVX2 weight quantisers (weight_quantize.h): 32 weights a step, bit-identical to
// the portable ones (the same IEEE division and round-half-to-even).
#include "weight_quantize.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2")

namespace bitops::cpu::avx2 {
namespace {

// Eight int32 lanes of each of a..d -> 32 int8 lanes in order (the packs work per 128-bit half).
inline __m256i narrow(__m256i a, __m256i b, __m256i c, __m256i e) {
  const __m256i ab = _mm256_packs_epi32(a, b), ce = _mm256_packs_epi32(c, e);
  const __m256i bytes = _mm256_packs_epi16(ab, ce);
  return _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline __m256i ternary8(const float* p, __m256 d) {
  __m256 q = _mm256_div_ps(_mm256_loadu_ps(p), d);
  q = _mm256_and_ps(q, _mm256_cmp_ps(q, q, _CMP_ORD_Q));  // NaN -> 0
  q = _mm256_round_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  q = _mm256_min_ps(_mm256_max_ps(q, _mm256_set1_ps(-1.0f)), _mm256_set1_ps(1.0f));
  return _mm256_cvtps_epi32(q);
}

inline __m256i binary8(const float* p) {
  const __m256 ge = _mm256_cmp_ps(_mm256_loadu_ps(p), _mm256_setzero_ps(), _CMP_GE_OQ);  // NaN: false
  // all-ones lanes (-1) -> +1, zero lanes -> -1: 2 * (ge & 1) - 1
  return _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(ge), _mm256_set1_epi32(2)), _mm256_set1_epi32(1));
}

// Rows [n0, n1) of w: eight(p) quantises 8 floats into 8 int32 lanes; tail(src, len, dst) the
// last k % 32 of a row with the portable code.
template <class Eight, class Tail>
void quantize_rows(const float* w, int64_t k, int64_t n0, int64_t n1, int8_t* wq, Eight&& eight, Tail&& tail) {
  const int64_t body = k / 32 * 32;
  for (int64_t n = n0; n < n1; ++n) {
    const float* src = w + n * k;
    int8_t* dst = wq + (n - n0) * k;
    for (int64_t i = 0; i < body; i += 32)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                          narrow(eight(src + i), eight(src + i + 8), eight(src + i + 16), eight(src + i + 24)));
    if (body < k) tail(src + body, k - body, dst + body);
  }
}

}  // namespace

void quantize_ternary_weights(const float* w, int64_t k, float d, int64_t n0, int64_t n1, int8_t* wq) {
  const __m256 vd = _mm256_set1_ps(d);
  quantize_rows(w, k, n0, n1, wq, [&](const float* p) { return ternary8(p, vd); },
                [&](const float* src, int64_t len, int8_t* dst) { cpu::quantize_ternary_weights(src, len, d, 0, 1, dst); });
}

void quantize_binary_weights(const float* w, int64_t k, int64_t n0, int64_t n1, int8_t* wq) {
  quantize_rows(w, k, n0, n1, wq, [](const float* p) { return binary8(p); },
                [](const float* src, int64_t len, int8_t* dst) { cpu::quantize_binary_weights(src, len, 0, 1, dst); });
}

}  // namespace bitops::cpu::avx2

#pragma GCC pop_options
#endif
