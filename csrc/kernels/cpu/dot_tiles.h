// Register-blocked dot-product drivers on 256-bit vectors, shared by the AVX2
// set (avx2_ternary.cpp, avx2_binary.cpp) and the AVX-512 set (avx512_ternary.cpp,
// avx512_binary.cpp), which reuses them with its own int8 product (avx512_dot.h).
// A "decoder" (decoders.h) says how a packed row turns into weights, a "path"
// how a block of weights meets a block of x; the blocking lives here once:
//
//   int8 path   sum_k c[k] * x[k] with _mm256_maddubs_epi16 on unsigned codes c
//               (weight = kScale * c - 1 ... see dot = kScale * sum(c x) - sum(x)),
//               int16 partial sums widened with _mm256_madd_epi16 every 8 blocks
//               (PathMaddubs; the AVX-512 set's PathDpbusd is in avx512_dot.h);
//   float path  decode 8 weights to float, one FMA per 8 weights (w * x is exact
//               for w in {-1, 0, 1}, so FMA rounds exactly like a multiply + add).
//
// Blocking: a micro-tile of MR rows of x times NR weight rows decodes each block
// of 128 weights once per MR rows; weight rows are walked in panels that stay in
// L2 while every row of x passes over them.
//
// Include only from a .cpp compiled with `#pragma GCC target("avx2,fma")`,
// AFTER its system headers and that pragma: this header includes nothing itself.
#pragma once

namespace bitops::cpu::ymm {
namespace {

constexpr int64_t kBlock = 128;       // weights per decoded block: 4 runs of 32
constexpr int64_t kFlushBlocks = 8;   // int16 sums: 8 blocks * 4 maddubs * |512| < 2^15
constexpr int64_t kPanelBytes = 192 * 1024;  // weight panel kept in L2 (1 MiB per core here)
// One row of x (GEMV) streams the weights once. A tile of NR rows is read as NR
// interleaved short streams, which the hardware prefetcher follows poorly
// (measured: 2x slower cold than one row at a time), so the kernel prefetches the
// tile kPrefetchTiles ahead itself, as one sequential stream.
constexpr int64_t kPrefetchTiles = 1;

// Where a GEMV tile (MR == 1) of NR rows starting at row n prefetches: the tile
// kPrefetchTiles ahead, spread evenly over this tile's `blocks` blocks; nullptr
// when there is none (or MR > 1: then a panel of weights stays in L2 anyway).
struct Prefetch {
  const uint8_t* p = nullptr;
  int64_t step = 0;
  Prefetch(int mr, int nr, const uint8_t* w, int64_t rb, int64_t n, int64_t n_end, int64_t blocks) {
    if (mr != 1 || blocks <= 0 || n + nr * (kPrefetchTiles + 1) > n_end) return;
    p = w + (n + nr * kPrefetchTiles) * rb;
    step = (nr * rb + blocks - 1) / blocks;
  }
};

// Prefetches `bytes` from p on, one cache line at a time.
inline void prefetch_span(const uint8_t* p, int64_t bytes) {
  for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
}

inline int64_t hsum_epi32(__m256i v) {
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), v);
  int64_t s = 0;
  for (int32_t l : lanes) s += l;  // int64: exact even for the largest K
  return s;
}

inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int64_t row_sum_i8(const int8_t* x, int64_t k) {
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, v), ones16));
  }
  int64_t s = hsum_epi32(acc);
  for (; i < k; ++i) s += x[i];
  return s;
}

inline void store_int(const Epilogue& e, int64_t m, int64_t n, int32_t acc) {
  if (e.out_int)
    e.out_int[m * e.ldo + n] = acc;
  else
    e.out[m * e.ldo + n] = epilogue_value(static_cast<float>(acc), e, m, n);
}

// ---------------------------------------------------------------- int8 path

// Keeps the compiler from re-associating a chain of vector adds: left alone it
// hoists all products of a block first and spills them (measured 1.8x slower).
#define BITOPS_PIN(v) asm("" : "+x"(v))

