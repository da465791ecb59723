// XNOR-popcount drivers on 256-bit vectors (act_bits = 1): sign bits of x
// against packed binary rows, acc = K - 2 * popcount(x ^ w), the last 256-bit
// chunk masked to the first K bits. Shared by the AVX2 set (avx2_binary.cpp:
// nibble-table popcount) and the AVX-512 set (avx512_binary.cpp: vpopcntq);
// the bit count is a policy, Count:
//
//   Count::add<MR, NR, kMasked>(x, w, chunks, keep, differ, pf)
//     differ[i][j] += popcount((x[i] ^ w[j]) & keep) in 64-bit lanes, over
//     `chunks` chunks of 256 bits (keep only when kMasked), prefetching pf.
//
// Include only after dot_tiles.h (same rules).
#pragma once

namespace bitops::cpu::ymm {
namespace {

constexpr int64_t kChunk = 32;  // bytes per vector: 256 bits

// Chunk c of MR rows of x against NR weight rows: count(i, j, (x[i] ^ w[j]) & keep).
template <int MR, int NR, bool kMasked, class Count>
__attribute__((always_inline)) inline void xor_chunk(const uint8_t* const* x, const uint8_t* const* w, int64_t c,
                                                     __m256i keep, Count&& count) {
  __m256i wv[NR];
  for (int j = 0; j < NR; ++j) wv[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[j] + c * kChunk));
  for (int i = 0; i < MR; ++i) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i] + c * kChunk));
    for (int j = 0; j < NR; ++j) {
      __m256i d = _mm256_xor_si256(xv, wv[j]);
      if (kMasked) d = _mm256_and_si256(d, keep);
      count(i, j, d);
    }
  }
}

inline int64_t hsum_epi64(__m256i v) {
  alignas(32) int64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), v);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

// Keeps the first `bits` bits of a 256-bit chunk.
inline __m256i first_bits_mask(int64_t bits) {
  alignas(32) uint8_t m[32];
  for (int i = 0; i < 32; ++i) {
    const int64_t left = bits - 8 * i;
    m[i] = left >= 8 ? 0xff : (left <= 0 ? 0 : static_cast<uint8_t>((1u << left) - 1));
  }
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(m));
}

template <class Count, int MR, int NR>
void bits_tile(const uint8_t* xbits, const uint8_t* w, int64_t k, int64_t m, int64_t n, int64_t n_end,
               const Epilogue& e) {
  const int64_t rb = binary_row_bytes(k), full = k / 256, rem = k % 256;
  const uint8_t* xr[MR];
  const uint8_t* wr[NR];
  const uint8_t* xt[MR];
  const uint8_t* wt[NR];
  for (int i = 0; i < MR; ++i) {
    xr[i] = xbits + (m + i) * rb;
    xt[i] = xr[i] + full * kChunk;
  }
  for (int j = 0; j < NR; ++j) {
    wr[j] = w + (n + j) * rb;
    wt[j] = wr[j] + full * kChunk;
  }
  __m256i differ[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) differ[i][j] = _mm256_setzero_si256();
  const Prefetch pf(MR, NR, w, rb, n, n_end, full), none(MR, NR, w, rb, n, 0, 0);
  Count::template add<MR, NR, false>(xr, wr, full, differ[0][0], differ, pf);
  if (rem) Count::template add<MR, NR, true>(xt, wt, 1, first_bits_mask(rem), differ, none);
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) store_int(e, m + i, n + j, static_cast<int32_t>(k - 2 * hsum_epi64(differ[i][j])));
}

template <class Count, int MR, int NR>
void bits_rows(const uint8_t* xbits, const uint8_t* w, int64_t k, int64_t m, int64_t n0, int64_t n1,
               const Epilogue& e) {
  int64_t n = n0;
  for (; n + NR <= n1; n += NR) bits_tile<Count, MR, NR>(xbits, w, k, m, n, n1, e);
  for (; n < n1; ++n) bits_tile<Count, MR, 1>(xbits, w, k, m, n, n1, e);
}

template <class Count>
void gemm_bits(const uint8_t* xbits, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  const int64_t panel = rows_per_panel(binary_row_bytes(k), t);
  for (int64_t p0 = t.n0; p0 < t.n1; p0 += panel) {
    const int64_t p1 = p0 + panel < t.n1 ? p0 + panel : t.n1;
    int64_t m = t.m0;
    for (; m + 4 <= t.m1; m += 4) bits_rows<Count, 4, 2>(xbits, w, k, m, p0, p1, e);
    for (; m + 2 <= t.m1; m += 2) bits_rows<Count, 2, 2>(xbits, w, k, m, p0, p1, e);
    for (; m < t.m1; ++m) bits_rows<Count, 1, 4>(xbits, w, k, m, p0, p1, e);
  }
}

}  // namespace
}  // namespace bitops::cpu::ymm
