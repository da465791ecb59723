// The packed weight formats: the one place that defines them.
//
// Plain C++ (also included by CUDA code): no torch, no allocation.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define BITOPS_HD __host__ __device__ __forceinline__
#else
#define BITOPS_HD inline
#endif

namespace bitops {

// ---------------------------------------------------------------------------
// Ternary: 2 bits per weight, stored as the code (w + 1) in {0, 1, 2}; code 3
// is invalid (a corrupt buffer). Along K, weights are grouped in blocks of 128
// that occupy 32 bytes. Byte j (0..31) of a block holds four weights of that
// block, each 32 apart:
//
//     bits 7:6 -> weight j        bits 5:4 -> weight j + 32
//     bits 3:2 -> weight j + 64   bits 1:0 -> weight j + 96
//
// Why: one 32-byte load (an AVX2 register, or 8 bytes x 4 GPU threads) shifted
// by 6, 4, 2, 0 and masked with 0x03 gives the codes of four runs of 32
// consecutive weights, each already in byte lanes that line up with 32
// consecutive int8 activations. No shuffles are needed to decode.
// Each row (output feature) is padded to whole blocks with code 1 (weight 0).
// ---------------------------------------------------------------------------
constexpr int64_t kTernaryBlockWeights = 128;
constexpr int64_t kTernaryBlockBytes = 32;
constexpr int kTernaryZeroCode = 1;
constexpr int kTernaryBadCode = 3;

BITOPS_HD int64_t ternary_row_bytes(int64_t k) {
  return (k + kTernaryBlockWeights - 1) / kTernaryBlockWeights * kTernaryBlockBytes;
}
// Byte that holds weight k of a row, and the shift of its 2-bit code there.
BITOPS_HD int64_t ternary_byte_index(int64_t k) {
  return (k / kTernaryBlockWeights) * kTernaryBlockBytes + (k % 32);
}
BITOPS_HD int ternary_shift(int64_t k) {
  return 6 - 2 * static_cast<int>((k % kTernaryBlockWeights) / 32);
}
BITOPS_HD int ternary_code_at(const uint8_t* row, int64_t k) {
  return (row[ternary_byte_index(k)] >> ternary_shift(k)) & 3;
}

// ---------------------------------------------------------------------------
// Binary: 1 bit per weight, set = +1, clear = -1. Bit (k % 8) of byte (k / 8)
// holds weight k (little-endian within 64-bit words, so wider loads see
// weight k at bit k % 64). Rows are padded to 32 bytes (256 weights); the
// padding bits are ignored by every kernel (they are masked, never counted).
// The same format holds sign-binarised activations.
// ---------------------------------------------------------------------------
constexpr int64_t kBinaryBlockWeights = 256;
constexpr int64_t kBinaryBlockBytes = 32;

BITOPS_HD int64_t binary_row_bytes(int64_t k) {
  return (k + kBinaryBlockWeights - 1) / kBinaryBlockWeights * kBinaryBlockBytes;
}
BITOPS_HD int binary_bit_at(const uint8_t* row, int64_t k) {
  return (row[k >> 3] >> (k & 7)) & 1;
}

// The int32 accumulator is exact while |sum| <= 128 * K <= 2^31 - 1, so K < 2^24:
// at K = 2^24, xq = -128 against w = -1 everywhere sums to exactly 2^31.
constexpr int64_t kMaxK = (int64_t(1) << 24) - 1;

}  // namespace bitops
