// Ternary GEMV (one row of int8 activations) and few-row products (2 to 4
// rows) on AVX-512 VNNI, straight from the packed bytes, with no decode
// shifts. Byte j of a 32-byte block holds the codes (w + 1) of weights j,
// j+32, j+64, j+96 at bits 7:6, 5:4, 3:2, 1:0 (layout.h). Masking a byte
// with 0xC0, 0x30, 0x0C or 0x03 leaves one run's code times 64, 16, 4 or 1 in
// place, and vpdpbusd multiplies those unsigned bytes by the matching 32
// activations. Each run keeps its own accumulator,
// and the powers of 4 come off with exact shifts at the end:
//   sum(code * x) = (acc0 >> 6) + (acc1 >> 4) + (acc2 >> 2) + acc3.
// Per 128 weights that is 4 AND + 4 vpdpbusd (+ 2 ops for the code-3 check),
// where decoding each run first costs 3 more shifts. Four weight rows at a
// time give 16 independent accumulator chains, which hides vpdpbusd's latency.
// With 2 to 4 rows of x, one weight row at a time: its 4 masked vectors serve
// every row of x (4 vpdpbusd per row of x), MR * 4 chains.
//
// Exactness: a lane of acc0 adds 4 products of at most 128 * 128 per block;
// a chunk of kChunkBlocks = 2^13 blocks (+ the tail block) keeps |lane| below
// (2^13 + 1) * 2^16 < 2^30, and chunks are added in int64. A corrupt code 3
// (192 * 128 per product) cannot wrap either ((2^13 + 1) * 4 * 192 * 128 < 2^30),
// and its result is thrown away.
#include "vnni_kernels.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <cstdlib>
#include <cpuid.h>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")

namespace bitops::cpu::vnni {
namespace {

constexpr int64_t kBlockBytes = 32;     // 128 weights
constexpr int64_t kChunkBlocks = 1 << 13;
constexpr int kRows = 4;                // weight rows per register tile
// A tile prefetches the next tile's rows (32 bytes of each per block) as one
// sequential stream: the hardware prefetcher follows interleaved row streams
// poorly (benchmarks/results/gemv_read_patterns.md).

// acc += 4-product sums of unsigned a times signed x, in acc's own register
// (asm: GCC copies the accumulator through scratch registers otherwise).
__attribute__((always_inline)) inline void add_dpbusd(__m256i& acc, __m256i a, __m256i x) {
  asm("%{evex%} vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(x));  // EVEX: AVX-512 VNNI, not AVX-VNNI
}

// The byte masks that keep run 0, 1, 2, 3's code in place.
struct Masks {
  __m256i run0, run1, run2, run3;
};

// acc[j][i][q] += run q of `blocks` blocks of weight row w[j] times x row
// x[i]; seen collects v & (v >> 1), whose bits 6, 4, 2, 0 are set where a code
// is 3. With pf, the next NR rows' block b (NR * 32 bytes at pf + NR * 32 b:
// the next tile's bytes in order) is prefetched per block b, a whole line per
// two blocks when that is less than a line (NR = 1).
template <int MR, int NR>
__attribute__((always_inline)) inline void dot_blocks(const Masks& m, const uint8_t* const* w, const int8_t* const* x,
                                                      int64_t blocks, __m256i (&acc)[NR][MR][4], __m256i& seen,
                                                      const uint8_t* pf) {
  static_assert(MR == 1 || NR == 1, "several rows of x go with one weight row at a time");
  constexpr int64_t kStep = NR * kBlockBytes;
  for (int64_t b = 0; b < blocks; ++b) {
    if (pf && (kStep >= 64 || b % 2 == 0)) {
      for (int64_t off = 0; off < kStep; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(pf + b * kStep + off), _MM_HINT_T0);
    }
    if constexpr (MR == 1) {  // one row of x, loaded once for NR weight rows
      const int8_t* xb = x[0] + b * 128;
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb));
      const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 32));
      const __m256i x2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 64));
      const __m256i x3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 96));
      for (int j = 0; j < NR; ++j) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[j] + b * kBlockBytes));
        seen = _mm256_ternarylogic_epi32(seen, v, _mm256_srli_epi16(v, 1), 0xF8);  // seen | (v & v >> 1)
        add_dpbusd(acc[j][0][0], _mm256_and_si256(v, m.run0), x0);
        add_dpbusd(acc[j][0][1], _mm256_and_si256(v, m.run1), x1);
        add_dpbusd(acc[j][0][2], _mm256_and_si256(v, m.run2), x2);
        add_dpbusd(acc[j][0][3], _mm256_and_si256(v, m.run3), x3);
      }
    } else {  // one weight row, masked once for MR rows of x
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[0] + b * kBlockBytes));
      seen = _mm256_ternarylogic_epi32(seen, v, _mm256_srli_epi16(v, 1), 0xF8);
      const __m256i a0 = _mm256_and_si256(v, m.run0), a1 = _mm256_and_si256(v, m.run1),
                    a2 = _mm256_and_si256(v, m.run2), a3 = _mm256_and_si256(v, m.run3);
      for (int i = 0; i < MR; ++i) {
        const int8_t* xb = x[i] + b * 128;
        add_dpbusd(acc[0][i][0], a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb)));
        add_dpbusd(acc[0][i][1], a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 32)));
        add_dpbusd(acc[0][i][2], a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 64)));
        add_dpbusd(acc[0][i][3], a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 96)));
      }
    }
  }
}

