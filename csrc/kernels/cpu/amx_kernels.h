// AMX-INT8 (Sapphire Rapids and later) for the decoded-panel ternary GEMM: one
// TDPBUSD multiplies 16 rows of unsigned codes by 16 rows of signed x over 64 k
// (16 x 16 x 64 products) into int32 tiles. Portable declarations, as vnni_kernels.h:
// only the "cpu-avx512vnni" table calls them, and only after usable().
#pragma once
#include <cstdint>
#include "../epilogue.h"

namespace bitops::cpu::amx {

// AMX-TILE and AMX-INT8 in cpuid, and the OS let this process use the tile data (Linux
// arch_prctl ARCH_REQ_XCOMP_PERM, asked once).
bool usable();
// Whether the ternary GEMM takes the AMX panels: usable() unless set (1 on, 0 off, -1 automatic).
bool enabled();
void set_enabled(int on);

// Largest k the int32 tiles hold exactly: |sum of k codes (<= 2) times x (>= -128)| <= 2^30.
constexpr int64_t kMaxK = int64_t(1) << 22;

// Bytes of x_tiles for mrows rows of x and kp (a multiple of 128) codes per weight row.
int64_t x_tiles_bytes(int64_t mrows, int64_t kp);
// x rows [0, mrows) (row r at x + r * k; its first `full` whole 128-blocks, then the
// zero-padded tail block tails + r * 128 when kp holds one more) in TDPBUSD's B layout:
// per 16 rows of x and 64 k, a 1 KiB tile whose row q holds x[m][4q .. 4q + 3] for m = 0..15.
void layout_x(const int8_t* x, int64_t k, int64_t full, const int8_t* tails, int64_t mrows, int64_t kp, int8_t* x_tiles);
// out[n * ldo + m] = sum over kp of codes[n * kp + i] * x[m][i] for n < 64 (rows past np
// are computed from whatever the panel holds and must be ignored) and m < 16 * mgroups.
void panel_products(const uint8_t* codes, int64_t kp, const int8_t* x_tiles, int64_t mgroups, int32_t* out,
                    int64_t ldo);

// The panel's sums into the output through the epilogue (epilogue.h), 16 outputs of
// a row of x at a time: acc = scale * out[j * ldo + r] - sums[r] for weight rows
// j < np and rows of x r < mrows, written to output row m0 + r, column p0 + j. The
// same IEEE operations in the same order as epilogue_value, so bit-identical to it.
void store_panel(const int32_t* out, int64_t ldo, int64_t np, int64_t mrows, const int64_t* sums, int64_t scale,
                 int64_t m0, int64_t p0, const Epilogue& e);

}  // namespace bitops::cpu::amx
