// The AVX-512 VNNI kernel table, "cpu-avx512vnni". This file is portable code:
// it only collects addresses. It is the AVX2 set (avx2.cpp) with the int8 GEMMs
// on AVX-512 VNNI (avx512_ternary.cpp, avx512_binary.cpp: the one-row ternary
// GEMV and few-row products straight from the packed bytes, and the decoded
// zmm GEMM for many rows) and, where the CPU has VPOPCNTDQ, XNOR-popcount on
// vpopcntq; dispatch.cpp picks it only after cpuid has confirmed AVX2, FMA and
// AVX-512 F, BW, VL and VNNI (vnni::usable()).
#include "avx2_kernels.h"
#include "avx512_kernels.h"
#include "vnni_kernels.h"

namespace bitops::cpu {

const KernelTable* avx512vnni_kernels() {
#if defined(__x86_64__) || defined(__i386__)
  static const KernelTable table = [] {
    KernelTable t = *avx2_kernels();  // everything else is the AVX2 set
    t.name = "cpu-avx512vnni";
    t.ternary_gemm_i8 = avx512::ternary_gemm_i8_vnni;
    t.binary_gemm_i8 = avx512::binary_gemm_i8_vnni;
    // XNOR-popcount on vpopcntq where the CPU has it (Ice Lake, Zen 4; not Cascade Lake).
    if (vnni::vpopcnt_usable()) t.binary_gemm_bits = avx512::binary_gemm_bits_vpopcnt;
    return t;
  }();
  return &table;
#else
  return nullptr;
#endif
}

}  // namespace bitops::cpu
