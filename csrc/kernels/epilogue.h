// The float epilogue shared by every backend, so all of them round alike:
//   y[m, n] = float(acc) * (gamma[n] / s[m]) + bias[n]
// evaluated as three separately rounded IEEE float32 operations in this order
// (the build disables FMA contraction; CUDA uses the _rn intrinsics).
#pragma once
#include <cstdint>
#include "layout.h"

namespace bitops {

struct Epilogue {
  const float* s = nullptr;      // [M] activation scales (x ~ xq / s); nullptr: no scale
  const float* gamma = nullptr;  // weight scale: one value, or [N] when gamma_stride == 1
  int64_t gamma_stride = 0;
  // [M] gamma / s[m], the same division done once per row (one gamma for all of N);
  // nullptr: divide per output
  const float* row_scale = nullptr;
  const float* bias = nullptr;   // [N] or nullptr
  float* out = nullptr;          // [M, N] float output, or nullptr to write out_int
  int32_t* out_int = nullptr;    // [M, N] exact integer output
  int64_t ldo = 0;               // leading dimension of the output (= N)
};

#if defined(__CUDACC__)
__device__ __forceinline__ float epilogue_value(float acc, const Epilogue& e, int64_t m, int64_t n) {
  float scale = e.row_scale ? e.row_scale[m] : e.gamma[n * e.gamma_stride];
  if (e.s && !e.row_scale) scale = __fdiv_rn(scale, e.s[m]);
  float y = __fmul_rn(acc, scale);
  if (e.bias) y = __fadd_rn(y, e.bias[n]);
  return y;
}
#else
inline float epilogue_value(float acc, const Epilogue& e, int64_t m, int64_t n) {
  float scale = e.row_scale ? e.row_scale[m] : e.gamma[n * e.gamma_stride];
  if (e.s && !e.row_scale) scale = scale / e.s[m];
  float y = acc * scale;
  if (e.bias) y = y + e.bias[n];
  return y;
}
#endif

}  // namespace bitops
