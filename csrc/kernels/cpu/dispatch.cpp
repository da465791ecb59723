// Picks the kernel set once per process: the best the CPU runs (AVX-512 VNNI,
// AVX2, portable), unless BITOPS_ISA=avx2 or BITOPS_ISA=scalar caps it (the
// tests run every set this machine has).
#include <cstdlib>
#include <cstring>
#include "cpu_kernels.h"
#include "vnni_kernels.h"

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
  const bool cap_scalar = forced && std::strcmp(forced, "scalar") == 0;
  const bool cap_avx2 = forced && std::strcmp(forced, "avx2") == 0;
  if (cap_scalar || !avx2_kernels() || !cpu_has_avx2()) return scalar_kernels();
  if (!cap_avx2 && avx512vnni_kernels() && vnni::usable()) return *avx512vnni_kernels();
  return *avx2_kernels();
}

}  // namespace

const KernelTable& active_kernels() {
  static const KernelTable& table = choose();
  return table;
}

const PackTable& active_pack_kernels() {
  static const PackTable& table =
      (&active_kernels() == &scalar_kernels() || !avx2_pack_kernels()) ? scalar_pack_kernels() : *avx2_pack_kernels();
  return table;
}

}  // namespace bitops::cpu