// The one-row-of-x loop on zmm for the rows-in-order GEMV: two consecutive blocks
// per 64-byte load, half the instructions per weight byte of dot_blocks<1, NR>.
// Masking the pair with a run's mask gives that run of both blocks; xz holds x in
// the matching order (pair_x), so one load serves each run. Pair p of rows w[j] is
// prefetched from pf (into L2) as dot_blocks does.
__attribute__((always_inline)) inline void add_dpbusd_z(__m512i& acc, __m512i a, __m512i x) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(x));
}

template <int NR>
__attribute__((always_inline)) inline void dot_pairs(const uint8_t* const* w, const int8_t* xz, int64_t pairs,
                                                     __m512i (&acc)[NR][4], __m512i& seen, const uint8_t* pf) {
  const __m512i m0 = _mm512_set1_epi8(static_cast<char>(0xC0)), m1 = _mm512_set1_epi8(0x30),
                m2 = _mm512_set1_epi8(0x0C), m3 = _mm512_set1_epi8(0x03);
  constexpr int64_t kStep = NR * 2 * kBlockBytes;
  for (int64_t p = 0; p < pairs; ++p) {
    if (pf)  // into L2: prefetches to L1 would hold the line fill buffers the loads need
      for (int64_t off = 0; off < kStep; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(pf + p * kStep + off), _MM_HINT_T1);
    const int8_t* xp = xz + p * 256;
    const __m512i x0 = _mm512_loadu_si512(xp), x1 = _mm512_loadu_si512(xp + 64), x2 = _mm512_loadu_si512(xp + 128),
                  x3 = _mm512_loadu_si512(xp + 192);
    for (int j = 0; j < NR; ++j) {
      const __m512i v = _mm512_loadu_si512(w[j] + p * 2 * kBlockBytes);
      seen = _mm512_ternarylogic_epi32(seen, v, _mm512_srli_epi16(v, 1), 0xF8);  // seen | (v & v >> 1)
      add_dpbusd_z(acc[j][0], _mm512_and_si512(v, m0), x0);
      add_dpbusd_z(acc[j][1], _mm512_and_si512(v, m1), x1);
      add_dpbusd_z(acc[j][2], _mm512_and_si512(v, m2), x2);
      add_dpbusd_z(acc[j][3], _mm512_and_si512(v, m3), x3);
    }
  }
}

// x's first 2 * pairs blocks in dot_pairs' order: for pair p and run q, 64 bytes:
// x[256p + 32q, +32) (block 2p) then x[256p + 128 + 32q, +32) (block 2p + 1).
void pair_x(const int8_t* x, int64_t pairs, int8_t* xz) {
  for (int64_t p = 0; p < pairs; ++p)
    for (int q = 0; q < 4; ++q) {
      std::memcpy(xz + p * 256 + q * 64, x + p * 256 + q * 32, 32);
      std::memcpy(xz + p * 256 + q * 64 + 32, x + p * 256 + 128 + q * 32, 32);
    }
}

inline __m256i fold(__m512i v) { return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1)); }

