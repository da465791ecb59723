// AVX2 kernels. This translation unit alone is compiled with -mavx2 -mfma, and
// its functions run only after dispatch.cpp has checked the CPU with cpuid.
// Until the AVX2 kernels land, it reports that none are compiled in.
#include "cpu_kernels.h"

namespace bitops::cpu {

const KernelTable* avx2_kernels() { return nullptr; }

}  // namespace bitops::cpu
