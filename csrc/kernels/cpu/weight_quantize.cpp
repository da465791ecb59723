// The portable weight quantisers and the byte transpose of weight_quantize.h.
#include "weight_quantize.h"
#include <algorithm>
#include <cmath>

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

void transpose_bytes(const int8_t* src, int64_t ld_src, int64_t rows, int64_t cols, int8_t* dst, int64_t ld_dst) {
  constexpr int64_t kBlock = 32;  // 32 x 32 bytes: both sides stay within a few cache lines each
  for (int64_t i0 = 0; i0 < rows; i0 += kBlock)
    for (int64_t j0 = 0; j0 < cols; j0 += kBlock) {
      const int64_t i1 = std::min(rows, i0 + kBlock), j1 = std::min(cols, j0 + kBlock);
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = i0; i < i1; ++i) dst[j * ld_dst + i] = src[i * ld_src + j];
    }
}

}  // namespace bitops::cpu
