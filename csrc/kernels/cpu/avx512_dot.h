// The AVX-512 pieces of the 256-bit drivers (dot_tiles.h, gemm_i8_tiles.h) for
// the "cpu-avx512vnni" set's int8 kernels (avx512_ternary.cpp, avx512_binary.cpp):
//
//   PathDpbusd          decode on the fly as the AVX2 path does, but one ymm
//                       vpdpbusd per product straight into int32 (half the
//                       instructions of vpmaddubsw + vpaddw, no int16 flush);
//   PathDpbusdTernary   the same, except that 1 to 4 rows of x against packed
//                       ternary rows go to vnni::ternary_rows_codes, which reads
//                       the packed bytes without decoding them;
//   DpbusdPanel         the decoded-panel GEMM's inner kernel, vnni::panel_dots
//                       (zmm vpdpbusd).
//
// The .cpp files including this are compiled with the AVX2 target, like the
// AVX2 set: the shared drivers then generate the same code in both sets, and
// the only AVX-512 instructions here are EVEX ones written as asm (below) or
// live in avx512_vnni.cpp / avx512_ternary_gemv.cpp (vnni_kernels.h), called
// only from the "cpu-avx512vnni" table, i.e. after cpuid confirmed the ISA.
//
// Include only after dot_tiles.h and gemm_i8_tiles.h (same rules), and after
// vnni_kernels.h.
#pragma once
#include "amx_kernels.h"

