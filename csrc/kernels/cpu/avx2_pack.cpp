// AVX2 packing, unpacking and validation of the formats in layout.h.
//
// Ternary: the four 32-weight runs of a 128-weight block map onto one 32-byte
// register (run q in bits 7-2q:6-2q of every byte), so packing is three shifts
// and three ORs per block and unpacking three shifts and masks: no shuffles.
// Binary: packing is vpmovmskb of (w == 1); unpacking broadcasts 4 bytes and
// spreads each over 8 lanes with vpshufb, then tests one bit per lane.
// The partial last block of a row goes through a small stack buffer, so no
// load or store leaves the row.
// Value errors are rare: the vector code only notices that a row holds one and
// then hands that row to the portable function, which reports the exact index.
#include <cstring>
#include "cpu_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2")

namespace bitops::cpu::avx2 {
namespace {

inline __m256i load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline void store(void* p, __m256i v) { _mm256_storeu_si256(static_cast<__m256i*>(p), v); }

// 128 int8 weights -> one 32-byte block; lanes outside {-1, 0, 1} leave bits in `bad`.
inline __m256i pack_block(const int8_t* src, __m256i& bad) {
  const __m256i one = _mm256_set1_epi8(1), two = _mm256_set1_epi8(2);
  __m256i c[4];
  for (int q = 0; q < 4; ++q) {
    c[q] = _mm256_add_epi8(load(src + 32 * q), one);  // code w + 1: valid iff <= 2 as unsigned
    bad = _mm256_or_si256(bad, _mm256_xor_si256(_mm256_max_epu8(c[q], two), two));
  }
  // 16-bit shifts cannot carry a valid 2-bit code into the next byte (a bad lane may,
  // but then the row is packed again by the portable code).
  return _mm256_or_si256(_mm256_or_si256(_mm256_slli_epi16(c[0], 6), _mm256_slli_epi16(c[1], 4)),
                         _mm256_or_si256(_mm256_slli_epi16(c[2], 2), c[3]));
}

int64_t pack_ternary(const int8_t* wq, int64_t k, int64_t n0, int64_t n1, uint8_t* packed) {
  const int64_t rb = ternary_row_bytes(k), full = k / kTernaryBlockWeights, tail = k % kTernaryBlockWeights;
  alignas(32) int8_t buf[kTernaryBlockWeights];
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* src = wq + n * k;
    uint8_t* dst = packed + n * rb;
    __m256i bad = _mm256_setzero_si256();
    for (int64_t b = 0; b < full; ++b) store(dst + 32 * b, pack_block(src + kTernaryBlockWeights * b, bad));
    if (tail) {  // weight 0 (code 1) in the padding
      std::memset(buf, 0, sizeof buf);
      std::memcpy(buf, src + kTernaryBlockWeights * full, tail);
      store(dst + 32 * full, pack_block(buf, bad));
    }
    if (!_mm256_testz_si256(bad, bad)) return cpu::pack_ternary(wq, k, n, n + 1, packed);
  }
  return -1;
}

// The 2-bit codes of run q (0..3) of a block, one per byte lane.
template <int Q>
inline __m256i codes_of(__m256i bytes) {
  return _mm256_and_si256(_mm256_srli_epi16(bytes, 6 - 2 * Q), _mm256_set1_epi8(3));
}

int64_t unpack_ternary(const uint8_t* packed, int64_t k, int64_t n0, int64_t n1, int8_t* wq) {
  const int64_t rb = ternary_row_bytes(k), full = k / kTernaryBlockWeights, tail = k % kTernaryBlockWeights;
  const __m256i one = _mm256_set1_epi8(1), three = _mm256_set1_epi8(3);
  // Lanes of run q that lie within K in the partial last block: j < tail - 32 q.
  const __m256i lane = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                        22, 23, 24, 25, 26, 27, 28, 29, 30, 31);
  __m256i in_k[4];
  for (int q = 0; q < 4; ++q) in_k[q] = _mm256_cmpgt_epi8(_mm256_set1_epi8(int8_t(tail - 32 * q)), lane);
  alignas(32) int8_t buf[kTernaryBlockWeights];
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = packed + n * rb;
    int8_t* dst = wq + n * k;
    __m256i bad = _mm256_setzero_si256();
    for (int64_t b = 0; b < full; ++b) {
      const __m256i bytes = load(row + 32 * b);
      int8_t* out = dst + kTernaryBlockWeights * b;
      const __m256i c0 = codes_of<0>(bytes), c1 = codes_of<1>(bytes), c2 = codes_of<2>(bytes), c3 = codes_of<3>(bytes);
      bad = _mm256_or_si256(bad, _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(c0, three), _mm256_cmpeq_epi8(c1, three)),
                                                 _mm256_or_si256(_mm256_cmpeq_epi8(c2, three), _mm256_cmpeq_epi8(c3, three))));
      store(out, _mm256_sub_epi8(c0, one));
      store(out + 32, _mm256_sub_epi8(c1, one));
      store(out + 64, _mm256_sub_epi8(c2, one));
      store(out + 96, _mm256_sub_epi8(c3, one));
    }
    if (tail) {  // code 3 counts only within K
      const __m256i bytes = load(row + 32 * full);
      const __m256i c[4] = {codes_of<0>(bytes), codes_of<1>(bytes), codes_of<2>(bytes), codes_of<3>(bytes)};
      for (int q = 0; q < 4; ++q) {
        bad = _mm256_or_si256(bad, _mm256_and_si256(_mm256_cmpeq_epi8(c[q], three), in_k[q]));
        store(buf + 32 * q, _mm256_sub_epi8(c[q], one));
      }
      std::memcpy(dst + kTernaryBlockWeights * full, buf, tail);
    }
    if (!_mm256_testz_si256(bad, bad)) return n;
  }
  return -1;
}

