// The "cpu-avx512vnni" set's binary kernels: int8 activations with the AVX-512
// VNNI products of avx512_dot.h (vpdpbusd on the fly for few rows of x, the
// decoded-panel zmm GEMM for many), and sign bits (act_bits = 1) as XOR +
// vpopcntq (AVX-512 VPOPCNTDQ; the table takes it only where cpuid says so).
// The shared 256-bit drivers: dot_tiles.h, gemm_i8_tiles.h, xnor_tiles.h.
//
// Compiled with the AVX2 target, as avx2_binary.cpp: the AVX-512 instructions
// are EVEX asm (here and in avx512_dot.h) or in avx512_vnni.cpp, and only the
// "cpu-avx512vnni" table, chosen after cpuid, reaches this code.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <cstdint>
#include <cstdlib>
#include "avx512_kernels.h"
#include "vnni_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include "dot_tiles.h"
#include "gemm_i8_tiles.h"
#include "decoders.h"
#include "xnor_tiles.h"
#include "avx512_dot.h"

namespace bitops::cpu::avx512 {
namespace {

using ymm::Prefetch;
using ymm::prefetch_span;
using ymm::xor_chunk;

// popcount of each 64-bit lane: the EVEX (AVX-512 VL + VPOPCNTDQ) vpopcntq on
// ymm. Written as asm so that this translation unit needs no AVX-512 target.
inline __m256i popcount_lanes(__m256i v) {
  __m256i c;
  asm("%{evex%} vpopcntq %1, %0" : "=x"(c) : "x"(v));
  return c;
}

// The bit count of xnor_tiles.h with vpopcntq: one instruction per 256 bits
// instead of the nibble table, and 64-bit lanes that never overflow.
struct VpopcntqCount {
  template <int MR, int NR, bool kMasked>
  static void add(const uint8_t* const* x, const uint8_t* const* w, int64_t chunks, __m256i keep,
                  __m256i (&differ)[MR][NR], const Prefetch& pf) {
    for (int64_t c = 0; c < chunks; ++c) {
      if (pf.p) prefetch_span(pf.p + c * pf.step, pf.step);
      xor_chunk<MR, NR, kMasked>(x, w, c, keep, [&](int i, int j, __m256i d) {
        differ[i][j] = _mm256_add_epi64(differ[i][j], popcount_lanes(d));
      });
    }
  }
};

}  // namespace

void binary_gemm_i8_vnni(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  ymm::linear_i8<ymm::PathDpbusd, ymm::DpbusdPanel>(ymm::BinaryDecoder{}, xq, w, k, t, e);
}

void binary_gemm_bits_vpopcnt(const uint8_t* xbits, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  ymm::gemm_bits<VpopcntqCount>(xbits, w, k, t, e);
}

}  // namespace bitops::cpu::avx512

#pragma GCC pop_options
#endif
