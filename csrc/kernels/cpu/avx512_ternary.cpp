// The "cpu-avx512vnni" set's ternary x int8 kernel: the shared 256-bit drivers
// (dot_tiles.h, gemm_i8_tiles.h) with the ternary decoder (decoders.h) and the
// AVX-512 VNNI products of avx512_dot.h: 1 to 15 rows of x straight from the
// packed bytes (vnni::ternary_rows_codes), from 16 rows on each weight panel
// decoded once for the zmm GEMM (vnni::panel_dots).
//
// Compiled with the AVX2 target, as avx2_ternary.cpp: the AVX-512 instructions
// are EVEX asm (avx512_dot.h) or in avx512_vnni.cpp / avx512_ternary_gemv.cpp,
// and only the "cpu-avx512vnni" table, chosen after cpuid, reaches this code.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <cstdint>
#include <cstdlib>
#include "avx512_kernels.h"
#include "vnni_kernels.h"
#include "amx_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include "dot_tiles.h"
#include "gemm_i8_tiles.h"
#include "decoders.h"
#include "avx512_dot.h"

namespace bitops::cpu::avx512 {

constexpr int64_t kAmxRows = 256;

bool ternary_gemm_i8_vnni(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  if (t.m1 - t.m0 >= ymm::kDecodedMinRowsVnniPacked && k <= amx::kMaxK && amx::enabled()) {
    // At most kAmxRows rows of x per pass, so that their B tiles stay in L2 while every
    // panel of the tile streams past them (measured: 2048 rows at once is 0.8x VNNI).
    for (int64_t m0 = t.m0; m0 < t.m1; m0 += kAmxRows) {
      const Tile part{m0, m0 + kAmxRows < t.m1 ? m0 + kAmxRows : t.m1, t.n0, t.n1};
      if (!ymm::gemm_i8_decoded<ymm::PathDpbusdTernary, ymm::AmxPanel>(ymm::TernaryDecoder{}, xq, w, k, part, e))
        return false;
    }
    return true;
  }
  return ymm::linear_i8<ymm::PathDpbusdTernary, ymm::DpbusdPanel>(ymm::TernaryDecoder{}, xq, w, k, t, e,
                                                                   ymm::kDecodedMinRowsVnniPacked);
}

}  // namespace bitops::cpu::avx512

#pragma GCC pop_options
#endif