// One vector per (weight row, x row): the four run accumulators with their powers of 4 taken off.
inline __m256i combine_runs(const __m256i (&acc)[4]) {
  return _mm256_add_epi32(_mm256_add_epi32(_mm256_srai_epi32(acc[0], 6), _mm256_srai_epi32(acc[1], 4)),
                          _mm256_add_epi32(_mm256_srai_epi32(acc[2], 2), acc[3]));
}

// sum[j][i] += the 8 lanes of (weight row j, x row i)'s combined accumulators.
// In int32 first: a chunk's total is at most (2^13 + 1) * 128 * 256 < 2^29.
template <int MR, int NR>
inline void add_row_sums(const __m256i (&acc)[NR][MR][4], int64_t (&sum)[NR][MR]) {
  if constexpr (MR == 1 && NR == 4) {  // lanes of h: rows 0-3 (low half), rows 0-3 again (high half)
    __m256i s[4];
    for (int j = 0; j < 4; ++j) s[j] = combine_runs(acc[j][0]);
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    alignas(16) int32_t rows[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(rows),
                    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
    for (int j = 0; j < 4; ++j) sum[j][0] += rows[j];
  } else {
    for (int j = 0; j < NR; ++j)
      for (int i = 0; i < MR; ++i) {
        const __m256i s = combine_runs(acc[j][i]);
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        t = _mm_add_epi32(t, _mm_unpackhi_epi64(t, t));
        sum[j][i] += _mm_cvtsi128_si32(t) + _mm_extract_epi32(t, 1);
      }
  }
}

// Weight rows [n, n + NR) against x rows x[0..MR): dots of the `full` whole
// blocks in chunks of at most kChunkBlocks, the tail block going into the last
// chunk; dots[(n + j) * MR + i]. pf: nullptr or the next NR weight rows,
// prefetched while these are computed.
template <int MR, int NR>
bool tile(const uint8_t* w, int64_t rb, int64_t n, const int8_t* const* x, int64_t full, const int8_t* const* xtail,
          const uint8_t* tail_keep, int64_t* dots, const uint8_t* pf) {
  const Masks m{_mm256_set1_epi8(static_cast<char>(0xC0)), _mm256_set1_epi8(0x30), _mm256_set1_epi8(0x0C),
                _mm256_set1_epi8(0x03)};
  int64_t sum[NR][MR] = {};
  __m256i seen = _mm256_setzero_si256(), tail_seen = _mm256_setzero_si256();
  int64_t b0 = 0;
  do {
    const int64_t blocks = full - b0 < kChunkBlocks ? full - b0 : kChunkBlocks;
    __m256i acc[NR][MR][4];
    const uint8_t* at[NR];
    const int8_t* xs[MR];
    for (int i = 0; i < MR; ++i) xs[i] = x[i] + b0 * 128;
    for (int j = 0; j < NR; ++j) {
      at[j] = w + (n + j) * rb + b0 * kBlockBytes;
      for (int i = 0; i < MR; ++i)
        for (int q = 0; q < 4; ++q) acc[j][i][q] = _mm256_setzero_si256();
    }
    dot_blocks<MR, NR>(m, at, xs, blocks, acc, seen, pf ? pf + b0 * NR * kBlockBytes : nullptr);
    b0 += blocks;
    if (b0 == full && tail_keep) {
      if (pf)  // the next rows' tail bytes
        for (int64_t off = 0; off < NR * kBlockBytes; off += 64)
          _mm_prefetch(reinterpret_cast<const char*>(pf + full * NR * kBlockBytes + off), _MM_HINT_T0);
      for (int j = 0; j < NR; ++j) at[j] = w + (n + j) * rb + full * kBlockBytes;
      dot_blocks<MR, NR>(m, at, xtail, 1, acc, tail_seen, nullptr);
    }
    add_row_sums<MR, NR>(acc, sum);
  } while (b0 < full);
  __m256i bad = _mm256_and_si256(seen, _mm256_set1_epi8(0x55));
  if (tail_keep)
    bad = _mm256_or_si256(bad, _mm256_and_si256(tail_seen, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tail_keep))));
  for (int j = 0; j < NR; ++j)
    for (int i = 0; i < MR; ++i) dots[(n + j) * MR + i] = sum[j][i];
  return _mm256_testz_si256(bad, bad);
}