// Block b of NR weight rows against MR rows of x: mac(i, j, codes, x) for each
// of the 4 runs of 32 weights. With kCheck, seen collects the decoder's
// bad_codes over the raw weight bytes.
template <class Dec, int MR, int NR, bool kCheck, class Mac>
__attribute__((always_inline)) inline void block_products(const Dec& dec, const int8_t* const* x,
                                                          const uint8_t* const* w, int64_t b, __m256i& seen,
                                                          Mac&& mac) {
  __m256i v[NR];
  for (int j = 0; j < NR; ++j) {
    v[j] = dec.load(w[j], b);
    if (kCheck) seen = _mm256_or_si256(seen, Dec::bad_codes(v[j]));
  }
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {
    __m256i c[NR];
    for (int j = 0; j < NR; ++j) c[j] = dec.codes(v[j], q);
    for (int i = 0; i < MR; ++i) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i] + b * kBlock + 32 * q));
      for (int j = 0; j < NR; ++j) mac(i, j, c[j], xv);
    }
  }
}

// acc[i][j] += sum over `blocks` blocks of codes(w[j]) * x[i] (int32 lanes).
// With kCheck, bad collects the decoder's bad_codes over the raw weight bytes,
// masked with `check` once at the end (AND distributes over OR).
// pf: nullptr, or memory to prefetch at pf_step bytes per block.
template <class Dec, int MR, int NR, bool kCheck>
inline void dot_blocks_maddubs(const Dec& dec, const int8_t* const* x, const uint8_t* const* w, int64_t blocks,
                               __m256i (&acc)[MR][NR], __m256i check, __m256i& bad, const uint8_t* pf = nullptr,
                               int64_t pf_step = 0) {
  __m256i seen = _mm256_setzero_si256();
  const __m256i ones16 = _mm256_set1_epi16(1);
  for (int64_t b0 = 0; b0 < blocks; b0 += kFlushBlocks) {
    const int64_t b1 = b0 + kFlushBlocks < blocks ? b0 + kFlushBlocks : blocks;
    __m256i part[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) part[i][j] = _mm256_setzero_si256();
    for (int64_t b = b0; b < b1; ++b) {
      if (pf) prefetch_span(pf + b * pf_step, pf_step);
      block_products<Dec, MR, NR, kCheck>(dec, x, w, b, seen, [&](int i, int j, __m256i c, __m256i xv) {
        part[i][j] = _mm256_add_epi16(part[i][j], _mm256_maddubs_epi16(c, xv));
        BITOPS_PIN(part[i][j]);
      });
    }
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(part[i][j], ones16));
  }
  if (kCheck) bad = _mm256_or_si256(bad, _mm256_and_si256(seen, check));
}

// ---------------------------------------------------------------- float path

template <class Dec, int MR, int NR, bool kCheck>
inline void dot_blocks_f32(const Dec& dec, const float* const* x, const uint8_t* const* w, int64_t blocks,
                           __m256 (&acc)[MR][NR], __m256i check, __m256i& bad, const uint8_t* pf = nullptr,
                           int64_t pf_step = 0) {
  __m256i seen = _mm256_setzero_si256();
  for (int64_t b = 0; b < blocks; ++b) {
    if (pf) prefetch_span(pf + b * pf_step, pf_step);
    if (kCheck)
      for (int j = 0; j < NR; ++j) seen = _mm256_or_si256(seen, Dec::bad_codes(dec.load(w[j], b)));
#pragma GCC unroll 16
    for (int s = 0; s < 16; ++s) {
      const int q = s & 3, g = s >> 2;  // weights 32 q + 8 g .. + 7 of the block
      __m256 wv[NR];
      for (int j = 0; j < NR; ++j) wv[j] = dec.weights(w[j], b, q, g);
      for (int i = 0; i < MR; ++i) {
        const __m256 xv = _mm256_loadu_ps(x[i] + b * kBlock + 32 * q + 8 * g);
        for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
      }
    }
  }
  if (kCheck) bad = _mm256_or_si256(bad, _mm256_and_si256(seen, check));
}

