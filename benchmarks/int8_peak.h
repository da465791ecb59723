// The machine's int8 rates and core clock, measured (benchmark only): shared by
// cpu_variants.cpp and int8_peak.cpp, the probe benchmarks/int8_gemm.py runs.
#pragma once
#include <immintrin.h>
#include <cstdint>
#include <cstdio>
#include <ctime>

namespace peak {

// CPU time of this thread: the machine is shared, and time slices lost to other
// processes should not count against a variant.
inline double now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#pragma GCC push_options
#pragma GCC target("avx2,fma")

// ---- the hardware int8 rate: 12 independent vpmaddubsw per round, each
// added into its own int16 accumulator, the kernels' exact instruction pair.
// One asm block: written in C, GCC hoists the loop-invariant product or keeps
// the accumulators in memory, and chains of dependent vpmaddubsw would
// measure its latency, not its issue rate.
#define BITOPS_PAIR(a) "vpmaddubsw %13, %14, %12\n\tvpaddw %12, %" #a ", %" #a "\n\t"
__attribute__((noinline)) inline void maddubs_rounds(__m256i (&acc)[12], __m256i codes, __m256i x, int64_t rounds) {
  __m256i a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], a4 = acc[4], a5 = acc[5];
  __m256i a6 = acc[6], a7 = acc[7], a8 = acc[8], a9 = acc[9], a10 = acc[10], a11 = acc[11], product;
  for (int64_t r = 0; r < rounds; ++r)
    asm volatile(BITOPS_PAIR(0) BITOPS_PAIR(1) BITOPS_PAIR(2) BITOPS_PAIR(3) BITOPS_PAIR(4) BITOPS_PAIR(5)
                 BITOPS_PAIR(6) BITOPS_PAIR(7) BITOPS_PAIR(8) BITOPS_PAIR(9) BITOPS_PAIR(10) BITOPS_PAIR(11)
                 : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7), "+x"(a8),
                   "+x"(a9), "+x"(a10), "+x"(a11), "=&x"(product)
                 : "x"(x), "x"(codes));
  acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3, acc[4] = a4, acc[5] = a5;
  acc[6] = a6, acc[7] = a7, acc[8] = a8, acc[9] = a9, acc[10] = a10, acc[11] = a11;
}
#undef BITOPS_PAIR

inline double maddubs_per_second(double seconds_budget, double (*clock)()) {
  __m256i acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_setzero_si256();
  __m256i codes = _mm256_set1_epi8(2), x = _mm256_set1_epi8(1);
  asm volatile("" : "+x"(codes), "+x"(x));  // opaque: nothing below can be folded at compile time
  int64_t iters = 0;
  const double t0 = clock();
  while (clock() - t0 < seconds_budget) {
    maddubs_rounds(acc, codes, x, 100000);
    iters += 100000;
  }
  const double dt = clock() - t0;
  int sink = 0;
  for (int i = 0; i < 12; ++i) sink += _mm256_extract_epi16(acc[i], 0);
  if (sink == 0x7fffffff) std::printf("\n");  // keeps the accumulators alive
  return 12.0 * iters / dt;
}

// The AVX-512 VNNI rate: 12 independent vpdpbusd zmm per round (64 MACs each),
// the cpu-avx512vnni set's inner instruction. 0 where the CPU lacks it.
#define BITOPS_DP(a) "vpdpbusd %13, %12, %" #a "\n\t"
__attribute__((noinline, target("avx512f,avx512bw,avx512vnni"))) inline void dpbusd_rounds(int64_t rounds) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  __m512i a8 = a0, a9 = a0, a10 = a0, a11 = a0, codes = _mm512_set1_epi8(2), x = _mm512_set1_epi8(1);
  for (int64_t r = 0; r < rounds; ++r)
    asm volatile(BITOPS_DP(0) BITOPS_DP(1) BITOPS_DP(2) BITOPS_DP(3) BITOPS_DP(4) BITOPS_DP(5) BITOPS_DP(6)
                 BITOPS_DP(7) BITOPS_DP(8) BITOPS_DP(9) BITOPS_DP(10) BITOPS_DP(11)
                 : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7), "+v"(a8),
                   "+v"(a9), "+v"(a10), "+v"(a11)
                 : "v"(codes), "v"(x));
}
#undef BITOPS_DP

inline double vnni_macs_per_second(double seconds_budget, double (*clock)()) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vnni")) return 0;
  int64_t iters = 0;
  const double t0 = clock();
  while (clock() - t0 < seconds_budget) {
    dpbusd_rounds(100000);
    iters += 100000;
  }
  return 12.0 * 64 * iters / (clock() - t0);
}

#pragma GCC pop_options

// The core clock: a chain of dependent integer adds retires one per cycle.
inline double clock_hz() {
  const int64_t n = 200000000;
  int64_t v = 0;
  const double t0 = now();
  for (int64_t i = 0; i < n; ++i) asm volatile("add $1, %0" : "+r"(v));
  return n / (now() - t0);
}

}  // namespace peak
