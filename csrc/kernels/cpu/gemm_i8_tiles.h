// The int8 path for many rows of x (compute-bound): decode a panel of weight
// rows into unsigned codes ONCE (one byte per weight, in K order), then run a
// plain u8 x s8 register-blocked GEMM over it, so decoding costs nothing per
// row of x and the inner loop is only loads, vpmaddubsw and vpaddw:
//
//   for each panel of kPanelRows weight rows (codes: L2-resident)
//     for each 2 rows of x
//       for each K chunk of at most 2048 weights (chunks of equal size)
//         for each 6 weight rows: 2 x 6 int16 partial sums -> int32 tile sums
//
// 2 x 6: 12 accumulators + 2 x registers + 1 code register + 1 product = all
// 16 ymm registers. x is held in registers and each code vector is loaded once
// for two vpmaddubsw: 8 loads per 12 vpmaddubsw, where the 4 x 3 kernel that
// read x from memory needed 15 and was capped by the load ports.
//
// The decoding and the blocking are shared by the AVX2 and the AVX-512 sets; the
// inner kernel over a decoded panel is a policy: MaddubsPanel below (AVX2), or
// the AVX-512 set's DpbusdPanel (avx512_dot.h).
//
// Include only after dot_tiles.h (same rules).
#pragma once

namespace bitops::cpu::ymm {
namespace {

constexpr int64_t kPanelRows = 64;        // decoded: 64 rows x K bytes (256 KiB at K = 4096)
constexpr int64_t kDecodedMinRows = 8;    // below this, decode-on-the-fly (dot_tiles.h) wins
constexpr int kGemmMR = 2, kGemmNR = 6;
// int16 partial sums over 16 blocks = 64 vpmaddubsw per lane, each in [-512, 508]
// (codes <= 2, x in [-128, 127]): every running sum stays in [-32768, 32512].
constexpr int64_t kGemmFlushBlocks = 16;

// Decodes weight rows [n0, n1) into codes[(n - n0) * kp + k] (kp = K rounded up
// to whole blocks; padding codes are 0 and meet zero activations). False on code 3.
template <class Dec>
bool decode_panel(const Dec& dec, const uint8_t* w, int64_t rb, int64_t k, int64_t n0, int64_t n1, uint8_t* codes) {
  const int64_t full = k / kBlock, rem = k % kBlock, kp = (full + (rem ? 1 : 0)) * kBlock;
  __m256i seen = _mm256_setzero_si256();
  const __m256i tail_keep = Dec::check_mask(rem);
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = w + n * rb;
    uint8_t* dst = codes + (n - n0) * kp;
    for (int64_t b = 0; b < kp / kBlock; ++b) {
      const __m256i v = dec.load(row, b);
      if (b < full)
        seen = _mm256_or_si256(seen, _mm256_and_si256(Dec::bad_codes(v), Dec::check_mask(kBlock)));
      else
        seen = _mm256_or_si256(seen, _mm256_and_si256(Dec::bad_codes(v), tail_keep));
      for (int q = 0; q < 4; ++q)
        _mm256_store_si256(reinterpret_cast<__m256i*>(dst + b * kBlock + 32 * q), dec.codes(v, q));
    }
  }
  return _mm256_testz_si256(seen, seen);
}

// acc += maddubs(codes, x) in two instructions, the sum kept in acc's own
// register. Inline asm because GCC, with the add chain pinned in order, copied
// every sum back from a scratch register: ~30% more instructions per vpmaddubsw.
inline void add_maddubs(__m256i& acc, __m256i codes, __m256i x) {
  __m256i product;
  asm("vpmaddubsw %3, %2, %1\n\tvpaddw %1, %0, %0" : "+x"(acc), "=&x"(product) : "x"(codes), "x"(x));
}

// acc[i * NR + j] += codes(c[j]) . x[i] over `blocks` blocks (<= kGemmFlushBlocks: int16 cannot overflow).
template <int MR, int NR>
inline void dot_codes(const uint8_t* const* c, const int8_t* const* x, int64_t blocks, __m256i* acc) {
  __m256i part[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) part[i][j] = _mm256_setzero_si256();
  for (int64_t s = 0; s < 4 * blocks; ++s) {  // 32 codes at a time
    __m256i xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i] + 32 * s));
    for (int j = 0; j < NR; ++j) {
      const __m256i cv = _mm256_load_si256(reinterpret_cast<const __m256i*>(c[j] + 32 * s));
      for (int i = 0; i < MR; ++i) add_maddubs(part[i][j], cv, xv[i]);
    }
  }
  // The constant is made here, after the loop: hoisted out of the callers'
  // loops by GCC, it held the 16th register and pushed an accumulator to the stack.
  __m256i ones16;
  asm volatile("vpcmpeqw %0, %0, %0\n\tvpsrlw $15, %0, %0" : "=x"(ones16));
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      acc[i * NR + j] = _mm256_add_epi32(acc[i * NR + j], _mm256_madd_epi16(part[i][j], ones16));
}