// Weight rows one at a time against MR rows of x, the next row prefetched.
template <int MR>
bool rows_codes(const uint8_t* w, int64_t rb, int64_t nr, int64_t rows_readable, const int8_t* const* x, int64_t full,
                const int8_t* const* xtail, const uint8_t* tail_keep, int64_t* dots) {
  bool ok = true;
  for (int64_t n = 0; n < nr; ++n) {
    const uint8_t* next = n + 2 <= rows_readable ? w + (n + 1) * rb : nullptr;
    ok &= tile<MR, 1>(w, rb, n, x, full, xtail, tail_keep, dots, next);
  }
  return ok;
}

// tile<1, NR> with the whole blocks in zmm pairs (dot_pairs; xz = pair_x(x)), an odd
// last block of a chunk and the tail block in ymm as tile does. Same sums, same checks.
// A lane of a pair accumulator sees one block of each pair: no more than tile's lanes.
template <int NR>
bool tile_pairs(const uint8_t* w, int64_t rb, int64_t n, const int8_t* x, const int8_t* xz, int64_t full,
                const int8_t* xtail, const uint8_t* tail_keep, int64_t* dots, const uint8_t* pf) {
  const Masks m{_mm256_set1_epi8(static_cast<char>(0xC0)), _mm256_set1_epi8(0x30), _mm256_set1_epi8(0x0C),
                _mm256_set1_epi8(0x03)};
  int64_t sum[NR][1] = {};
  __m512i seen_z = _mm512_setzero_si512();
  __m256i seen = _mm256_setzero_si256(), tail_seen = _mm256_setzero_si256();
  int64_t b0 = 0;
  do {
    const int64_t blocks = full - b0 < kChunkBlocks ? full - b0 : kChunkBlocks;  // kChunkBlocks is even
    const int64_t pairs = blocks / 2;
    __m512i acc_z[NR][4];
    __m256i acc[NR][1][4];
    const uint8_t* at[NR];
    for (int j = 0; j < NR; ++j) {
      at[j] = w + (n + j) * rb + b0 * kBlockBytes;
      for (int q = 0; q < 4; ++q) {
        acc_z[j][q] = _mm512_setzero_si512();
        acc[j][0][q] = _mm256_setzero_si256();
      }
    }
    dot_pairs<NR>(at, xz + b0 * 128, pairs, acc_z, seen_z, pf ? pf + b0 * NR * kBlockBytes : nullptr);
    if (blocks % 2) {
      const int64_t b = b0 + 2 * pairs;
      const int8_t* const xs[1] = {x + b * 128};
      for (int j = 0; j < NR; ++j) at[j] = w + (n + j) * rb + b * kBlockBytes;
      dot_blocks<1, NR>(m, at, xs, 1, acc, seen, pf ? pf + b * NR * kBlockBytes : nullptr);
    }
    for (int j = 0; j < NR; ++j)
      for (int q = 0; q < 4; ++q) acc[j][0][q] = _mm256_add_epi32(acc[j][0][q], fold(acc_z[j][q]));
    b0 += blocks;
    if (b0 == full && tail_keep) {
      if (pf)
        for (int64_t off = 0; off < NR * kBlockBytes; off += 64)
          _mm_prefetch(reinterpret_cast<const char*>(pf + full * NR * kBlockBytes + off), _MM_HINT_T0);
      for (int j = 0; j < NR; ++j) at[j] = w + (n + j) * rb + full * kBlockBytes;
      const int8_t* const xt[1] = {xtail};
      dot_blocks<1, NR>(m, at, xt, 1, acc, tail_seen, nullptr);
    }
    add_row_sums<1, NR>(acc, sum);
  } while (b0 < full);
  seen = _mm256_or_si256(seen, _mm256_or_si256(_mm512_castsi512_si256(seen_z), _mm512_extracti64x4_epi64(seen_z, 1)));
  __m256i bad = _mm256_and_si256(seen, _mm256_set1_epi8(0x55));
  if (tail_keep)
    bad = _mm256_or_si256(bad, _mm256_and_si256(tail_seen, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tail_keep))));
  for (int j = 0; j < NR; ++j) dots[n + j] = sum[j][0];
  return _mm256_testz_si256(bad, bad);
}

}  // namespace

