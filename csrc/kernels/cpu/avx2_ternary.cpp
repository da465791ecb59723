// AVX2 ternary kernels (layout.h: 32-byte blocks of 128 weights, byte j holds
// weights j, j+32, j+64, j+96 as codes w + 1 at bits 7:6, 5:4, 3:2, 1:0).
//
// int8 activations: one 32-byte load shifted by 6/4/2/0 and masked with 3 gives
// the codes of 4 runs of 32 weights, lined up with 32 activations each, so
//   dot = sum(code * x) - sum(x)      (maddubs: unsigned codes x signed int8).
// maddubs cannot saturate here: |2 * 2 * 128| = 512 per int16 lane.
// Float activations: 8 codes widened to int32 lanes index a 8-entry float
// table (-1, 0, +1) with vpermps; the low 3 bits suffice, so no masking.
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

struct TernaryDecoder {
  static constexpr int64_t kBlockBytes = kTernaryBlockBytes;
  static constexpr int64_t kScale = 1;  // weight = code - 1
  static constexpr bool kVnniPacked = true;  // 1 to 4 rows of x: vnni::ternary_rows_codes on the packed bytes
  static int64_t row_bytes(int64_t k) { return ternary_row_bytes(k); }

  const __m256i three = _mm256_set1_epi8(3);
  // index = code (+ 4 * the next code's low bit): entries repeat every 4.
  // Code 3 maps to 0: it is reported by bad_codes, never computed with.
  const __m256 table = _mm256_setr_ps(-1.0f, 0.0f, 1.0f, 0.0f, -1.0f, 0.0f, 1.0f, 0.0f);

  __m256i load(const uint8_t* row, int64_t b) const {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b * kBlockBytes));
  }
  // Codes of weights 32 q .. 32 q + 31 of the block, one per byte.
  __m256i codes(__m256i v, int q) const { return _mm256_and_si256(_mm256_srli_epi16(v, 6 - 2 * q), three); }

  // Weights 32 q + 8 g .. + 7 of block b as floats.
  __m256 weights(const uint8_t* row, int64_t b, int q, int g) const {
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + b * kBlockBytes + 8 * g));
    const __m256i idx = _mm256_srli_epi32(_mm256_cvtepu8_epi32(bytes), 6 - 2 * q);
    return _mm256_permutevar8x32_ps(table, idx);
  }

  // Bit 6-2q of byte j is set where weight j + 32 q has code 3 (bits 7, 5, 3, 1
  // are noise: the shift crosses bytes); check_mask keeps the meaningful bits.
  static __m256i bad_codes(__m256i v) { return _mm256_and_si256(v, _mm256_srli_epi16(v, 1)); }
  // `keep` for a block whose first `valid` weights are real (the rest padding).
  static __m256i check_mask(int64_t valid) {
    alignas(32) uint8_t m[32];
    for (int j = 0; j < 32; ++j) {
      int bits = 0;
      for (int q = 0; q < 4; ++q)
        if (j + 32 * q < valid) bits |= 1 << (6 - 2 * q);
      m[j] = static_cast<uint8_t>(bits);
    }
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(m));
  }
};

}  // namespace

bool ternary_gemm_i8(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  return linear_i8(TernaryDecoder{}, xq, w, k, t, e);
}

bool ternary_gemm_i8_vnni(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  return linear_i8(TernaryDecoder{}, xq, w, k, t, e, /*vnni=*/true);
}

bool ternary_gemm_f32(const float* x, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  return gemm_f32(TernaryDecoder{}, x, w, k, t, e);
}

}  // namespace bitops::cpu::avx2

#pragma GCC pop_options
#endif
