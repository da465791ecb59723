// AVX2 binary kernels (layout.h: bit k % 8 of byte k / 8, set = +1, rows padded
// to 256 bits whose padding is ignored).
//
// int8 activations: 32 bits spread to 32 bytes of 0/1 (vpshufb + bit test), so
//   dot = 2 * sum(bit * x) - sum(x)     (the same maddubs driver as ternary).
// Float activations: 8 bits shifted into 8 int32 lanes pick -1/+1 with vpermps.
// Sign bits (act_bits = 1): XOR + popcount, nibble table with vpshufb, bytes
// summed with vpsadbw; the last 256-bit chunk is masked to the first K bits.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <cstdint>
#include <cstdlib>
#include "avx2_kernels.h"
#include "vnni_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include "dot_tiles.h"
#include "gemm_i8_tiles.h"

namespace bitops::cpu::avx2 {
namespace {

struct BinaryDecoder {
  // The drivers walk 128-weight blocks: 16 bytes of bits here.
  static constexpr int64_t kBlockBytes = kBlock / 8;
  static constexpr int64_t kScale = 2;  // weight = 2 * bit - 1
  static constexpr bool kVnniPacked = false;
  static int64_t row_bytes(int64_t k) { return binary_row_bytes(k); }

  const __m256i one = _mm256_set1_epi8(1);
  const __m256i bit_of_lane = _mm256_set1_epi64x(0x8040201008040201LL);  // byte i tests bit i % 8
  // Run q of a block = bytes 4q .. 4q+3 of its 16; byte 4q + i feeds lanes 8i .. 8i+7.
  const __m256i spread[4] = {
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
      _mm256_setr_epi8(4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7),
      _mm256_setr_epi8(8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11,
                       11, 11, 11, 11),
      _mm256_setr_epi8(12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 14, 14, 14,
                       15, 15, 15, 15, 15, 15, 15, 15),
  };
  const __m256 sign_table = _mm256_setr_ps(-1.0f, 1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f, 1.0f);
  const __m256i lane_shift = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);

  // The 16 bytes of block b in both 128-bit lanes (vpshufb stays within a lane).
  __m256i load(const uint8_t* row, int64_t b) const {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + b * kBlockBytes)));
  }
  __m256i codes(__m256i v, int q) const {
    const __m256i picked = _mm256_and_si256(_mm256_shuffle_epi8(v, spread[q]), bit_of_lane);
    return _mm256_min_epu8(picked, one);
  }
  __m256 weights(const uint8_t* row, int64_t b, int q, int g) const {
    const __m256i byte = _mm256_set1_epi32(row[b * kBlockBytes + 4 * q + g]);
    return _mm256_permutevar8x32_ps(sign_table, _mm256_srlv_epi32(byte, lane_shift));
  }
  // Every bit pattern is valid: nothing to report.
  static __m256i bad_codes(__m256i) { return _mm256_setzero_si256(); }
  static __m256i check_mask(int64_t) { return _mm256_setzero_si256(); }
};

// ---------------------------------------------------------------- XNOR-popcount

inline __m256i popcount_bytes(__m256i v) {
  const __m256i nibble_counts = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,  //
                                                 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i lo = _mm256_shuffle_epi8(nibble_counts, _mm256_and_si256(v, low4));
  const __m256i hi = _mm256_shuffle_epi8(nibble_counts, _mm256_and_si256(_mm256_srli_epi16(v, 4), low4));
  return _mm256_add_epi8(lo, hi);
}

constexpr int64_t kChunk = 32;        // bytes per vector: 256 bits
constexpr int64_t kByteSumChunks = 31;  // per-byte counts stay <= 31 * 8 < 256

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

// differ[i][j] += popcount((x[i] ^ w[j]) & keep) over `chunks` chunks of 256 bits.
template <int MR, int NR, bool kMasked>
inline void xor_popcount(const uint8_t* const* x, const uint8_t* const* w, int64_t chunks, __m256i keep,
                         __m256i (&differ)[MR][NR], const Prefetch& pf) {
  const __m256i zero = _mm256_setzero_si256();
  for (int64_t c0 = 0; c0 < chunks; c0 += kByteSumChunks) {
    const int64_t c1 = c0 + kByteSumChunks < chunks ? c0 + kByteSumChunks : chunks;
    __m256i counts[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) counts[i][j] = zero;
    for (int64_t c = c0; c < c1; ++c) {
      if (pf.p) prefetch_span(pf.p + c * pf.step, pf.step);
      xor_chunk<MR, NR, kMasked>(x, w, c, keep, [&](int i, int j, __m256i d) {
        counts[i][j] = _mm256_add_epi8(counts[i][j], popcount_bytes(d));
      });
    }
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) differ[i][j] = _mm256_add_epi64(differ[i][j], _mm256_sad_epu8(counts[i][j], zero));
  }
}