namespace bitops::cpu::ymm {
namespace {

// With AVX-512 VNNI on packed ternary, the masked few-row kernel (no decode at
// all) wins below this. Measured here in one process, calls paired: 2x faster
// cold than decoding on the fly at M = 2-4, 1.03-1.3x faster than the decoded
// GEMM at M = 8, even at 16-32 and 5-14% slower at 48-63.
constexpr int64_t kDecodedMinRowsVnniPacked = 16;

// acc += 4-product sums of codes (unsigned) x x (signed), in int32 lanes: the
// EVEX (AVX-512 VL + VNNI) vpdpbusd on ymm. Written as asm so that this
// translation unit needs no AVX-512 target. Exact: a lane adds K / 8 products
// of at most 2 * 128 in magnitude, |lane| <= 2^21 * 2^8 = 2^29 for the largest K.
inline void add_dpbusd(__m256i& acc, __m256i codes, __m256i x) {
  asm("%{evex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(codes), "x"(x));
}

// dot_blocks_maddubs (dot_tiles.h) with vpdpbusd: no int16 partial sums to flush.
template <class Dec, int MR, int NR, bool kCheck>
inline void dot_blocks_dpbusd(const Dec& dec, const int8_t* const* x, const uint8_t* const* w, int64_t blocks,
                              __m256i (&acc)[MR][NR], __m256i check, __m256i& bad, const uint8_t* pf = nullptr,
                              int64_t pf_step = 0) {
  __m256i seen = _mm256_setzero_si256();
  for (int64_t b = 0; b < blocks; ++b) {
    if (pf) prefetch_span(pf + b * pf_step, pf_step);
    block_products<Dec, MR, NR, kCheck>(dec, x, w, b, seen, [&](int i, int j, __m256i c, __m256i xv) {
      add_dpbusd(acc[i][j], c, xv);
    });
  }
  if (kCheck) bad = _mm256_or_si256(bad, _mm256_and_si256(seen, check));
}

// PathMaddubs (dot_tiles.h) with the vpdpbusd product.
struct PathDpbusd {
  static constexpr bool kPackedRows = false;
  using Scalar = int8_t;
  using Acc = __m256i;
  static Acc zero() { return _mm256_setzero_si256(); }
  template <class Dec, int MR, int NR, bool kCheck>
  static void dot(const Dec& dec, const int8_t* const* x, const uint8_t* const* w, int64_t blocks,
                  Acc (&acc)[MR][NR], __m256i check, __m256i& bad, const uint8_t* pf = nullptr, int64_t pf_step = 0) {
    dot_blocks_dpbusd<Dec, MR, NR, kCheck>(dec, x, w, blocks, acc, check, bad, pf, pf_step);
  }
  static int64_t row_sum(const int8_t* x, int64_t k) { return row_sum_i8(x, k); }  // dot = sum(code * x) - sum(x)
  template <class Dec>
  static void store(const Epilogue& e, int64_t m, int64_t n, Acc acc, int64_t row_sum) {
    store_int(e, m, n, static_cast<int32_t>(Dec::kScale * hsum_epi32(acc) - row_sum));
  }
};

// PathDpbusd for packed ternary rows: row_block (dot_tiles.h) hands MR rows of
// int8 x to packed_rows, which runs the VNNI kernels (vnni_kernels.h) on the
// packed bytes without decoding them. They always look for code 3: a masked
// block costs 2 more ops for it, not a pass.
struct PathDpbusdTernary : PathDpbusd {
  static constexpr bool kPackedRows = true;
  template <class Dec, int MR>
  static bool packed_rows(const Rows<int8_t, MR>& r, const uint8_t* w, int64_t k, int64_t m, int64_t n0, int64_t n1,
                          const Epilogue& e) {
    const int64_t rb = Dec::row_bytes(k), full = k / kBlock, rem = k % kBlock;
    alignas(32) uint8_t keep[32];
    if (rem) _mm256_store_si256(reinterpret_cast<__m256i*>(keep), Dec::check_mask(rem));
    constexpr int64_t kRowsPerCall = 512 / MR;
    int64_t dots[kRowsPerCall * MR];
    for (int64_t n = n0; n < n1; n += kRowsPerCall) {
      const int64_t nr = n1 - n < kRowsPerCall ? n1 - n : kRowsPerCall;
      if (!vnni::ternary_rows_codes(w + n * rb, rb, nr, n1 - n, r.x, r.tail, MR, full, rem ? keep : nullptr, dots))
        return false;
      for (int64_t j = 0; j < nr; ++j)
        for (int i = 0; i < MR; ++i) store_int(e, m + i, n + j, static_cast<int32_t>(dots[j * MR + i] - r.sum[i]));
    }
    return true;
  }
};

// The decoded panel against rows [m, m + mr) of x with the AVX-512 VNNI kernel
// (vnni_kernels.h), then the same epilogue as maddubs_panel_rows.
inline void dpbusd_panel_rows(const uint8_t* codes, int64_t kp, int64_t np, const int8_t* xq, const int8_t* tails,
                              const int64_t* sums, int64_t k, int64_t m, int mr, int64_t m0, int64_t p0, int64_t scale,
                              const Epilogue& e) {
  const int8_t* x[vnni::kMaxRows];
  const int8_t* xt[vnni::kMaxRows];
  for (int i = 0; i < mr; ++i) {
    x[i] = xq + (m + i) * k;
    xt[i] = tails + (m + i - m0) * kBlock;
  }
  int64_t dots[kPanelRows * vnni::kMaxRows];
  vnni::panel_dots(codes, kp, np, x, xt, k / kBlock, mr, dots);
  for (int64_t j = 0; j < np; ++j)
    for (int i = 0; i < mr; ++i)
      store_int(e, m + i, p0 + j, static_cast<int32_t>(scale * dots[j * mr + i] - sums[m + i - m0]));
}

// The decoded-panel inner kernel of gemm_i8_tiles.h on AVX-512 VNNI: rows of x
// vnni::kMaxRows at a time; the sums stay in zmm registers (no scratch).
struct DpbusdPanel {
  static constexpr int64_t kScratchBytes = 0;
  static int64_t scratch_bytes(int64_t, int64_t) { return 0; }
  static void prepare(const int8_t*, int64_t, const int8_t*, Tile, int64_t, __m256i*) {}
  static void run(const uint8_t* codes, int64_t kp, int64_t np, const int8_t* xq, const int8_t* tails,
                  const int64_t* sums, int64_t k, Tile t, int64_t p0, int64_t scale, const Epilogue& e, __m256i*) {
    for (int64_t m = t.m0; m < t.m1; m += vnni::kMaxRows) {
      const int mr = t.m1 - m < vnni::kMaxRows ? static_cast<int>(t.m1 - m) : vnni::kMaxRows;
      dpbusd_panel_rows(codes, kp, np, xq, tails, sums, k, m, mr, t.m0, p0, scale, e);
    }
  }
};

// The decoded-panel inner kernel on AMX-INT8 (amx_kernels.h): x laid out once per
// call in TDPBUSD's B tiles (prepare), then every panel against all rows of x in
// int32 tiles; the tile sums go through the same epilogue as DpbusdPanel's.
struct AmxPanel {
  static int64_t groups(int64_t mrows) { return (mrows + 15) / 16; }
  static int64_t scratch_bytes(int64_t mrows, int64_t kp) {
    return amx::x_tiles_bytes(mrows, kp) + kPanelRows * groups(mrows) * 16 * 4;
  }
  static void prepare(const int8_t* xq, int64_t k, const int8_t* tails, Tile t, int64_t kp, __m256i* scratch) {
    amx::layout_x(xq + t.m0 * k, k, k / kBlock, tails, t.m1 - t.m0, kp, reinterpret_cast<int8_t*>(scratch));
  }
  static void run(const uint8_t* codes, int64_t kp, int64_t np, const int8_t*, const int8_t*, const int64_t* sums,
                  int64_t, Tile t, int64_t p0, int64_t scale, const Epilogue& e, __m256i* scratch) {
    const int64_t mrows = t.m1 - t.m0, ldo = groups(mrows) * 16;
    const int8_t* x_tiles = reinterpret_cast<const int8_t*>(scratch);
    int32_t* out = reinterpret_cast<int32_t*>(reinterpret_cast<int8_t*>(scratch) + amx::x_tiles_bytes(mrows, kp));
    amx::panel_products(codes, kp, x_tiles, groups(mrows), out, ldo);
    amx::store_panel(out, ldo, np, mrows, sums, scale, t.m0, p0, e);
  }
};

}  // namespace
}  // namespace bitops::cpu::ymm