int64_t pack_binary(const int8_t* wq, int64_t k, int64_t n0, int64_t n1, uint8_t* packed) {
  const int64_t rb = binary_row_bytes(k), full = k / 32, tail = k % 32;
  const int64_t used = 4 * (full + (tail ? 1 : 0));  // bytes written from bits; the rest is padding
  const __m256i plus = _mm256_set1_epi8(1), minus = _mm256_set1_epi8(-1);
  alignas(32) int8_t buf[32];
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* src = wq + n * k;
    uint8_t* dst = packed + n * rb;
    __m256i good = _mm256_set1_epi8(-1);
    auto chunk = [&](const int8_t* p, uint8_t* out) {
      const __m256i v = load(p), pos = _mm256_cmpeq_epi8(v, plus);
      good = _mm256_and_si256(good, _mm256_or_si256(pos, _mm256_cmpeq_epi8(v, minus)));
      const uint32_t bits = static_cast<uint32_t>(_mm256_movemask_epi8(pos));  // bit i = lane i
      std::memcpy(out, &bits, 4);  // little-endian: lane i -> bit i % 8 of byte i / 8
    };
    for (int64_t c = 0; c < full; ++c) chunk(src + 32 * c, dst + 4 * c);
    if (tail) {  // -1 in the padding: bit 0
      std::memset(buf, -1, sizeof buf);
      std::memcpy(buf, src + 32 * full, tail);
      chunk(buf, dst + 4 * full);
    }
    std::memset(dst + used, 0, rb - used);
    if (!_mm256_testc_si256(good, _mm256_set1_epi8(-1))) return cpu::pack_binary(wq, k, n, n + 1, packed);
  }
  return -1;
}

void unpack_binary(const uint8_t* packed, int64_t k, int64_t n0, int64_t n1, int8_t* wq) {
  const int64_t rb = binary_row_bytes(k), full = k / 32, tail = k % 32;
  // 4 bytes broadcast to every dword; lane i takes byte i / 8 (vpshufb works per 128-bit half).
  const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,
                                          3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);  // lane i tests bit i % 8
  const __m256i one = _mm256_set1_epi8(1), two = _mm256_set1_epi8(2);
  alignas(32) int8_t buf[32];
  auto chunk = [&](const uint8_t* p) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    const __m256i x = _mm256_shuffle_epi8(_mm256_set1_epi32(int32_t(w)), spread);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(x, bit), bit);
    return _mm256_sub_epi8(_mm256_and_si256(set, two), one);  // set: +1, clear: -1
  };
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = packed + n * rb;
    int8_t* dst = wq + n * k;
    for (int64_t c = 0; c < full; ++c) store(dst + 32 * c, chunk(row + 4 * c));
    if (tail) {  // row + 4 * full + 4 <= row + rb: rows are whole 32-byte blocks
      store(buf, chunk(row + 4 * full));
      std::memcpy(dst + 32 * full, buf, tail);
    }
  }
}

