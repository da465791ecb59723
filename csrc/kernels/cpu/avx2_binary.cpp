// AVX2 binary kernels: the shared 256-bit drivers (dot_tiles.h, gemm_i8_tiles.h,
// xnor_tiles.h) with the binary decoder (decoders.h), the AVX2 int8 product
// (vpmaddubsw) and, for sign bits (act_bits = 1), XOR + popcount with a nibble
// table in vpshufb, bytes summed with vpsadbw. The AVX-512 set's binary kernels
// live in avx512_binary.cpp.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <cstdint>
#include <cstdlib>
#include "avx2_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include "dot_tiles.h"
#include "gemm_i8_tiles.h"
#include "decoders.h"
#include "xnor_tiles.h"

namespace bitops::cpu::avx2 {
namespace {

using ymm::kChunk;
using ymm::Prefetch;
using ymm::prefetch_span;
using ymm::xor_chunk;

inline __m256i popcount_bytes(__m256i v) {
  const __m256i nibble_counts = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,  //
                                                 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i lo = _mm256_shuffle_epi8(nibble_counts, _mm256_and_si256(v, low4));
  const __m256i hi = _mm256_shuffle_epi8(nibble_counts, _mm256_and_si256(_mm256_srli_epi16(v, 4), low4));
  return _mm256_add_epi8(lo, hi);
}

constexpr int64_t kByteSumChunks = 31;  // per-byte counts stay <= 31 * 8 < 256

// The bit count of xnor_tiles.h with the nibble table: per-byte counts, summed
// into the 64-bit lanes by vpsadbw every kByteSumChunks chunks.
struct NibblePopcount {
  template <int MR, int NR, bool kMasked>
  static void add(const uint8_t* const* x, const uint8_t* const* w, int64_t chunks, __m256i keep,
                  __m256i (&differ)[MR][NR], const Prefetch& pf) {
    const __m256i zero = _mm256_setzero_si256();
    for (int64_t c0 = 0; c0 < chunks; c0 += kByteSumChunks) {
      const int64_t c1 = c0 + kByteSumChunks < chunks ? c0 + kByteSumChunks : chunks;
      __m256i counts[MR][NR];
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) counts[i][j] = zero;
      for (int64_t c = c0; c < c1; ++c) {
        if (pf.p) prefetch_span(pf.p + c * pf.step, pf.step);
        xor_chunk<MR, NR, kMasked>(x, w, c, keep, [&](int i, int j, __m256i d) {
          counts[i][j] = _mm256_add_epi8(counts[i][j], popcount_bytes(d));
        });
      }
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) differ[i][j] = _mm256_add_epi64(differ[i][j], _mm256_sad_epu8(counts[i][j], zero));
    }
  }
};

}  // namespace

void binary_gemm_i8(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  ymm::linear_i8<ymm::PathMaddubs, ymm::MaddubsPanel>(ymm::BinaryDecoder{}, xq, w, k, t, e);
}

void binary_gemm_f32(const float* x, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  ymm::gemm_f32(ymm::BinaryDecoder{}, x, w, k, t, e);
}

void binary_gemm_bits(const uint8_t* xbits, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  ymm::gemm_bits<NibblePopcount>(xbits, w, k, t, e);
}

}  // namespace bitops::cpu::avx2

#pragma GCC pop_options
#endif
