// How the 256-bit drivers (dot_tiles.h, gemm_i8_tiles.h) read the packed
// formats of layout.h: one decoder per format, used by the AVX2 set and by the
// AVX-512 set alike (avx2_*.cpp, avx512_*.cpp). AVX2 instructions only.
//
// Ternary (layout.h: 32-byte blocks of 128 weights, byte j holds weights j,
// j+32, j+64, j+96 as codes w + 1 at bits 7:6, 5:4, 3:2, 1:0):
//   int8 activations: one 32-byte load shifted by 6/4/2/0 and masked with 3
//   gives the codes of 4 runs of 32 weights, lined up with 32 activations each,
//   so dot = sum(code * x) - sum(x) (maddubs: unsigned codes x signed int8;
//   it cannot saturate here: |2 * 2 * 128| = 512 per int16 lane).
//   Float activations: 8 codes widened to int32 lanes index a 8-entry float
//   table (-1, 0, +1) with vpermps; the low 3 bits suffice, so no masking.
//
// Binary (layout.h: bit k % 8 of byte k / 8, set = +1, rows padded to 256 bits
// whose padding is ignored):
//   int8 activations: 32 bits spread to 32 bytes of 0/1 (vpshufb + bit test),
//   so dot = 2 * sum(bit * x) - sum(x) (the same maddubs driver as ternary).
//   Float activations: 8 bits shifted into 8 int32 lanes pick -1/+1 with vpermps.
//
// Include only after dot_tiles.h (same rules).
#pragma once

namespace bitops::cpu::ymm {
namespace {

struct TernaryDecoder {
  static constexpr int64_t kBlockBytes = kTernaryBlockBytes;
  static constexpr int64_t kScale = 1;  // weight = code - 1
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

struct BinaryDecoder {
  // The drivers walk 128-weight blocks: 16 bytes of bits here.
  static constexpr int64_t kBlockBytes = kBlock / 8;
  static constexpr int64_t kScale = 2;  // weight = 2 * bit - 1
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

}  // namespace
}  // namespace bitops::cpu::ymm
