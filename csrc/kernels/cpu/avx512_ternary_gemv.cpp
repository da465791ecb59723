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
// a chunk of kChunkBlocks = 2^13 blocks (+ the tail block) keeps |lane| below
// (2^13 + 1) * 2^16 < 2^30, and chunks are added in int64. A corrupt code 3
// (192 * 128 per product) cannot wrap either, and its result is thrown away.
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
  asm("%{evex%} vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(x));  // EVEX: AVX-512 VNNI, not AVX-VNNI
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

// One vector per row: the four run accumulators with their powers of 4 taken off.
inline __m256i combine_runs(const __m256i (&acc)[4]) {
  return _mm256_add_epi32(_mm256_add_epi32(_mm256_srai_epi32(acc[0], 6), _mm256_srai_epi32(acc[1], 4)),
                          _mm256_add_epi32(_mm256_srai_epi32(acc[2], 2), acc[3]));
}

// sum[j] += the 8 lanes of row j's combined accumulators. In int32 first: a
// chunk's row total is at most (2^13 + 1) * 128 * 256 < 2^29.
template <int NR>
inline void add_row_sums(const __m256i (&acc)[NR][4], int64_t* sum) {
  __m256i s[NR];
  for (int j = 0; j < NR; ++j) s[j] = combine_runs(acc[j]);
  if constexpr (NR == 4) {  // lanes of h: rows 0-3 (low half), rows 0-3 again (high half)
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    alignas(16) int32_t rows[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(rows),
                    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
    for (int j = 0; j < 4; ++j) sum[j] += rows[j];
  } else {
    for (int j = 0; j < NR; ++j) {
      __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s[j]), _mm256_extracti128_si256(s[j], 1));
      t = _mm_add_epi32(t, _mm_unpackhi_epi64(t, t));
      sum[j] += _mm_cvtsi128_si32(t) + _mm_extract_epi32(t, 1);
    }
  }
}

// Rows [n, n + NR): dots of the `full` whole blocks in chunks of at most
// kChunkBlocks, the tail block going into the last chunk.
// pf: nullptr or the next tile, prefetched while this one is computed.
template <int NR>
bool tile(const uint8_t* w, int64_t rb, int64_t n, const int8_t* x, int64_t full, const int8_t* xtail,
          const uint8_t* tail_keep, int64_t* dots, const uint8_t* pf) {
  const Masks m{_mm256_set1_epi8(static_cast<char>(0xC0)), _mm256_set1_epi8(0x30), _mm256_set1_epi8(0x0C),
                _mm256_set1_epi8(0x03)};
  int64_t sum[NR] = {};
  __m256i seen = _mm256_setzero_si256(), tail_seen = _mm256_setzero_si256();
  int64_t b0 = 0;
  do {
    const int64_t blocks = full - b0 < kChunkBlocks ? full - b0 : kChunkBlocks;
    __m256i acc[NR][4];
    const uint8_t* at[NR];
    for (int j = 0; j < NR; ++j) {
      at[j] = w + (n + j) * rb + b0 * kBlockBytes;
      for (int q = 0; q < 4; ++q) acc[j][q] = _mm256_setzero_si256();
    }
    dot_blocks<NR>(m, at, x + b0 * 128, blocks, acc, seen, pf ? pf + b0 * kPrefetchPerBlock : nullptr);
    b0 += blocks;
    if (b0 == full && tail_keep) {
      if (pf)  // the next tile's last NR * 32 bytes
        for (int64_t off = 0; off < NR * kBlockBytes; off += 64)
          _mm_prefetch(reinterpret_cast<const char*>(pf + full * kPrefetchPerBlock + off), _MM_HINT_T0);
      for (int j = 0; j < NR; ++j) at[j] = w + (n + j) * rb + full * kBlockBytes;
      dot_blocks<NR>(m, at, xtail, 1, acc, tail_seen, nullptr);
    }
    add_row_sums<NR>(acc, sum);
  } while (b0 < full);
  __m256i bad = _mm256_and_si256(seen, _mm256_set1_epi8(0x55));
  if (tail_keep)
    bad = _mm256_or_si256(bad, _mm256_and_si256(tail_seen, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tail_keep))));
  for (int j = 0; j < NR; ++j) dots[n + j] = sum[j];
  return _mm256_testz_si256(bad, bad);
}

}  // namespace

bool ternary_gemv_codes(const uint8_t* w, int64_t rb, int64_t nr, int64_t rows_readable, const int8_t* x, int64_t full,
                        const int8_t* xtail, const uint8_t* tail_keep, int64_t* dots) {
  bool ok = true;
  int64_t n = 0;
  for (; n + kRows <= nr; n += kRows) {
    // The next tile, prefetched while this one computes (measured here: no
    // software prefetch is 2-3x slower cold; 2 or more tiles ahead is slower too).
    const uint8_t* next = n + 2 * kRows <= rows_readable ? w + (n + kRows) * rb : nullptr;
    ok &= tile<kRows>(w, rb, n, x, full, xtail, tail_keep, dots, next);
  }
  for (; n < nr; ++n) ok &= tile<1>(w, rb, n, x, full, xtail, tail_keep, dots, nullptr);
  return ok;
}

}  // namespace bitops::cpu::vnni

#pragma GCC pop_options

#else
#include <cstdlib>
namespace bitops::cpu::vnni {
// Never called: only the x86 "cpu-avx512vnni" kernel table reaches it.
bool ternary_gemv_codes(const uint8_t*, int64_t, int64_t, int64_t, const int8_t*, int64_t, const int8_t*,
                        const uint8_t*, int64_t*) {
  std::abort();
}
}  // namespace bitops::cpu::vnni
#endif
