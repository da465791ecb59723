// CPU kernels on raw pointers. Every matmul kernel computes one tile of the
// output, [m0, m1) x [n0, n1), so the torch glue can spread tiles over threads.
// Kernels that read packed ternary weights return false when they meet the
// invalid code 3 (a corrupt buffer) inside the first K weights of a row.
#pragma once
#include <cstdint>
#include "../epilogue.h"
#include "weight_quantize.h"

namespace bitops::cpu {

struct Tile {
  int64_t m0, m1, n0, n1;
};

// Per-row int8 absmax quantisation of x [M, K] (rows [m0, m1)):
//   s = 127 / max(max|x|, 1e-5) (true float division), xq = clamp(rint(x * s), -128, 127).
// A row holding NaN or +-Inf gets s = NaN and xq = 0, so its outputs are NaN.
using QuantizeRowsFn = void (*)(const float* x, int64_t k, int64_t m0, int64_t m1, int8_t* xq, float* s);

// Sign binarisation into the binary packed format (bit set where x >= 0, so
// -0.0 and +0.0 give +1). s[m] = 1, or NaN for a row holding NaN or +-Inf.
using BinarizeRowsFn = void (*)(const float* x, int64_t k, int64_t m0, int64_t m1, uint8_t* bits, float* s);

// acc[m, n] = sum_k xq[m, k] * w[n, k] (exact int32), then the epilogue.
using TernaryGemmI8Fn = bool (*)(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e);
using BinaryGemmI8Fn = void (*)(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e);
// Float activations: acc is a float32 sum (order is the kernel's), then y = acc * gamma[n] + bias[n].
using TernaryGemmF32Fn = bool (*)(const float* x, const uint8_t* w, int64_t k, Tile t, const Epilogue& e);
using BinaryGemmF32Fn = void (*)(const float* x, const uint8_t* w, int64_t k, Tile t, const Epilogue& e);
// acc[m, n] = sum_k sign(x)[m, k] * sign(w)[n, k] = K - 2 * popcount(xbits ^ wbits).
using BinaryGemmBitsFn = void (*)(const uint8_t* xbits, const uint8_t* w, int64_t k, Tile t, const Epilogue& e);

struct KernelTable {
  const char* name;  // "cpu-avx512vnni", "cpu-avx2" or "cpu-scalar"
  QuantizeRowsFn quantize_rows;
  BinarizeRowsFn binarize_rows;
  TernaryGemmI8Fn ternary_gemm_i8;
  TernaryGemmF32Fn ternary_gemm_f32;
  BinaryGemmI8Fn binary_gemm_i8;
  BinaryGemmF32Fn binary_gemm_f32;
  BinaryGemmBitsFn binary_gemm_bits;
};

// The portable kernels (scalar.cpp) and, where compiled, the AVX2 ones (avx2.cpp).
const KernelTable& scalar_kernels();
const KernelTable* avx2_kernels();  // nullptr when not compiled in
// The AVX2 set with the int8 paths on AVX-512 VNNI (avx512.cpp; avx512_vnni.cpp:
// the many-row GEMMs; avx512_ternary_gemv.cpp: ternary against 1 to 4 rows of x
// straight from the packed bytes).
const KernelTable* avx512vnni_kernels();  // nullptr when not compiled in

// Chosen once, at first use: the best set the CPU runs (AVX-512 VNNI, AVX2,
// portable), capped by the environment variable BITOPS_ISA=avx2 or =scalar.
const KernelTable& active_kernels();

// Packing, unpacking and validation of the formats in layout.h, rows [n0, n1) of
// an [N, K] matrix. The portable functions below are the fallback and the oracle
// of the vectorised ones (avx2_pack.cpp); the glue calls them through PackTable.
// pack_* return the flat index (n * K + i) of the first value outside the format, or -1.
int64_t pack_ternary(const int8_t* wq, int64_t k, int64_t n0, int64_t n1, uint8_t* packed);
int64_t pack_binary(const int8_t* wq, int64_t k, int64_t n0, int64_t n1, uint8_t* packed);
// unpack_ternary returns the first row holding code 3 within K, or -1.
int64_t unpack_ternary(const uint8_t* packed, int64_t k, int64_t n0, int64_t n1, int8_t* wq);
// transformers' BitNet packing (uint8 [ceil(N/4), K], output row i*R + r in bits 2i+1:2i of row r)
// -> rows [n0, n1) of the ternary layout; returns the first row holding code 3, or -1 (pack.cpp).
int64_t pack_ternary_from_hf(const uint8_t* hf, int64_t rows_hf, int64_t k, int64_t n0, int64_t n1, uint8_t* packed);
void unpack_binary(const uint8_t* packed, int64_t k, int64_t n0, int64_t n1, int8_t* wq);
// validate_* return the first row not in canonical form (exactly: pack(unpack(row)) != row),
// or -1. Ternary: no code 3 among the first K weights and code 1 in every padding weight;
// binary: every padding bit (index >= K) clear.
int64_t validate_ternary(const uint8_t* packed, int64_t k, int64_t n0, int64_t n1);
int64_t validate_binary(const uint8_t* packed, int64_t k, int64_t n0, int64_t n1);

using PackFn = int64_t (*)(const int8_t* wq, int64_t k, int64_t n0, int64_t n1, uint8_t* packed);
using UnpackTernaryFn = int64_t (*)(const uint8_t* packed, int64_t k, int64_t n0, int64_t n1, int8_t* wq);
using UnpackBinaryFn = void (*)(const uint8_t* packed, int64_t k, int64_t n0, int64_t n1, int8_t* wq);
using ValidateFn = int64_t (*)(const uint8_t* packed, int64_t k, int64_t n0, int64_t n1);

// Kept apart from KernelTable: the pack kernels exist for the portable and the AVX2 sets
// only (the AVX-512 VNNI set packs with AVX2), and every result is bit-identical across them.
struct PackTable {
  const char* name;  // "cpu-avx2" or "cpu-scalar"
  PackFn pack_ternary;
  UnpackTernaryFn unpack_ternary;
  PackFn pack_binary;
  UnpackBinaryFn unpack_binary;
  ValidateFn validate_ternary;
  ValidateFn validate_binary;
  QuantizeTernaryWeightsFn quantize_ternary_weights;
  QuantizeBinaryWeightsFn quantize_binary_weights;
};

const PackTable& scalar_pack_kernels();    // pack.cpp
const PackTable* avx2_pack_kernels();      // avx2_pack.cpp; nullptr when not compiled in
// The AVX2 set whenever active_kernels() is not the portable one (same cpuid, same BITOPS_ISA cap).
const PackTable& active_pack_kernels();

}  // namespace bitops::cpu
