// Ternary GEMV (one row of int8 activations) on AVX-512 VNNI, straight from
// the packed bytes, with no decode shifts. Byte j of a 32-byte block holds the
// codes (w + 1) of weights j, j+32, j+64, j+96 at bits 7:6, 5:4, 3:2, 1:0
// (layout.h). Masking a byte with 0xC0, 0x30, 0x0C or 0x03 leaves one run's
// code times 64, 16, 4 or 1 in place, and vpdpbusd multiplies those unsigned
// bytes by the matching 32 activations. Each run keeps its own accumulator,
// and the powers of 4 come off with exact shifts at the end:
//   sum(code * x) = (acc0 >> 6) + (acc1 >> 4) + (acc2 >> 2) + acc3.
// Per 128 weights that is 4 AND + 4 vpdpbusd (+ 2 ops for the code-3 check),
// where decoding each run first costs 3 more shifts. Four weight rows at a
// time give 16 independent accumulator chains, which hides vpdpbusd's latency.
//
// Exactness: a lane of acc0 adds 4 products of at most 128 * 128 per block;
// a chunk of kChunkBlocks = 2^13 blocks keeps |lane| <= 2^13 * 2^16 = 2^29,
// and chunks are added in int64.
#include "vnni_kernels.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")

namespace bitops::cpu::vnni {
namespace {

constexpr int64_t kBlockBytes = 32;     // 128 weights
constexpr int64_t kChunkBlocks = 1 << 13;
constexpr int kRows = 4;                // weight rows per register tile
// A GEMV tile prefetches the next tile (kRows rows of 32 bytes per block) as
// one sequential stream, 128 bytes per block: the hardware prefetcher follows
// kRows interleaved row streams poorly.
constexpr int64_t kPrefetchPerBlock = kRows * kBlockBytes;

// acc += 4-product sums of unsigned a times signed x, in acc's own register
// (asm: GCC copies the accumulator through scratch registers otherwise).
__attribute__((always_inline)) inline void add_dpbusd(__m256i& acc, __m256i a, __m256i x) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(x));
}

// The byte masks that keep run 0, 1, 2, 3's code in place.
struct Masks {
  __m256i run0, run1, run2, run3;
};

// acc[j][q] += run q of `blocks` blocks of row w[j] times x; seen collects
// v & (v >> 1), whose bits 6, 4, 2, 0 are set where a code is 3. With pf, two
// cache lines at pf + 128 b are prefetched per block b.
template <int NR>
__attribute__((always_inline)) inline void dot_blocks(const Masks& m, const uint8_t* const* w, const int8_t* x,
                                                      int64_t blocks, __m256i (&acc)[NR][4], __m256i& seen,
                                                      const uint8_t* pf) {
  for (int64_t b = 0; b < blocks; ++b) {
    if (pf) {
      _mm_prefetch(reinterpret_cast<const char*>(pf + b * kPrefetchPerBlock), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(pf + b * kPrefetchPerBlock + 64), _MM_HINT_T0);
    }
    const int8_t* xb = x + b * 128;
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb));
    const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 32));
    const __m256i x2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 64));
    const __m256i x3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 96));
    for (int j = 0; j < NR; ++j) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[j] + b * kBlockBytes));
      seen = _mm256_ternarylogic_epi32(seen, v, _mm256_srli_epi16(v, 1), 0xF8);  // seen | (v & v >> 1)
      add_dpbusd(acc[j][0], _mm256_and_si256(v, m.run0), x0);
      add_dpbusd(acc[j][1], _mm256_and_si256(v, m.run1), x1);
      add_dpbusd(acc[j][2], _mm256_and_si256(v, m.run2), x2);
      add_dpbusd(acc[j][3], _mm256_and_si256(v, m.run3), x3);
    }
  }
}

inline int64_t sum_runs(__m256i (&acc)[4]) {
  const __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_srai_epi32(acc[0], 6), _mm256_srai_epi32(acc[1], 4)),
                                     _mm256_add_epi32(_mm256_srai_epi32(acc[2], 2), acc[3]));
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
  int64_t t = 0;
  for (int32_t l : lanes) t += l;
  return t;
}

