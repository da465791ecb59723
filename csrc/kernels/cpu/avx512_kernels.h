// Entry points of the AVX-512 kernel set's own kernels (avx512_ternary.cpp,
// avx512_binary.cpp), for the "cpu-avx512vnni" table (avx512.cpp); the rest of
// that table is the AVX2 set. Portable declarations: code may take their
// addresses, but must call them only after cpuid said AVX-512 (vnni::usable(),
// and vnni::vpopcnt_usable() for binary_gemm_bits_vpopcnt; vnni_kernels.h).
#pragma once
#include "cpu_kernels.h"

namespace bitops::cpu::avx512 {

// The int8 GEMMs with AVX-512 VNNI's vpdpbusd (and, for 1 to 4 rows of x
// against ternary weights, straight from the packed bytes; vnni_kernels.h).
bool ternary_gemm_i8_vnni(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e);
void binary_gemm_i8_vnni(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e);
// XNOR-popcount counting bits with AVX-512 VPOPCNTDQ's vpopcntq.
void binary_gemm_bits_vpopcnt(const uint8_t* xbits, const uint8_t* w, int64_t k, Tile t, const Epilogue& e);

}  // namespace bitops::cpu::avx512
