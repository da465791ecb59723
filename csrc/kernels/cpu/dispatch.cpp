// Picks the kernel set once per process: AVX2 when the CPU supports it,
// unless BITOPS_ISA=scalar forces the portable path (tests cover both).
#include <cstdlib>
#include <cstring>
#include "cpu_kernels.h"

namespace bitops::cpu {
namespace {

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

const KernelTable& choose() {
  const char* forced = std::getenv("BITOPS_ISA");
  const bool want_scalar = forced && std::strcmp(forced, "scalar") == 0;
  if (!want_scalar && avx2_kernels() && cpu_has_avx2()) return *avx2_kernels();
  return scalar_kernels();
}

}  // namespace

const KernelTable& active_kernels() {
  static const KernelTable& table = choose();
  return table;
}

}  // namespace bitops::cpu
