// AVX2 ternary kernels: the shared 256-bit drivers (dot_tiles.h, gemm_i8_tiles.h)
// with the ternary decoder (decoders.h) and the AVX2 int8 product (vpmaddubsw).
// The AVX-512 set's ternary kernel lives in avx512_ternary.cpp.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <cstdint>
#include <cstdlib>
#include "avx2_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include "dot_tiles.h"
#include "gemm_i8_tiles.h"
#include "decoders.h"

namespace bitops::cpu::avx2 {

bool ternary_gemm_i8(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  return ymm::linear_i8<ymm::PathMaddubs, ymm::MaddubsPanel>(ymm::TernaryDecoder{}, xq, w, k, t, e);
}

bool ternary_gemm_f32(const float* x, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  return ymm::gemm_f32(ymm::TernaryDecoder{}, x, w, k, t, e);
}

}  // namespace bitops::cpu::avx2

#pragma GCC pop_options
#endif