// The 8 horizontal sums of a[0], a[stride], ..., a[7 * stride], in that order
// (wrapping int32): 7 vphaddd and one cross-lane add instead of 8 scalar reductions.
inline __m256i hsum8_epi32(const __m256i* a, int64_t stride) {
  const __m256i t0 = _mm256_hadd_epi32(a[0], a[stride]), t1 = _mm256_hadd_epi32(a[2 * stride], a[3 * stride]);
  const __m256i t2 = _mm256_hadd_epi32(a[4 * stride], a[5 * stride]), t3 = _mm256_hadd_epi32(a[6 * stride], a[7 * stride]);
  const __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
  return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
}

// Panel rows [j, j + NR) against MR rows of x over the chunk of blocks [b0, b1):
// the whole blocks read in place, the zero-padded tail block (index `full`) from xt.
template <int MR, int NR>
inline void panel_rows_chunk(const uint8_t* codes, int64_t kp, int64_t j, const int8_t* const* x,
                             const int8_t* const* xt, int64_t full, int64_t b0, int64_t b1, __m256i* acc) {
  const uint8_t* c[NR];
  __m256i t[MR * NR];
  for (int i = 0; i < MR; ++i)
    for (int jj = 0; jj < NR; ++jj) t[i * NR + jj] = acc[(j + jj) * kGemmMR + i];
  const int64_t whole_end = b1 < full ? b1 : full;
  if (whole_end > b0) {
    const int8_t* xc[MR];
    for (int i = 0; i < MR; ++i) xc[i] = x[i] + b0 * kBlock;
    for (int jj = 0; jj < NR; ++jj) c[jj] = codes + (j + jj) * kp + b0 * kBlock;
    dot_codes<MR, NR>(c, xc, whole_end - b0, t);
  }
  if (b1 > full) {  // this chunk holds the tail block
    for (int jj = 0; jj < NR; ++jj) c[jj] = codes + (j + jj) * kp + full * kBlock;
    dot_codes<MR, NR>(c, xt, 1, t);
  }
  for (int i = 0; i < MR; ++i)
    for (int jj = 0; jj < NR; ++jj) acc[(j + jj) * kGemmMR + i] = t[i * NR + jj];
}

// Rows [m, m + MR) of x against the decoded panel rows [0, np) (output rows p0 + j).
// noinline: inlined into a caller with live decoder constants, GCC spilled the
// accumulators (measured 1.6x slower in the binary kernel).
template <int MR>
__attribute__((noinline)) void maddubs_panel_rows(const uint8_t* codes, int64_t kp, int64_t np, const int8_t* xq,
                                                  const int8_t* tails, const int64_t* sums, int64_t k, int64_t m,
                                                  int64_t m0, int64_t p0, int64_t scale, const Epilogue& e,
                                                  __m256i* acc /* [np][kGemmMR] */) {
  const int64_t full = k / kBlock, blocks = kp / kBlock;
  // Equal chunks of at most kGemmFlushBlocks: K = 2560 runs as 10 + 10 blocks, not 16 + 4.
  const int64_t chunks = (blocks + kGemmFlushBlocks - 1) / kGemmFlushBlocks;
  const int64_t chunk = (blocks + chunks - 1) / chunks;
  for (int64_t a = 0; a < np * kGemmMR; ++a) acc[a] = _mm256_setzero_si256();
  const int8_t* x[MR];
  const int8_t* xt[MR];
  for (int i = 0; i < MR; ++i) {
    x[i] = xq + (m + i) * k;
    xt[i] = tails + (m + i - m0) * kBlock;
  }
  for (int64_t b0 = 0; b0 < blocks; b0 += chunk) {
    const int64_t b1 = b0 + chunk < blocks ? b0 + chunk : blocks;
    int64_t j = 0;
    for (; j + kGemmNR <= np; j += kGemmNR) panel_rows_chunk<MR, kGemmNR>(codes, kp, j, x, xt, full, b0, b1, acc);
    if (j + 4 <= np) panel_rows_chunk<MR, 4>(codes, kp, j, x, xt, full, b0, b1, acc), j += 4;
    if (j + 2 <= np) panel_rows_chunk<MR, 2>(codes, kp, j, x, xt, full, b0, b1, acc), j += 2;
    if (j < np) panel_rows_chunk<MR, 1>(codes, kp, j, x, xt, full, b0, b1, acc);
  }
  for (int i = 0; i < MR; ++i) {
    // int32 arithmetic wraps, and the true result fits int32 (check_k): exact mod 2^32.
    const __m256i row_sum = _mm256_set1_epi32(static_cast<int32_t>(sums[m + i - m0]));
    const __m256i scale_v = _mm256_set1_epi32(static_cast<int32_t>(scale));
    int64_t j = 0;
    for (; j + 8 <= np; j += 8) {
      alignas(32) int32_t v[8];
      const __m256i dot = _mm256_mullo_epi32(hsum8_epi32(acc + j * kGemmMR + i, kGemmMR), scale_v);
      _mm256_store_si256(reinterpret_cast<__m256i*>(v), _mm256_sub_epi32(dot, row_sum));
      for (int jj = 0; jj < 8; ++jj) store_int(e, m + i, p0 + j + jj, v[jj]);
    }
    for (; j < np; ++j)
      store_int(e, m + i, p0 + j, static_cast<int32_t>(scale * hsum_epi32(acc[j * kGemmMR + i]) - sums[m + i - m0]));
  }
}

