// AVX2 row quantisers: int8 absmax (quantize_rows) and sign bits (binarize_rows).
// They perform the scalar path's float32 operations in the same order (max of
// |x|, one true division, x * s, round half to even, clamp), so xq and s are
// bit-identical to scalar.cpp; max is exact, so its order does not matter.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <cmath>
#include <cstring>
#include "avx2_kernels.h"
#include "quantize_common.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace bitops::cpu::avx2 {
namespace {

// Exponent all ones: +-Inf or NaN.
inline __m256 nonfinite_mask(__m256 v) {
  const __m256i exp = _mm256_set1_epi32(0x7f800000);
  const __m256i e = _mm256_and_si256(_mm256_castps_si256(v), exp);
  return _mm256_castsi256_ps(_mm256_cmpeq_epi32(e, exp));
}

// max |x| over the row, and whether every value is finite.
inline float row_absmax(const float* row, int64_t k, bool* finite) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 vmax = _mm256_setzero_ps();
  __m256 bad = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const __m256 v = _mm256_loadu_ps(row + i);
    bad = _mm256_or_ps(bad, nonfinite_mask(v));
    vmax = _mm256_max_ps(vmax, _mm256_and_ps(v, abs_mask));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmax);
  float amax = 0.0f;
  for (float l : lanes) amax = l > amax ? l : amax;
  bool ok = _mm256_movemask_ps(bad) == 0;
  for (; i < k; ++i) {
    const float a = std::fabs(row[i]);
    ok &= std::isfinite(row[i]);
    amax = a > amax ? a : amax;
  }
  *finite = ok;
  return amax;
}

// 8 floats -> 8 int32 of clamp(rint(v * s), -128, 127).
inline __m256i quantize8(__m256 v, __m256 s) {
  __m256 r = _mm256_round_ps(_mm256_mul_ps(v, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  r = _mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(-128.0f)), _mm256_set1_ps(127.0f));
  return _mm256_cvtps_epi32(r);
}

}  // namespace

void quantize_rows(const float* x, int64_t k, int64_t m0, int64_t m1, int8_t* xq, float* s) {
  for (int64_t m = m0; m < m1; ++m) {
    const float* row = x + m * k;
    int8_t* q = xq + m * k;
    bool finite;
    const float amax = row_absmax(row, k, &finite);
    if (!finite) {
      s[m] = NAN;
      std::memset(q, 0, k);
      continue;
    }
    const float scale = absmax_scale(amax);
    s[m] = scale;
    const __m256 vs = _mm256_set1_ps(scale);
    // packs_* interleave 128-bit lanes; this permutation puts the 32 bytes back in order.
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
      const __m256i a = quantize8(_mm256_loadu_ps(row + i), vs);
      const __m256i b = quantize8(_mm256_loadu_ps(row + i + 8), vs);
      const __m256i c = quantize8(_mm256_loadu_ps(row + i + 16), vs);
      const __m256i d = quantize8(_mm256_loadu_ps(row + i + 24), vs);
      const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), _mm256_permutevar8x32_epi32(packed, order));
    }
    for (; i < k; ++i) q[i] = quantize_value(row[i], scale);
  }
}

void binarize_rows(const float* x, int64_t k, int64_t m0, int64_t m1, uint8_t* bits, float* s) {
  const int64_t rb = binary_row_bytes(k);
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t m = m0; m < m1; ++m) {
    const float* row = x + m * k;
    uint8_t* dst = bits + m * rb;
    std::memset(dst, 0, rb);  // padding bits stay clear
    __m256 bad = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
      const __m256 v = _mm256_loadu_ps(row + i);
      bad = _mm256_or_ps(bad, nonfinite_mask(v));
      // x >= 0 (ordered: NaN gives 0, -0.0 gives 1), one bit per lane, lane j -> bit j
      dst[i >> 3] = static_cast<uint8_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_GE_OQ)));
    }
    bool finite = _mm256_movemask_ps(bad) == 0;
    for (; i < k; ++i) {
      finite &= std::isfinite(row[i]);
      if (row[i] >= 0.0f) dst[i >> 3] |= static_cast<uint8_t>(1u << (i & 7));
    }
    s[m] = finite ? 1.0f : NAN;
  }
}

}  // namespace bitops::cpu::avx2

#pragma GCC pop_options
#endif