// popcount of each 64-bit lane: the EVEX (AVX-512 VL + VPOPCNTDQ) vpopcntq on
// ymm. Written as asm so that this AVX2 translation unit needs no AVX-512
// target; only the "cpu-avx512vnni" table, on a CPU that has VPOPCNTDQ, reaches it.
inline __m256i popcount_lanes(__m256i v) {
  __m256i c;
  asm("%{evex%} vpopcntq %1, %0" : "=x"(c) : "x"(v));
  return c;
}

// differ[i][j] += popcount((x[i] ^ w[j]) & keep) with vpopcntq: one instruction
// per 256 bits instead of the nibble table, and 64-bit lanes that never overflow.
template <int MR, int NR, bool kMasked>
inline void xor_popcount_q(const uint8_t* const* x, const uint8_t* const* w, int64_t chunks, __m256i keep,
                           __m256i (&differ)[MR][NR], const Prefetch& pf) {
  for (int64_t c = 0; c < chunks; ++c) {
    if (pf.p) prefetch_span(pf.p + c * pf.step, pf.step);
    xor_chunk<MR, NR, kMasked>(x, w, c, keep, [&](int i, int j, __m256i d) {
      differ[i][j] = _mm256_add_epi64(differ[i][j], popcount_lanes(d));
    });
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

template <int MR, int NR, bool kVpopcnt>
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
  if constexpr (kVpopcnt) {
    xor_popcount_q<MR, NR, false>(xr, wr, full, differ[0][0], differ, pf);
    if (rem) xor_popcount_q<MR, NR, true>(xt, wt, 1, first_bits_mask(rem), differ, none);
  } else {
    xor_popcount<MR, NR, false>(xr, wr, full, differ[0][0], differ, pf);
    if (rem) xor_popcount<MR, NR, true>(xt, wt, 1, first_bits_mask(rem), differ, none);
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) store_int(e, m + i, n + j, static_cast<int32_t>(k - 2 * hsum_epi64(differ[i][j])));
}

template <int MR, int NR, bool kVpopcnt>
void bits_rows(const uint8_t* xbits, const uint8_t* w, int64_t k, int64_t m, int64_t n0, int64_t n1,
               const Epilogue& e) {
  int64_t n = n0;
  for (; n + NR <= n1; n += NR) bits_tile<MR, NR, kVpopcnt>(xbits, w, k, m, n, n1, e);
  for (; n < n1; ++n) bits_tile<MR, 1, kVpopcnt>(xbits, w, k, m, n, n1, e);
}

template <bool kVpopcnt>
void gemm_bits(const uint8_t* xbits, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  const int64_t panel = panel_rows(binary_row_bytes(k), t);
  for (int64_t p0 = t.n0; p0 < t.n1; p0 += panel) {
    const int64_t p1 = p0 + panel < t.n1 ? p0 + panel : t.n1;
    int64_t m = t.m0;
    for (; m + 4 <= t.m1; m += 4) bits_rows<4, 2, kVpopcnt>(xbits, w, k, m, p0, p1, e);
    for (; m + 2 <= t.m1; m += 2) bits_rows<2, 2, kVpopcnt>(xbits, w, k, m, p0, p1, e);
    for (; m < t.m1; ++m) bits_rows<1, 4, kVpopcnt>(xbits, w, k, m, p0, p1, e);
  }
}

}  // namespace

void binary_gemm_i8(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  linear_i8(BinaryDecoder{}, xq, w, k, t, e);
}

void binary_gemm_i8_vnni(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  linear_i8(BinaryDecoder{}, xq, w, k, t, e, /*vnni=*/true);
}

void binary_gemm_f32(const float* x, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  gemm_f32(BinaryDecoder{}, x, w, k, t, e);
}

void binary_gemm_bits(const uint8_t* xbits, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  gemm_bits<false>(xbits, w, k, t, e);
}

void binary_gemm_bits_vpopcnt(const uint8_t* xbits, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  gemm_bits<true>(xbits, w, k, t, e);
}

}  // namespace bitops::cpu::avx2

#pragma GCC pop_options
#endif