int64_t validate_ternary(const uint8_t* packed, int64_t k, int64_t n0, int64_t n1) {
  const int64_t rb = ternary_row_bytes(k), full = k / kTernaryBlockWeights, tail = k % kTernaryBlockWeights;
  // In the partial last block, per byte j: the 2-bit fields within K (must not be 3) and
  // those in the padding (must be code 1).
  alignas(32) uint8_t in_k_bytes[32] = {}, pad_bytes[32] = {};
  for (int j = 0; j < 32; ++j)
    for (int q = 0; q < 4; ++q) (32 * q + j < tail ? in_k_bytes : pad_bytes)[j] |= uint8_t(3 << (6 - 2 * q));
  const __m256i in_k = load(in_k_bytes), pad = load(pad_bytes), m55 = _mm256_set1_epi8(0x55);
  // Bit 2i of (b & b >> 1) & 0x55 is set where field i is code 3 (the 16-bit shift's
  // carry from the next byte lands on bit 7, which 0x55 drops).
  auto threes = [&](__m256i b) { return _mm256_and_si256(_mm256_and_si256(b, _mm256_srli_epi16(b, 1)), m55); };
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = packed + n * rb;
    __m256i bad = _mm256_setzero_si256();
    int64_t b = 0;
    for (; b + 2 <= full; b += 2)
      bad = _mm256_or_si256(bad, _mm256_or_si256(threes(load(row + 32 * b)), threes(load(row + 32 * b + 32))));
    if (b < full) bad = _mm256_or_si256(bad, threes(load(row + 32 * b)));
    if (tail) {
      const __m256i x = load(row + 32 * full);
      bad = _mm256_or_si256(bad, _mm256_or_si256(_mm256_and_si256(threes(x), in_k),
                                                 _mm256_and_si256(_mm256_xor_si256(x, m55), pad)));
    }
    if (!_mm256_testz_si256(bad, bad)) return n;
  }
  return -1;
}

int64_t validate_binary(const uint8_t* packed, int64_t k, int64_t n0, int64_t n1) {
  const int64_t rb = binary_row_bytes(k), tail = k % kBinaryBlockWeights;
  if (tail == 0) return -1;  // no padding bits
  // Only the last 32 bytes of a row hold padding: bits tail .. 255 of that block.
  alignas(32) uint8_t pad_bytes[32];
  for (int j = 0; j < 32; ++j) {
    const int64_t first = tail - 8 * j;  // bits of byte j below this are within K
    pad_bytes[j] = first <= 0 ? 0xFF : first >= 8 ? 0 : uint8_t(0xFF << first);
  }
  const __m256i pad = load(pad_bytes);
  for (int64_t n = n0; n < n1; ++n)
    if (!_mm256_testz_si256(load(packed + n * rb + rb - 32), pad)) return n;
  return -1;
}

}  // namespace
}  // namespace bitops::cpu::avx2

#pragma GCC pop_options

namespace bitops::cpu {

const PackTable* avx2_pack_kernels() {
  static const PackTable table{"cpu-avx2",          avx2::pack_ternary,     avx2::unpack_ternary,
                               avx2::pack_binary,   avx2::unpack_binary,    avx2::validate_ternary,
                               avx2::validate_binary,   avx2::quantize_ternary_weights,
                               avx2::quantize_binary_weights};
  return &table;
}

}  // namespace bitops::cpu

#else

namespace bitops::cpu {
const PackTable* avx2_pack_kernels() { return nullptr; }
}  // namespace bitops::cpu

#endif