// ---------------------------------------------------------------- both paths

// What the int8 and the float paths differ in: the accumulator, the block
// product, each row's correction term and how a finished sum is stored.
// kPackedRows: row_block hands whole rows of x to Path::packed_rows instead of
// tiling them (only the AVX-512 set's ternary path, avx512_dot.h, does).
struct PathMaddubs {
  static constexpr bool kPackedRows = false;
  using Scalar = int8_t;
  using Acc = __m256i;
  static Acc zero() { return _mm256_setzero_si256(); }
  template <class Dec, int MR, int NR, bool kCheck>
  static void dot(const Dec& dec, const int8_t* const* x, const uint8_t* const* w, int64_t blocks,
                  Acc (&acc)[MR][NR], __m256i check, __m256i& bad, const uint8_t* pf = nullptr, int64_t pf_step = 0) {
    dot_blocks_maddubs<Dec, MR, NR, kCheck>(dec, x, w, blocks, acc, check, bad, pf, pf_step);
  }
  static int64_t row_sum(const int8_t* x, int64_t k) { return row_sum_i8(x, k); }  // dot = sum(code * x) - sum(x)
  template <class Dec>
  static void store(const Epilogue& e, int64_t m, int64_t n, Acc acc, int64_t row_sum) {
    store_int(e, m, n, static_cast<int32_t>(Dec::kScale * hsum_epi32(acc) - row_sum));
  }
};

struct PathF32 {
  static constexpr bool kPackedRows = false;
  using Scalar = float;
  using Acc = __m256;
  static Acc zero() { return _mm256_setzero_ps(); }
  template <class Dec, int MR, int NR, bool kCheck>
  static void dot(const Dec& dec, const float* const* x, const uint8_t* const* w, int64_t blocks,
                  Acc (&acc)[MR][NR], __m256i check, __m256i& bad, const uint8_t* pf = nullptr, int64_t pf_step = 0) {
    dot_blocks_f32<Dec, MR, NR, kCheck>(dec, x, w, blocks, acc, check, bad, pf, pf_step);
  }
  static int64_t row_sum(const float*, int64_t) { return 0; }  // weights are decoded to -1, 0, +1 exactly
  template <class Dec>
  static void store(const Epilogue& e, int64_t m, int64_t n, Acc acc, int64_t) {
    e.out[m * e.ldo + n] = epilogue_value(hsum_ps(acc), e, m, n);
  }
};

// MR rows of x, ready for the micro-kernel: row pointers, row sums (int8), and
// the K % 128 tail copied into zero-padded blocks (so no load passes the row end).
template <class Scalar, int MR>
struct Rows {
  const Scalar* x[MR];
  const Scalar* tail[MR];
  int64_t sum[MR];
  alignas(32) Scalar pad[MR][kBlock];
};

template <class Path, class Dec, int MR, int NR>
bool tile(const Dec& dec, const Rows<typename Path::Scalar, MR>& r, const uint8_t* w, int64_t rb, int64_t k,
          int64_t m, int64_t n, int64_t n_end, bool check, const Epilogue& e) {
  const int64_t full = k / kBlock, rem = k % kBlock;
  const Prefetch pf(MR, NR, w, rb, n, n_end, full);
  const uint8_t* wr[NR];
  const uint8_t* wt[NR];
  for (int j = 0; j < NR; ++j) {
    wr[j] = w + (n + j) * rb;
    wt[j] = wr[j] + full * Dec::kBlockBytes;
  }
  typename Path::Acc acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = Path::zero();
  __m256i bad = _mm256_setzero_si256();
  if (check) {
    Path::template dot<Dec, MR, NR, true>(dec, r.x, wr, full, acc, Dec::check_mask(kBlock), bad, pf.p, pf.step);
    if (rem) Path::template dot<Dec, MR, NR, true>(dec, r.tail, wt, 1, acc, Dec::check_mask(rem), bad);
    if (!_mm256_testz_si256(bad, bad)) return false;
  } else {
    Path::template dot<Dec, MR, NR, false>(dec, r.x, wr, full, acc, bad, bad, pf.p, pf.step);
    if (rem) Path::template dot<Dec, MR, NR, false>(dec, r.tail, wt, 1, acc, bad, bad);
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) Path::template store<Dec>(e, m + i, n + j, acc[i][j], r.sum[i]);
  return true;
}