// The AVX2 inner kernel over a decoded panel: rows of x kGemmMR at a time, then
// one at a time, the int32 tile sums in `acc` (kScratchBytes of the allocation).
struct MaddubsPanel {
  static constexpr int64_t kScratchBytes = kPanelRows * kGemmMR * 32;
  static int64_t scratch_bytes(int64_t, int64_t) { return kScratchBytes; }
  static void prepare(const int8_t*, int64_t, const int8_t*, Tile, int64_t, __m256i*) {}
  static void run(const uint8_t* codes, int64_t kp, int64_t np, const int8_t* xq, const int8_t* tails,
                  const int64_t* sums, int64_t k, Tile t, int64_t p0, int64_t scale, const Epilogue& e, __m256i* acc) {
    int64_t m = t.m0;
    for (; m + kGemmMR <= t.m1; m += kGemmMR)
      maddubs_panel_rows<kGemmMR>(codes, kp, np, xq, tails, sums, k, m, t.m0, p0, scale, e, acc);
    for (; m < t.m1; ++m) maddubs_panel_rows<1>(codes, kp, np, xq, tails, sums, k, m, t.m0, p0, scale, e, acc);
  }
};

// Decodes each panel of weight rows once, then runs Panel (MaddubsPanel, or the
// AVX-512 set's DpbusdPanel) over it for every row of x. Path: the decode-on-the-fly
// path of the same set, used when the allocation fails.
template <class Path, class Panel, class Dec>
bool gemm_i8_decoded(const Dec& dec, const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  const int64_t rb = Dec::row_bytes(k), full = k / kBlock, rem = k % kBlock;
  const int64_t kp = (full + (rem ? 1 : 0)) * kBlock, mrows = t.m1 - t.m0;
  // One allocation: decoded panel, zero-padded x tails, x row sums, and the
  // inner kernel's scratch (the AVX2 one's int32 tile sums; the VNNI one keeps
  // them in registers and needs none).
  const int64_t codes_bytes = kPanelRows * kp, tails_bytes = (mrows * kBlock + 63) / 64 * 64;
  const int64_t sums_bytes = (mrows * 8 + 63) / 64 * 64, acc_bytes = (Panel::scratch_bytes(mrows, kp) + 63) / 64 * 64;
  uint8_t* mem = static_cast<uint8_t*>(std::aligned_alloc(64, codes_bytes + tails_bytes + sums_bytes + acc_bytes));
  if (!mem) return gemm<Path>(dec, xq, w, k, t, e);  // no memory: the path that needs none
  uint8_t* codes = mem;
  int8_t* tails = reinterpret_cast<int8_t*>(mem + codes_bytes);
  int64_t* sums = reinterpret_cast<int64_t*>(mem + codes_bytes + tails_bytes);
  __m256i* acc = reinterpret_cast<__m256i*>(mem + codes_bytes + tails_bytes + sums_bytes);
  for (int64_t r = 0; r < mrows; ++r) {
    const int8_t* x = xq + (t.m0 + r) * k;
    sums[r] = row_sum_i8(x, k);
    for (int64_t c = 0; c < kBlock; ++c) tails[r * kBlock + c] = c < rem ? x[full * kBlock + c] : 0;
  }
  Panel::prepare(xq, k, tails, t, kp, acc);
  bool ok = true;
  for (int64_t p0 = t.n0; p0 < t.n1 && ok; p0 += kPanelRows) {
    const int64_t np = p0 + kPanelRows < t.n1 ? kPanelRows : t.n1 - p0;
    ok = decode_panel(dec, w, rb, k, p0, p0 + np, codes);
    if (!ok) break;
    Panel::run(codes, kp, np, xq, tails, sums, k, t, p0, Dec::kScale, e, acc);
  }
  std::free(mem);
  return ok;
}

// The int8 entry point: decode once per panel from decoded_min rows of x on,
// on the fly (Path) for fewer.
template <class Path, class Panel, class Dec>
bool linear_i8(const Dec& dec, const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e,
               int64_t decoded_min = kDecodedMinRows) {
  if (t.m1 - t.m0 >= decoded_min) return gemm_i8_decoded<Path, Panel>(dec, xq, w, k, t, e);
  return gemm<Path>(dec, xq, w, k, t, e);
}

}  // namespace
}  // namespace bitops::cpu::ymm
