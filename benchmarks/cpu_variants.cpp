// Benchmark-only comparison of the AVX2 ternary x int8 approaches of DESIGN.md
// section 7, outside torch, one thread, on the library's packed layout:
//
//   maddubs   the library kernel: unsigned offset codes (w + 1) x int8, minus sum(x)
//   sign      true add/sub: w = code - 1, _mm256_sign_epi8(w, x) then maddubs with |x|
//             (|x| as unsigned makes -128 safe), x's |.| hoisted out of the loop
//   lut       T-MAC style table lookup: per pair of activations the 9 sums
//             (a-1) x0 + (b-1) x1 as int16 split into two byte tables; 32 output
//             rows per vpshufb, so it needs its own row-interleaved layout (packed
//             here, outside the timing)
//
// Build and run: python benchmarks/cpu_variants.py (compiles this file with the
// kernel sources and writes benchmarks/results/cpu_variants.{json,md}).
#include <immintrin.h>
#include <algorithm>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include "kernels/cpu/avx2_kernels.h"
#include "kernels/cpu/vnni_kernels.h"
#include "kernels/cpu/cpu_kernels.h"
#include "int8_peak.h"

using namespace bitops;

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace variants {

// ---- sign_epi8 add/sub, M rows of x against rows [n0, n1); K % 128 == 0 here.
void sign_gemv(const int8_t* xq, const int8_t* xabs, const uint8_t* w, int64_t k, int64_t m_rows, int64_t n0,
               int64_t n1, int32_t* out, int64_t ldo) {
  const int64_t rb = k / 4, blocks = k / 128;
  const __m256i three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  for (int64_t m = 0; m < m_rows; ++m) {
    const int8_t* x = xq + m * k;
    const int8_t* ax = xabs + m * k;
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* row = w + n * rb;
      __m256i acc = _mm256_setzero_si256();
      for (int64_t b = 0; b < blocks; ++b) {
        _mm_prefetch(reinterpret_cast<const char*>(row + 32 * b + 2048), _MM_HINT_T0);  // all variants prefetch
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 32 * b));
        __m256i part = _mm256_setzero_si256();
        for (int q = 0; q < 4; ++q) {
          const __m256i wq = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(v, 6 - 2 * q), three), one);
          const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 128 * b + 32 * q));
          const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ax + 128 * b + 32 * q));
          // sign(w, x) = w * sign(x); |x| * w * sign(x) = w * x, exact for x = -128
          part = _mm256_add_epi16(part, _mm256_maddubs_epi16(av, _mm256_sign_epi8(wq, xv)));
        }
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(part, ones16));
      }
      alignas(32) int32_t l[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(l), acc);
      out[m * ldo + n] = l[0] + l[1] + l[2] + l[3] + l[4] + l[5] + l[6] + l[7];
    }
  }
}

// ---- LUT (M = 1). Layout: for each group of 32 rows and each pair p of K,
// 16 bytes: byte i holds the 4-bit index 3 a + b (a, b = codes of weights 2p,
// 2p+1) of row i in its low nibble and of row i + 16 in its high nibble... kept
// simple: byte i (i < 32) of a 32-byte vector holds pair 2p' (low nibble) and
// pair 2p'+1 (high nibble) of row i.
void lut_tables(const int8_t* x, int64_t k, int8_t* tlo, int8_t* thi) {
  for (int64_t p = 0; p < k / 2; ++p)
    for (int i = 0; i < 16; ++i) {
      const int a = i / 3, b = i % 3;
      const int v = i < 9 ? (a - 1) * x[2 * p] + (b - 1) * x[2 * p + 1] : 0;
      tlo[16 * p + i] = static_cast<int8_t>(v & 0xff);
      thi[16 * p + i] = static_cast<int8_t>(v >> 8);
    }
}

