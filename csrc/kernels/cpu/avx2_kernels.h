// Entry points of the AVX2 kernel set (defined in avx2_*.cpp, each compiled
// with the AVX2 target turned on for its own functions only). Portable code
// may take their addresses but must call them only after cpuid said AVX2.
// The AVX-512 set's own entry points are in avx512_kernels.h.
#pragma once
#include "cpu_kernels.h"

namespace bitops::cpu::avx2 {

void quantize_rows(const float* x, int64_t k, int64_t m0, int64_t m1, int8_t* xq, float* s);
void binarize_rows(const float* x, int64_t k, int64_t m0, int64_t m1, uint8_t* bits, float* s);
bool ternary_gemm_i8(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e);
bool ternary_gemm_f32(const float* x, const uint8_t* w, int64_t k, Tile t, const Epilogue& e);
void binary_gemm_i8(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e);
void binary_gemm_f32(const float* x, const uint8_t* w, int64_t k, Tile t, const Epilogue& e);
void binary_gemm_bits(const uint8_t* xbits, const uint8_t* w, int64_t k, Tile t, const Epilogue& e);

}  // namespace bitops::cpu::avx2