// Rows [n, n + NR): dots of the `full` whole blocks (and the tail block), in
// chunks; pf: nullptr or the next tile (NR rows), prefetched while this one is computed.
template <int NR>
bool tile(const uint8_t* w, int64_t rb, int64_t n, const int8_t* x, int64_t full, const int8_t* xtail,
          const uint8_t* tail_keep, int64_t* dots, const uint8_t* pf) {
  const Masks m{_mm256_set1_epi8(static_cast<char>(0xC0)), _mm256_set1_epi8(0x30), _mm256_set1_epi8(0x0C),
                _mm256_set1_epi8(0x03)};
  const uint8_t* row[NR];
  int64_t sum[NR] = {};
  for (int j = 0; j < NR; ++j) row[j] = w + (n + j) * rb;
  __m256i seen = _mm256_setzero_si256();
  for (int64_t b0 = 0; b0 < full; b0 += kChunkBlocks) {
    const int64_t blocks = full - b0 < kChunkBlocks ? full - b0 : kChunkBlocks;
    __m256i acc[NR][4];
    for (int j = 0; j < NR; ++j)
      for (int q = 0; q < 4; ++q) acc[j][q] = _mm256_setzero_si256();
    const uint8_t* rows_at[NR];
    for (int j = 0; j < NR; ++j) rows_at[j] = row[j] + b0 * kBlockBytes;
    dot_blocks<NR>(m, rows_at, x + b0 * 128, blocks, acc, seen, pf ? pf + b0 * kPrefetchPerBlock : nullptr);
    for (int j = 0; j < NR; ++j) sum[j] += sum_runs(acc[j]);
  }
  __m256i bad = _mm256_and_si256(seen, _mm256_set1_epi8(0x55));
  if (pf && tail_keep)  // the next tile's last kRows * 32 bytes
    for (int64_t off = 0; off < NR * kBlockBytes; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(pf + full * kPrefetchPerBlock + off), _MM_HINT_T0);
  if (tail_keep) {
    __m256i acc[NR][4], tail_seen = _mm256_setzero_si256();
    for (int j = 0; j < NR; ++j)
      for (int q = 0; q < 4; ++q) acc[j][q] = _mm256_setzero_si256();
    const uint8_t* rows_at[NR];
    for (int j = 0; j < NR; ++j) rows_at[j] = row[j] + full * kBlockBytes;
    dot_blocks<NR>(m, rows_at, xtail, 1, acc, tail_seen, nullptr);
    for (int j = 0; j < NR; ++j) sum[j] += sum_runs(acc[j]);
    const __m256i keep = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tail_keep));
    bad = _mm256_or_si256(bad, _mm256_and_si256(tail_seen, keep));
  }
  for (int j = 0; j < NR; ++j) dots[n + j] = sum[j];
  return _mm256_testz_si256(bad, bad);
}

}  // namespace

bool ternary_gemv_codes(const uint8_t* w, int64_t rb, int64_t nr, const int8_t* x, int64_t full, const int8_t* xtail,
                        const uint8_t* tail_keep, int64_t* dots) {
  bool ok = true;
  int64_t n = 0;
  for (; n + kRows <= nr; n += kRows) {
        // The next tile, prefetched while this one computes (measured here: no
    // software prefetch is 2-3x slower cold; 2 or more tiles ahead is slower too).
    const uint8_t* next = n + 2 * kRows <= nr ? w + (n + kRows) * rb : nullptr;
    ok &= tile<kRows>(w, rb, n, x, full, xtail, tail_keep, dots, next);
  }
  for (; n < nr; ++n) ok &= tile<1>(w, rb, n, x, full, xtail, tail_keep, dots, nullptr);
  return ok;
}

}  // namespace bitops::cpu::vnni

#pragma GCC pop_options

#else
namespace bitops::cpu::vnni {
bool ternary_gemv_codes(const uint8_t*, int64_t, int64_t, const int8_t*, int64_t, const int8_t*, const uint8_t*,
                        int64_t*) {
  return false;
}
}  // namespace bitops::cpu::vnni
#endif
