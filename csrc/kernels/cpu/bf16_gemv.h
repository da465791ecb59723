// The streaming bf16 GEMV: a float layer stored in bf16 (a BitNet model's output
// head, 128256 x 2560, more bytes per token than all its ternary layers) against
// a few rows of x, reading each weight row once, front to back.
//
// x comes split by parity, in float32: xe[m * kh + j] = x[m, 2j] and
// xo[m * kh + j] = x[m, 2j + 1] (kh = ceil(K / 2), xo's last entry 0 for odd K).
// A 32-bit lane of weight bytes then holds bf16 w[2j] in its low half and
// w[2j + 1] in its high half: a left shift by 16 makes the first a float32, a
// mask of the high half the second, and each meets its x with one FMA.
//
// Every kernel sums the whole vector chunks in at least 16 independent partial
// sums (scalar: 16; AVX2: 64; AVX-512: 128), then adds the tail past the last
// whole chunk (at most 31 weights) one by one, then the bias: no product passes
// through more than ceil(K / 16) + 34 float32 additions (the tests' error bound).
#pragma once
#include <cstdint>
#include "cpu_kernels.h"

namespace bitops::cpu {

// out[m * ldo + n] = sum_k x[m, k] * w[n, k] (+ bias[n] if bias) for the tile's rows and columns.
using Bf16GemvFn = void (*)(const float* xe, const float* xo, const uint16_t* w, int64_t k, Tile t,
                            const float* bias, float* out, int64_t ldo);

void bf16_gemv(const float* xe, const float* xo, const uint16_t* w, int64_t k, Tile t, const float* bias, float* out,
               int64_t ldo);  // portable (bf16_gemv.cpp)
namespace avx2 {
void bf16_gemv(const float* xe, const float* xo, const uint16_t* w, int64_t k, Tile t, const float* bias, float* out,
               int64_t ldo);
}
namespace avx512 {
void bf16_gemv(const float* xe, const float* xo, const uint16_t* w, int64_t k, Tile t, const float* bias, float* out,
               int64_t ldo);
}

// The kernel of the active set: AVX-512 with the AVX-512 VNNI set, AVX2, or portable.
Bf16GemvFn active_bf16_gemv();

inline float bf16_bits_to_float(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  __builtin_memcpy(&f, &u, sizeof f);
  return f;
}

// The weights past the last whole vector chunk [k0, k), added one by one.
inline float bf16_dot_tail(const float* xe, const float* xo, const uint16_t* row, int64_t k0, int64_t k) {
  float s = 0.0f;
  for (int64_t i = k0; i < k; ++i) s += bf16_bits_to_float(row[i]) * ((i & 1) ? xo[i / 2] : xe[i / 2]);
  return s;
}

}  // namespace bitops::cpu
