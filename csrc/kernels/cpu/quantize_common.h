// Row quantisers shared by the scalar and AVX2 kernel sets: the same float32
// operations in the same order, so xq is bit-identical whichever path runs.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace bitops::cpu {

constexpr float kActEps = 1e-5f;

inline float absmax_scale(float amax) {
  return 127.0f / (amax > kActEps ? amax : kActEps);  // a true division, as the contract says
}

inline int8_t quantize_value(float v, float s) {
  float r = std::nearbyint(v * s);  // round half to even (default rounding mode)
  r = r < -128.0f ? -128.0f : (r > 127.0f ? 127.0f : r);
  return static_cast<int8_t>(r);
}

}  // namespace bitops::cpu