void lut_gemv(const int8_t* tlo, const int8_t* thi, const uint8_t* w, int64_t k, int64_t g0, int64_t g1,
              int32_t* out) {
  const int64_t pairs = k / 2, bytes_per_group = 32 * pairs / 2;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* wg = w + g * bytes_per_group;
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                      _mm256_setzero_si256()};
    for (int64_t p0 = 0; p0 < pairs; p0 += 128) {  // int16 sums: 128 * 255 < 2^15
      __m256i lo16 = _mm256_setzero_si256(), hi16 = _mm256_setzero_si256();
      const int64_t p1 = std::min(pairs, p0 + 128);
      for (int64_t p = p0; p < p1; p += 2) {
        _mm_prefetch(reinterpret_cast<const char*>(wg + 16 * p + 2048), _MM_HINT_T0);
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg + 16 * p));
        const __m256i i0 = _mm256_and_si256(v, low4), i1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
        const __m256i l0 = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tlo + 16 * p)));
        const __m256i h0 = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(thi + 16 * p)));
        const __m256i l1 =
            _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tlo + 16 * p + 16)));
        const __m256i h1 =
            _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(thi + 16 * p + 16)));
        const __m256i vl0 = _mm256_shuffle_epi8(l0, i0), vh0 = _mm256_shuffle_epi8(h0, i0);
        const __m256i vl1 = _mm256_shuffle_epi8(l1, i1), vh1 = _mm256_shuffle_epi8(h1, i1);
        // int16 = hi:lo; rows 0-7,16-23 in unpacklo, 8-15,24-31 in unpackhi
        lo16 = _mm256_add_epi16(lo16, _mm256_add_epi16(_mm256_unpacklo_epi8(vl0, vh0), _mm256_unpacklo_epi8(vl1, vh1)));
        hi16 = _mm256_add_epi16(hi16, _mm256_add_epi16(_mm256_unpackhi_epi8(vl0, vh0), _mm256_unpackhi_epi8(vl1, vh1)));
      }
      acc[0] = _mm256_add_epi32(acc[0], _mm256_cvtepi16_epi32(_mm256_castsi256_si128(lo16)));
      acc[1] = _mm256_add_epi32(acc[1], _mm256_cvtepi16_epi32(_mm256_extracti128_si256(lo16, 1)));
      acc[2] = _mm256_add_epi32(acc[2], _mm256_cvtepi16_epi32(_mm256_castsi256_si128(hi16)));
      acc[3] = _mm256_add_epi32(acc[3], _mm256_cvtepi16_epi32(_mm256_extracti128_si256(hi16, 1)));
    }
    alignas(32) int32_t l[4][8];
    for (int i = 0; i < 4; ++i) _mm256_store_si256(reinterpret_cast<__m256i*>(l[i]), acc[i]);
    for (int i = 0; i < 8; ++i) {
      out[32 * g + i] = l[0][i];
      out[32 * g + 16 + i] = l[1][i];
      out[32 * g + 8 + i] = l[2][i];
      out[32 * g + 24 + i] = l[3][i];
    }
  }
}

}  // namespace variants

#pragma GCC pop_options

namespace {

// The best of `reps` calls: on a shared machine the other processes only ever
// slow a call down (cache pollution even in CPU time), so the minimum is the
// steadiest estimate of what the kernel itself can do.
template <class F>
double best_time(F&& f, int reps) {
  f(0);
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = peak::now();
    f(r);
    best = std::min(best, peak::now() - t0);
  }
  return best;
}

