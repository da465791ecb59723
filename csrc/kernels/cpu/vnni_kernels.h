// The AVX-512 VNNI inner kernel of the decoded int8 GEMM (avx512_vnni.cpp).
// Portable declarations: code compiled for AVX2 may take its address, and the
// "cpu-avx512vnni" kernel table calls it only after cpuid has confirmed the ISA.
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

// AVX-512 F, BW, VL and VNNI usable on this CPU (cpuid and the OS's saved state).
bool usable();

}  // namespace bitops::cpu::vnni
