// The weight quantisers of a training step, on raw float32 rows: what the fused
// quantize-and-pack op (csrc/cpu_ops.cpp) runs before it packs, so the weights are
// read once. Rows [n0, n1) of w [N, K] go to wq, row n at wq + (n - n0) * k:
//   ternary: clamp(rint(w / d), -1, 1), d = max(gamma, eps) as bitops.reference
//            computes it (true float32 division, round half to even); NaN -> 0;
//   binary:  w >= 0 ? +1 : -1 (-0.0 -> +1, NaN -> -1).
#pragma once
#include <cstdint>

namespace bitops::cpu {

using QuantizeTernaryWeightsFn = void (*)(const float* w, int64_t k, float d, int64_t n0, int64_t n1, int8_t* wq);
using QuantizeBinaryWeightsFn = void (*)(const float* w, int64_t k, int64_t n0, int64_t n1, int8_t* wq);

// The portable versions (weight_quantize.cpp): the fallback and the oracle of the AVX2 ones.
void quantize_ternary_weights(const float* w, int64_t k, float d, int64_t n0, int64_t n1, int8_t* wq);
void quantize_binary_weights(const float* w, int64_t k, int64_t n0, int64_t n1, int8_t* wq);

// dst[j * ld_dst + i] = src[i * ld_src + j] for i < rows, j < cols (blocked for the caches).
void transpose_bytes(const int8_t* src, int64_t ld_src, int64_t rows, int64_t cols, int8_t* dst, int64_t ld_dst);

namespace avx2 {  // avx2_weight_quantize.cpp
void quantize_ternary_weights(const float* w, int64_t k, float d, int64_t n0, int64_t n1, int8_t* wq);
void quantize_binary_weights(const float* w, int64_t k, int64_t n0, int64_t n1, int8_t* wq);
}  // namespace avx2

}  // namespace bitops::cpu
