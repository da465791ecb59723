// The portable bf16 GEMV (bf16_gemv.h) and the choice of the active one.
#include "bf16_gemv.h"

namespace bitops::cpu {

void bf16_gemv(const float* xe, const float* xo, const uint16_t* w, int64_t k, Tile t, const float* bias, float* out,
               int64_t ldo) {
  constexpr int kParts = 16;
  const int64_t whole = k / kParts * kParts;
  for (int64_t n = t.n0; n < t.n1; ++n) {
    const uint16_t* row = w + n * k;
    for (int64_t m = t.m0; m < t.m1; ++m) {
      const float* e = xe + m * ((k + 1) / 2);
      const float* o = xo + m * ((k + 1) / 2);
      float part[kParts] = {};
      for (int64_t i = 0; i < whole; i += kParts)
        for (int j = 0; j < kParts; j += 2) {
          part[j] += bf16_bits_to_float(row[i + j]) * e[(i + j) / 2];
          part[j + 1] += bf16_bits_to_float(row[i + j + 1]) * o[(i + j) / 2];
        }
      for (int width = kParts / 2; width >= 1; width /= 2)
        for (int j = 0; j < width; ++j) part[j] += part[j + width];
      float y = part[0] + bf16_dot_tail(e, o, row, whole, k);
      if (bias) y += bias[n];
      out[m * ldo + n] = y;
    }
  }
}

Bf16GemvFn active_bf16_gemv() {
  static const Bf16GemvFn fn = [] {
    const KernelTable* t = &active_kernels();
#if defined(__x86_64__) || defined(__i386__)
    if (t == avx512vnni_kernels()) return &avx512::bf16_gemv;
    if (t == avx2_kernels()) return &avx2::bf16_gemv;
#endif
    (void)t;
    return &bf16_gemv;
  }();
  return fn;
}

}  // namespace bitops::cpu
