// The AVX2 kernel tables. This file is portable code: it only collects the
// addresses of the AVX2 functions (avx2_*.cpp); dispatch.cpp calls them only
// after cpuid has confirmed AVX2 and FMA (and, for "cpu-avx512vnni", whose
// int8 GEMMs and one-row ternary GEMV run on AVX-512 VNNI, that ISA too).
#include "avx2_kernels.h"
#include "vnni_kernels.h"

namespace bitops::cpu {

const KernelTable* avx2_kernels() {
#if defined(__x86_64__) || defined(__i386__)
  static const KernelTable table{
      "cpu-avx2",
      avx2::quantize_rows,
      avx2::binarize_rows,
      avx2::ternary_gemm_i8,
      avx2::ternary_gemm_f32,
      avx2::binary_gemm_i8,
      avx2::binary_gemm_f32,
      avx2::binary_gemm_bits,
  };
  return &table;
#else
  return nullptr;
#endif
}

const KernelTable* avx512vnni_kernels() {
#if defined(__x86_64__) || defined(__i386__)
  static const KernelTable table = [] {
    KernelTable t = *avx2_kernels();  // everything else is the AVX2 set
    t.name = "cpu-avx512vnni";
    t.ternary_gemm_i8 = avx2::ternary_gemm_i8_vnni;
    t.binary_gemm_i8 = avx2::binary_gemm_i8_vnni;
    // XNOR-popcount on vpopcntq where the CPU has it (Ice Lake, Zen 4; not Cascade Lake).
    if (vnni::vpopcnt_usable()) t.binary_gemm_bits = avx2::binary_gemm_bits_vpopcnt;
    return t;
  }();
  return &table;
#else
  return nullptr;
#endif
}

}  // namespace bitops::cpu
