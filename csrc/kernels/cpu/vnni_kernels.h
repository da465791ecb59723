// The AVX-512 VNNI kernels: the decoded int8 GEMM's inner kernel
// (avx512_vnni.cpp) and the ternary kernels for 1 to 4 rows of x that read the
// packed bytes without decoding them (avx512_ternary_gemv.cpp).
// Portable declarations: code compiled for AVX2 may take their addresses, and the
// "cpu-avx512vnni" kernel table calls them only after cpuid has confirmed the ISA.
#pragma once
#include <cstdint>

namespace bitops::cpu::vnni {

// dots[j * mr + i] = sum over k of codes[j * kp + k] * x_i[k] (exact, int64),
// for mr <= kMaxRows rows of x and np decoded weight rows (unsigned codes, one
// byte each, rows kp = 128 * blocks bytes long). x[i] holds the first
// `full` whole 128-weight blocks of row i; xt[i] the zero-padded tail block,
// read when kp holds one block more than `full`.
constexpr int kMaxRows = 4;
void panel_dots(const uint8_t* codes, int64_t kp, int64_t np, const int8_t* const* x, const int8_t* const* xt,
                int64_t full, int mr, int64_t* dots);

// Ternary GEMV on packed weights (avx512_ternary_gemv.cpp): for weight rows
// [0, nr) at a stride of rb bytes, dots[j] = sum over k of code(j, k) * x[k]
// (codes w + 1; exact, int64) over `full` whole 128-weight blocks of x, plus,
// when tail_keep is not null, the next block against xtail (zero-padded).
// Rows up to rows_readable (>= nr) may be prefetched: the caller's next rows.
// Returns false if a code 3 sits in a whole block, or in the tail block at a
// bit that tail_keep (32 bytes, the ternary check mask) marks.
bool ternary_gemv_codes(const uint8_t* w, int64_t rb, int64_t nr, int64_t rows_readable, const int8_t* x, int64_t full,
                        const int8_t* xtail, const uint8_t* tail_keep, int64_t* dots);

// The M = 1 GEMV's read order: four weight rows at a time, their blocks interleaved and
// the next tile prefetched (measured best on AMD EPYC), or one row at a time in memory
// order on zmm pairs of blocks, prefetched into L2 (measured best on an Intel Xeon,
// benchmarks/results/decode_cpu.md). Chosen by the cpuid vendor unless set; the sums are
// the same either way.
enum GemvOrder : int { kGemvTiles4 = 0, kGemvRowsInOrder = 1 };
GemvOrder gemv_order();
void set_gemv_order(int order);  // kGemvTiles4, kGemvRowsInOrder, or -1: the cpuid choice again

// The same for 1 <= mr <= kMaxRows rows of x (x[i], xtail[i]), one weight row
// at a time for mr > 1: dots[j * mr + i] = sum over k of code(j, k) * x_i[k].
bool ternary_rows_codes(const uint8_t* w, int64_t rb, int64_t nr, int64_t rows_readable, const int8_t* const* x,
                        const int8_t* const* xtail, int mr, int64_t full, const uint8_t* tail_keep, int64_t* dots);

// AVX-512 VPOPCNTDQ (and VL) usable too: the "cpu-avx512vnni" table then counts
// XNOR bits with vpopcntq (avx512_binary.cpp).
bool vpopcnt_usable();

// AVX-512 F, BW, VL and VNNI usable on this CPU (cpuid and the OS's saved state).
bool usable();

}  // namespace bitops::cpu::vnni