// Repacks int8 weights [N, K] into the LUT layout (benchmark only).
void pack_lut(const int8_t* wq, int64_t n, int64_t k, uint8_t* out) {
  const int64_t pairs = k / 2;
  for (int64_t g = 0; g < n / 32; ++g)
    for (int64_t p = 0; p < pairs; p += 2)
      for (int i = 0; i < 32; ++i) {
        const int8_t* r = wq + (32 * g + i) * k;
        const int lo = 3 * (r[2 * p] + 1) + (r[2 * p + 1] + 1);
        const int hi = 3 * (r[2 * p + 2] + 1) + (r[2 * p + 3] + 1);
        out[g * 16 * pairs + 16 * p + i] = static_cast<uint8_t>(lo | hi << 4);
      }
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 4096, k = argc > 2 ? std::atoll(argv[2]) : 4096;
  const int64_t layers = argc > 3 ? std::atoll(argv[3]) : 1;  // > 1: rotate (cold weights)
  const int64_t m_gemm = argc > 4 ? std::atoll(argv[4]) : 64;
  std::mt19937 rng(1);
  std::vector<int8_t> wq(n * k), xq(m_gemm * k), xabs(m_gemm * k);
  for (auto& v : wq) v = static_cast<int8_t>(int(rng() % 3) - 1);
  for (size_t i = 0; i < xq.size(); ++i) {
    xq[i] = static_cast<int8_t>(int(rng() % 256) - 128);
    xabs[i] = static_cast<int8_t>(std::abs(int(xq[i])));  // 128 wraps to -128 = 0x80: maddubs reads it unsigned
  }
  const int64_t rb = ternary_row_bytes(k);
  std::vector<std::vector<uint8_t>> packed(layers, std::vector<uint8_t>(n * rb)), lut(layers,
                                                                                         std::vector<uint8_t>(n * k / 4));
  for (int64_t l = 0; l < layers; ++l) {
    cpu::pack_ternary(wq.data(), k, 0, n, packed[l].data());
    pack_lut(wq.data(), n, k, lut[l].data());
  }
  const cpu::KernelTable* t = cpu::avx2_kernels();
  std::vector<int32_t> out(m_gemm * n), ref(m_gemm * n);
  Epilogue e;
  e.out_int = out.data();
  e.ldo = n;
  const int reps = 30;
  auto check = [&](int64_t m, const char* what) {
    Epilogue er = e;
    er.out_int = ref.data();
    cpu::scalar_kernels().ternary_gemm_i8(xq.data(), packed[0].data(), k, cpu::Tile{0, m, 0, n}, er);
    if (std::memcmp(ref.data(), out.data(), m * n * 4) != 0) std::printf("MISMATCH %s\n", what);
  };
  const double hz = peak::clock_hz(), mps = peak::maddubs_per_second(0.3, peak::now);
  const double vnni = peak::vnni_macs_per_second(0.3, peak::now);
  std::printf("{\"n\": %lld, \"k\": %lld, \"layers\": %lld, \"clock_ghz\": %.3f, \"maddubs_per_cycle\": %.3f, "
              "\"int8_peak_gmacs_per_core\": %.1f, \"vnni_peak_gmacs_per_core\": %.1f, \"results\": [\n",
              (long long)n, (long long)k, (long long)layers, hz / 1e9, mps / hz, 32 * mps / 1e9, vnni / 1e9);
  // One JSON row per variant and M (a comma before every row but the first).
  bool first = true;
  auto emit = [&](int64_t m, const char* variant, double secs) {
    std::printf("%s {\"m\": %lld, \"variant\": \"%s\", \"us\": %.1f, \"gmacs\": %.1f}", first ? "" : ",\n",
                (long long)m, variant, secs * 1e6, double(m) * n * k / secs / 1e9);
    first = false;
  };
  const cpu::KernelTable* tv = cpu::vnni::usable() ? cpu::avx512vnni_kernels() : nullptr;
  for (int64_t m : {int64_t(1), m_gemm}) {
    double tm = best_time([&](int r) { t->ternary_gemm_i8(xq.data(), packed[r % layers].data(), k, {0, m, 0, n}, e); }, reps);
    check(m, "maddubs");
    emit(m, "maddubs", tm);
    double ts = best_time([&](int r) {
      variants::sign_gemv(xq.data(), xabs.data(), packed[r % layers].data(), k, m, 0, n, out.data(), n);
    }, m == 1 ? reps : 5);
    check(m, "sign");
    emit(m, "sign", ts);
    std::vector<int8_t> tlo(16 * k / 2), thi(16 * k / 2);
    double tl = best_time([&](int r) {
      for (int64_t i = 0; i < m; ++i) {  // LUT: tables per row of x, then every weight group
        variants::lut_tables(xq.data() + i * k, k, tlo.data(), thi.data());
        variants::lut_gemv(tlo.data(), thi.data(), lut[r % layers].data(), k, 0, n / 32, out.data() + i * n);
      }
    }, m == 1 ? reps : 3);
    check(m, "lut");
    emit(m, "lut", tl);
    if (tv) {  // the library's set on a CPU with AVX-512 VNNI
      double tn = best_time([&](int r) { tv->ternary_gemm_i8(xq.data(), packed[r % layers].data(), k, {0, m, 0, n}, e); }, reps);
      check(m, "vnni");
      emit(m, "vnni", tn);
    }
  }
  std::printf("\n]}\n");
  return 0;
}