// Rows [m, m + MR) of x against weight rows [n0, n1).
template <class Path, class Dec, int MR, int NR>
bool row_block(const Dec& dec, const typename Path::Scalar* x, const uint8_t* w, int64_t k, int64_t m, int64_t n0,
               int64_t n1, bool check, const Epilogue& e) {
  const int64_t rb = Dec::row_bytes(k), full = k / kBlock, rem = k % kBlock;
  Rows<typename Path::Scalar, MR> r;
  for (int i = 0; i < MR; ++i) {
    r.x[i] = x + (m + i) * k;
    r.sum[i] = Path::row_sum(r.x[i], k);
    for (int64_t c = 0; c < kBlock; ++c) r.pad[i][c] = c < rem ? r.x[i][full * kBlock + c] : 0;
    r.tail[i] = r.pad[i];
  }
  if constexpr (Path::kPackedRows) return Path::template packed_rows<Dec, MR>(r, w, k, m, n0, n1, e);
  int64_t n = n0;
  for (; n + NR <= n1; n += NR)
    if (!tile<Path, Dec, MR, NR>(dec, r, w, rb, k, m, n, n1, check, e)) return false;
  for (; n < n1; ++n)
    if (!tile<Path, Dec, MR, 1>(dec, r, w, rb, k, m, n, n1, check, e)) return false;
  return true;
}

// Weight rows per panel of tile t: as many as fit in kPanelBytes of L2 (at
// least 8), for the rows of x to reuse. One row of x reuses nothing, so it
// walks the whole tile as one panel (one prefetch stream, no remainder rows).
inline int64_t rows_per_panel(int64_t row_bytes, const Tile& t) {
  if (t.m1 - t.m0 == 1) return t.n1 - t.n0;
  return kPanelBytes / row_bytes > 8 ? kPanelBytes / row_bytes : 8;
}

// The whole tile: weight panels that fit in L2, rows of x up to four at a time.
// Code 3 is looked for on the first pass over each panel only.
template <class Path, class Dec>
bool gemm(const Dec& dec, const typename Path::Scalar* x, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  const int64_t panel = rows_per_panel(Dec::row_bytes(k), t);
  for (int64_t p0 = t.n0; p0 < t.n1; p0 += panel) {
    const int64_t p1 = p0 + panel < t.n1 ? p0 + panel : t.n1;
    for (int64_t m = t.m0; m < t.m1;) {
      const int64_t left = t.m1 - m;
      const bool check = m == t.m0;
      bool ok;
      if (left >= 4) {
        ok = row_block<Path, Dec, 4, 2>(dec, x, w, k, m, p0, p1, check, e);
        m += 4;
      } else if (left == 3) {
        ok = row_block<Path, Dec, 3, 2>(dec, x, w, k, m, p0, p1, check, e);
        m += 3;
      } else if (left == 2) {
        ok = row_block<Path, Dec, 2, 2>(dec, x, w, k, m, p0, p1, check, e);
        m += 2;
      } else {
        ok = row_block<Path, Dec, 1, 4>(dec, x, w, k, m, p0, p1, check, e);
        m += 1;
      }
      if (!ok) return false;
    }
  }
  return true;
}

template <class Dec>
bool gemm_f32(const Dec& dec, const float* x, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  return gemm<PathF32>(dec, x, w, k, t, e);
}

#undef BITOPS_PIN

}  // namespace
}  // namespace bitops::cpu::ymm
