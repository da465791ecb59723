// A deliberately naive C++ reference for the sanitizer driver: the packed
// layouts re-derived from their description in csrc/kernels/layout.h (not from
// its helpers), and the math of DESIGN.md section 1, one weight at a time.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

namespace ref {

inline int64_t ternary_row_bytes(int64_t k) { return (k + 127) / 128 * 32; }
inline int64_t binary_row_bytes(int64_t k) { return (k + 255) / 256 * 32; }

// Weight i of a ternary row: block i/128, byte i%32 of that block, and the run
// (i%128)/32 selects bits 7:6, 5:4, 3:2 or 1:0.
inline int64_t ternary_byte(int64_t i) { return i / 128 * 32 + i % 32; }
inline int ternary_shift(int64_t i) { return 6 - 2 * int(i % 128 / 32); }

inline void pack_ternary(const int8_t* w, int64_t n, int64_t k, uint8_t* out) {
  const int64_t rb = ternary_row_bytes(k);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t b = 0; b < rb; ++b) out[r * rb + b] = 0x55;  // four zero weights (code 1)
    for (int64_t i = 0; i < k; ++i) {
      uint8_t& byte = out[r * rb + ternary_byte(i)];
      const int s = ternary_shift(i);
      byte = uint8_t((byte & ~(3 << s)) | ((w[r * k + i] + 1) << s));
    }
  }
}

inline void set_ternary_code(uint8_t* row, int64_t i, int code) {
  const int s = ternary_shift(i);
  row[ternary_byte(i)] = uint8_t((row[ternary_byte(i)] & ~(3 << s)) | (code << s));
}

// Binary: bit i%8 of byte i/8, set = +1; padding bits are whatever the caller left there.
inline void pack_binary(const int8_t* w, int64_t n, int64_t k, uint8_t* out) {
  const int64_t rb = binary_row_bytes(k);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t b = 0; b < rb; ++b) out[r * rb + b] = 0;
    for (int64_t i = 0; i < k; ++i)
      if (w[r * k + i] > 0) out[r * rb + i / 8] |= uint8_t(1u << (i % 8));
  }
}

inline int ternary_code(const uint8_t* row, int64_t i) { return (row[ternary_byte(i)] >> ternary_shift(i)) & 3; }

// Canonical rows (what pack(unpack(row)) gives back): ternary, no code 3 within K and code 1
// in every padding weight; binary, every padding bit clear.
inline bool canonical_ternary(const uint8_t* row, int64_t k) {
  for (int64_t i = 0; i < ternary_row_bytes(k) * 4; ++i)
    if (i < k ? ternary_code(row, i) == 3 : ternary_code(row, i) != 1) return false;
  return true;
}
inline bool canonical_binary(const uint8_t* row, int64_t k) {
  for (int64_t i = k; i < binary_row_bytes(k) * 8; ++i)
    if ((row[i / 8] >> (i % 8)) & 1) return false;
  return true;
}

inline bool all_finite(const float* row, int64_t k) {
  for (int64_t i = 0; i < k; ++i)
    if (!std::isfinite(row[i])) return false;
  return true;
}

// s = 127 / max(max|x|, 1e-5) as one float division; xq = clamp(rint(x * s), -128, 127).
// A non-finite row: s = NaN, xq = 0.
inline void quantize_row(const float* row, int64_t k, int8_t* q, float* s) {
  if (!all_finite(row, k)) {
    *s = NAN;
    for (int64_t i = 0; i < k; ++i) q[i] = 0;
    return;
  }
  float amax = 0.0f;
  for (int64_t i = 0; i < k; ++i) amax = std::fabs(row[i]) > amax ? std::fabs(row[i]) : amax;
  const float scale = 127.0f / (amax > 1e-5f ? amax : 1e-5f);
  *s = scale;
  for (int64_t i = 0; i < k; ++i) {
    const float p = row[i] * scale;
    float r = std::nearbyint(p);
    if (r > 127.0f) r = 127.0f;
    if (r < -128.0f) r = -128.0f;
    q[i] = int8_t(r);
  }
}

// The shared epilogue, spelled out: three float32 roundings in this order.
inline float epilogue(float acc, float gamma, const float* s, const float* bias) {
  float scale = gamma;
  if (s) scale = scale / *s;
  float y = acc * scale;
  if (bias) y = y + *bias;
  return y;
}

}  // namespace ref