namespace {
std::atomic<int> g_gemv_order{-1};  // GemvOrder, or -1: chosen by cpuid at first use

bool intel_cpu() {
  unsigned a, b, c, d;
  __cpuid(0, a, b, c, d);
  return b == 0x756e6547 && d == 0x49656e69 && c == 0x6c65746e;  // "GenuineIntel"
}

// Rows-in-order GEMV: the next row's lines are prefetched this far ahead (bytes).
constexpr int64_t kRowsPrefetchBytes = 4096;
}  // namespace

GemvOrder gemv_order() {
  int order = g_gemv_order.load(std::memory_order_relaxed);
  if (order < 0) {
    order = intel_cpu() ? kGemvRowsInOrder : kGemvTiles4;
    g_gemv_order.store(order, std::memory_order_relaxed);
  }
  return static_cast<GemvOrder>(order);
}

void set_gemv_order(int order) { g_gemv_order.store(order == kGemvTiles4 || order == kGemvRowsInOrder ? order : -1); }

bool ternary_gemv_codes(const uint8_t* w, int64_t rb, int64_t nr, int64_t rows_readable, const int8_t* x, int64_t full,
                        const int8_t* xtail, const uint8_t* tail_keep, int64_t* dots) {
  const int8_t* const xs[1] = {x};
  const int8_t* const xt[1] = {xtail};
  bool ok = true;
  int64_t n = 0;
  if (gemv_order() == kGemvRowsInOrder) {
    // One weight row at a time, in memory order (one stream per thread), on zmm pairs of
    // blocks, the row kRowsPrefetchBytes ahead prefetched into L2 (benchmarks/results/decode_cpu.md).
    thread_local std::vector<int8_t> xz;
    xz.resize(static_cast<size_t>(full / 2) * 256 + 64);
    pair_x(x, full / 2, xz.data());
    const int64_t ahead = std::max<int64_t>(1, (kRowsPrefetchBytes + rb - 1) / rb);
    for (; n < nr; ++n) {
      const uint8_t* next = n + 1 + ahead <= rows_readable ? w + (n + ahead) * rb : nullptr;
      ok &= tile_pairs<1>(w, rb, n, x, xz.data(), full, xtail, tail_keep, dots, next);
    }
    return ok;
  }
  for (; n + kRows <= nr; n += kRows) {
    // The next tile, prefetched while this one computes (measured on AMD EPYC: no
    // software prefetch is 2-3x slower cold; 2 or more tiles ahead is slower too).
    const uint8_t* next = n + 2 * kRows <= rows_readable ? w + (n + kRows) * rb : nullptr;
    ok &= tile<1, kRows>(w, rb, n, xs, full, xt, tail_keep, dots, next);
  }
  for (; n < nr; ++n) ok &= tile<1, 1>(w, rb, n, xs, full, xt, tail_keep, dots, nullptr);
  return ok;
}

bool ternary_rows_codes(const uint8_t* w, int64_t rb, int64_t nr, int64_t rows_readable, const int8_t* const* x,
                        const int8_t* const* xtail, int mr, int64_t full, const uint8_t* tail_keep, int64_t* dots) {
  switch (mr) {
    case 1: return ternary_gemv_codes(w, rb, nr, rows_readable, x[0], full, xtail[0], tail_keep, dots);
    case 2: return rows_codes<2>(w, rb, nr, rows_readable, x, full, xtail, tail_keep, dots);
    case 3: return rows_codes<3>(w, rb, nr, rows_readable, x, full, xtail, tail_keep, dots);
    case 4: return rows_codes<4>(w, rb, nr, rows_readable, x, full, xtail, tail_keep, dots);
    default: std::abort();  // callers pass 1 to kMaxRows
  }
}

}  // namespace bitops::cpu::vnni

#pragma GCC pop_options

#else
#include <cstdlib>
namespace bitops::cpu::vnni {
GemvOrder gemv_order() { return kGemvTiles4; }
void set_gemv_order(int) {}
// Never called: only the x86 "cpu-avx512vnni" kernel table reaches it.
bool ternary_gemv_codes(const uint8_t*, int64_t, int64_t, int64_t, const int8_t*, int64_t, const int8_t*,
                        const uint8_t*, int64_t*) {
  std::abort();
}
bool ternary_rows_codes(const uint8_t*, int64_t, int64_t, int64_t, const int8_t* const*, const int8_t* const*, int,
                        int64_t, const uint8_t*, int64_t*) {
  std::abort();
}
}  // namespace bitops::cpu::vnni
#endif
