// The decoded int8 GEMM's inner kernel with AVX-512 VNNI (see vnni_kernels.h).
// vpdpbusd multiplies 64 unsigned codes by 64 int8 activations and adds them,
// four products per lane, straight into int32: one instruction where AVX2
// needs vpmaddubsw + vpaddw, and no int16 partial sums to flush. A 4 x 3
// tile (12 zmm accumulators, 3 code vectors, 1 activation vector): with
// 6 x 4, GCC kept the accumulator array on the stack (measured 2x slower).
//
// Exactness: a lane adds K / 16 products of at most 2 * 128 = 256 in
// magnitude, so |lane| <= 2^24 / 16 * 256 = 2^28 for the largest K (2^24 - 1);
// the 16 lanes are summed in int64.
#include "vnni_kernels.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")

namespace bitops::cpu::vnni {
namespace {

constexpr int64_t kBlock = 128;  // weights per block; 2 zmm steps of 64
constexpr int kTileRows = 3;     // weight rows per register tile

inline int64_t sum_lanes(__m512i v) {
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, v);
  int64_t s = 0;
  for (int32_t l : lanes) s += l;  // int64: exact for the largest K
  return s;
}

// The sums of four accumulators' lanes, exact while each sum fits int32 (the
// additions wrap, and a wrapped sum of a total that fits comes out exact): two
// interleaving steps and two halvings for four outputs, where four single
// reductions through memory cost more than the products at small K.
inline void sum_lanes4(__m512i a0, __m512i a1, __m512i a2, __m512i a3, int64_t* out, int64_t stride) {
  const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(a0, a1), _mm512_unpackhi_epi32(a0, a1));
  const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(a2, a3), _mm512_unpackhi_epi32(a2, a3));
  const __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
  // each 128-bit lane now holds [a0 a1 a2 a3] partials of its quarter
  const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(u), _mm512_extracti64x4_epi64(u, 1));
  const __m128i q = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  alignas(16) int32_t v[4];
  _mm_store_si128(reinterpret_cast<__m128i*>(v), q);
  for (int i = 0; i < 4; ++i) out[i * stride] = v[i];
}

// Below this many blocks a dot product fits int32 (|sum| <= 256 k), so its lanes can be summed in int32.
constexpr int64_t kInt32SumBlocks = (int64_t(1) << 23) / kBlock;

// acc += 4-product sums of codes (unsigned) x x (signed), in acc's register.
// Inline asm keeps each sum in its own register (no copies through scratch).
__attribute__((always_inline)) inline void add_dpbusd(__m512i& acc, __m512i codes, __m512i x) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(codes), "v"(x));
}

// acc[i][j] += codes(c[j]) . x[i] over `steps` runs of 64 bytes.
template <int MR, int NR>
__attribute__((always_inline)) inline void dot_steps(const uint8_t* const* c, const int8_t* const* x, int64_t steps, __m512i (&acc)[MR][NR]) {
  for (int64_t s = 0; s < steps; ++s) {
    __m512i cv[NR];
    for (int j = 0; j < NR; ++j) cv[j] = _mm512_loadu_si512(c[j] + 64 * s);
    for (int i = 0; i < MR; ++i) {
      const __m512i xv = _mm512_loadu_si512(x[i] + 64 * s);
      for (int j = 0; j < NR; ++j) add_dpbusd(acc[i][j], cv[j], xv);
    }
  }
}

// Weight rows [j, j + NR) of the panel against MR rows of x.
template <int MR, int NR>
__attribute__((always_inline)) inline void tile(const uint8_t* codes, int64_t kp, int64_t j, const int8_t* const* x, const int8_t* const* xt,
                 int64_t full, int64_t* dots) {
  __m512i acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int jj = 0; jj < NR; ++jj) acc[i][jj] = _mm512_setzero_si512();
  const uint8_t* c[NR];
  for (int jj = 0; jj < NR; ++jj) c[jj] = codes + (j + jj) * kp;
  dot_steps<MR, NR>(c, x, full * (kBlock / 64), acc);
  if (kp > full * kBlock) {  // the zero-padded tail block
    for (int jj = 0; jj < NR; ++jj) c[jj] += full * kBlock;
    dot_steps<MR, NR>(c, xt, kBlock / 64, acc);
  }
  if (MR == 4 && full < kInt32SumBlocks) {
    for (int jj = 0; jj < NR; ++jj)
      sum_lanes4(acc[0][jj], acc[1 % MR][jj], acc[2 % MR][jj], acc[3 % MR][jj], dots + (j + jj) * MR, 1);
    return;
  }
  for (int jj = 0; jj < NR; ++jj)
    for (int i = 0; i < MR; ++i) dots[(j + jj) * MR + i] = sum_lanes(acc[i][jj]);
}

template <int MR>
__attribute__((noinline)) void panel(const uint8_t* codes, int64_t kp, int64_t np, const int8_t* const* x,
                                     const int8_t* const* xt, int64_t full, int64_t* dots) {
  int64_t j = 0;
  for (; j + kTileRows <= np; j += kTileRows) tile<MR, kTileRows>(codes, kp, j, x, xt, full, dots);
  for (; j < np; ++j) tile<MR, 1>(codes, kp, j, x, xt, full, dots);
}

}  // namespace

void panel_dots(const uint8_t* codes, int64_t kp, int64_t np, const int8_t* const* x, const int8_t* const* xt,
                int64_t full, int mr, int64_t* dots) {
  switch (mr) {
    case 4: return panel<4>(codes, kp, np, x, xt, full, dots);
    case 3: return panel<3>(codes, kp, np, x, xt, full, dots);
    case 2: return panel<2>(codes, kp, np, x, xt, full, dots);
    default: return panel<1>(codes, kp, np, x, xt, full, dots);
  }
}

}  // namespace bitops::cpu::vnni

#pragma GCC pop_options

namespace bitops::cpu::vnni {

bool usable() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

bool vpopcnt_usable() {
  __builtin_cpu_init();
  return usable() && __builtin_cpu_supports("avx512vpopcntdq");
}

}  // namespace bitops::cpu::vnni

#else
namespace bitops::cpu::vnni {
bool usable() { return false; }
bool vpopcnt_usable() { return false; }
void panel_dots(const uint8_t*, int64_t, int64_t, const int8_t* const*, const int8_t* const*, int64_t, int, int64_t*) {}
}  // namespace bitops::cpu::vnni
#endif
