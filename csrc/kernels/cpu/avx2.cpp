// The AVX2 kernel table. This file is portable code: it only collects the
// addresses of the AVX2 functions (avx2_*.cpp); dispatch.cpp calls them only
// after cpuid has confirmed AVX2 and FMA. The AVX-512 set's table, which starts
// from this one, lives in avx512.cpp.
#include "avx2_kernels.h"

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

}  // namespace bitops::cpu
