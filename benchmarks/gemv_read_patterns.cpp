// Benchmark only: how fast can a cold M = 1 ternary GEMV read its weights?
// Reads (loads only, no math) the same cold packed-weight buffers a GEMV cell of
// benchmarks/matmul.py streams, in the orders a kernel could take, next to the
// library's VNNI GEMV itself and a long sequential stream like matmul.py's
// bandwidth probe. All threads (OpenMP, as torch's parallel regions), one
// process, the patterns interleaved round by round: on this shared machine the
// bandwidth a minute gets swings by up to 2x, and only a same-round ratio means
// anything.
//
//   stream_512MiB    one long sequential read split in halves (matmul.py's probe)
//   seq_halves       a weight buffer read front to back, split in halves
//   seq_tiles        the same in 256-row tiles handed out as for_tiles does
//   rows4_tiles      4 weight rows at a time (the GEMV's register tile): 4
//                    interleaved streams 1 row apart, 256-row tiles, no prefetch
//   rows4_tiles_pf   the same plus the kernel's software prefetch of the next
//                    4-row tile (2 lines per 32-byte step): the kernel's loads
//   rows4_contig_pf  the loads a 4-row kernel would make on a layout that stores
//                    each 4-row tile's 32-byte blocks side by side (one stream,
//                    front to back), with the same prefetch: what such a second
//                    layout could gain
//   kernel           vnni::ternary_gemv_codes (the library's M = 1 kernel here)
//
// Build and run: python benchmarks/gemv_read_patterns.py.
#include <immintrin.h>
#include <omp.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "kernels/cpu/vnni_kernels.h"

#pragma GCC target("avx2")

namespace {

constexpr int64_t kTileRows = 256;  // for_tiles' rows per tile at N = 4096, 2 threads
volatile int64_t g_sink;            // keeps every read alive
std::atomic<bool> g_kernel_ok{true};  // the kernel found no corrupt code (the buffers hold none)

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

int64_t fold(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i s = _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d));
  return _mm256_extract_epi64(s, 0) ^ _mm256_extract_epi64(s, 3);
}

// Bytes [a, e) front to back, 128 bytes per step.
int64_t read_sequential(const uint8_t* p, int64_t a, int64_t e) {
  __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
  for (int64_t i = a; i + 128 <= e; i += 128) {
    s0 = _mm256_or_si256(s0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    s1 = _mm256_or_si256(s1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    s2 = _mm256_or_si256(s2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    s3 = _mm256_or_si256(s3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  return fold(s0, s1, s2, s3);
}

// Rows [n0, n1) four at a time, 32 bytes of each row per step; with prefetch,
// the next four rows as one stream (2 lines per step), as the kernel does.
// contiguous: row j's step b at 128 b + 32 j of the tile instead of j rb + 32 b.
int64_t read_rows4(const uint8_t* w, int64_t rb, int64_t n0, int64_t n1, bool prefetch, bool contiguous) {
  const int64_t row_stride = contiguous ? 32 : rb, step = contiguous ? 128 : 32;
  __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
  for (int64_t n = n0; n + 4 <= n1; n += 4) {
    const uint8_t* r = w + n * rb;
    const uint8_t* next = prefetch && n + 8 <= n1 ? r + 4 * rb : nullptr;
    for (int64_t b = 0; b < rb / 32; ++b) {
      if (next) {
        _mm_prefetch(reinterpret_cast<const char*>(next + 128 * b), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(next + 128 * b + 64), _MM_HINT_T0);
      }
      const uint8_t* at = r + b * step;
      s0 = _mm256_or_si256(s0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at)));
      s1 = _mm256_or_si256(s1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at + row_stride)));
      s2 = _mm256_or_si256(s2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at + 2 * row_stride)));
      s3 = _mm256_or_si256(s3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at + 3 * row_stride)));
    }
  }
  return fold(s0, s1, s2, s3);
}

enum Pattern { kStream, kSeqHalves, kSeqTiles, kRows4, kRows4Pf, kRows4ContigPf, kKernel, kPatterns };
const char* const kNames[kPatterns] = {"stream_512MiB", "seq_halves", "seq_tiles", "rows4_tiles", "rows4_tiles_pf",
                                       "rows4_contig_pf", "kernel"};

struct Weights {
  int64_t n, k, rb;
  const std::vector<int8_t>* x;
};

// One call of pattern p over buffer w (n rows of rb bytes, or `bytes` for the stream).
void call(Pattern p, const uint8_t* w, int64_t bytes, const Weights& shape) {
  const int64_t tiles = (shape.n + kTileRows - 1) / kTileRows;
  std::atomic<int64_t> next{0};
  int64_t sink = 0;
#pragma omp parallel reduction(^ : sink)
  {
    const int threads = omp_get_num_threads(), me = omp_get_thread_num();
    if (p == kStream || p == kSeqHalves) {
      const int64_t part = bytes / threads / 128 * 128;
      sink ^= read_sequential(w, part * me, me == threads - 1 ? bytes : part * (me + 1));
    } else {
      int64_t dots[kTileRows];
      for (int64_t t = next++; t < tiles; t = next++) {
        const int64_t n0 = t * kTileRows, n1 = std::min(shape.n, n0 + kTileRows);
        if (p == kSeqTiles) sink ^= read_sequential(w, n0 * shape.rb, n1 * shape.rb);
        else if (p == kKernel) {
          if (!bitops::cpu::vnni::ternary_gemv_codes(w + n0 * shape.rb, shape.rb, n1 - n0, n1 - n0, shape.x->data(),
                                                     shape.k / 128, nullptr, nullptr, dots))
            g_kernel_ok = false;
          sink ^= dots[0];
        }
        else sink ^= read_rows4(w, shape.rb, n0, n1, p != kRows4, p == kRows4ContigPf);
      }
    }
  }
  g_sink = sink;
}

}  // namespace

// Usage: gemv_read_patterns N K ROUNDS (N a multiple of 4, K of 128). Prints one JSON object: per round and
// pattern, the median read bandwidth (GB/s) over 2x the rotation's calls.
int main(int argc, char** argv) {
  if (argc != 4) return 2;
  const int64_t n = std::atoll(argv[1]), k = std::atoll(argv[2]), rounds = std::atoll(argv[3]);
  if (k % 128 || n % 4) return 2;
  const int64_t rb = k / 4, bytes = n * rb;
  const bool vnni = bitops::cpu::vnni::usable();
  // Cold: a rotation of copies >= 4x a 32 MiB LLC, as matmul.py's cold weights.
  const int64_t copies = std::max<int64_t>(8, (128LL << 20) / bytes + 1);
  std::vector<std::vector<uint8_t>> buffers(copies, std::vector<uint8_t>(bytes));
  uint32_t seed = 12345;
  for (auto& b : buffers)
    for (auto& v : b) {
      seed = seed * 1664525u + 1013904223u;
      const uint8_t c = (seed >> 24) % 81;  // four valid codes (0..2) per byte
      v = static_cast<uint8_t>((c % 3) << 6 | (c / 3 % 3) << 4 | (c / 9 % 3) << 2 | c / 27 % 3);
    }
  std::vector<int8_t> x(k);
  for (auto& v : x) v = static_cast<int8_t>((seed = seed * 1664525u + 1013904223u) >> 24);
  const int64_t stream_bytes = 512LL << 20;
  std::vector<uint8_t> stream(stream_bytes, 1);
  const Weights shape{n, k, rb, &x};

  std::printf("{\"threads\": %d, \"n\": %lld, \"k\": %lld, \"weight_bytes\": %lld, \"copies\": %lld, \"patterns\": [",
              omp_get_max_threads(), static_cast<long long>(n), static_cast<long long>(k),
              static_cast<long long>(bytes), static_cast<long long>(copies));
  for (int p = 0; p < kPatterns; ++p) std::printf("%s\"%s\"", p ? ", " : "", kNames[p]);
  std::printf("], \"rounds_gbps\": [");
  int64_t rot = 0;
  for (int64_t r = 0; r < rounds; ++r) {
    std::printf("%s[", r ? ", " : "");
    for (int p = 0; p < kPatterns; ++p) {
      std::vector<double> t;
      if (p == kKernel && !vnni) {
        std::printf(", null");
        continue;
      }
      const int calls = p == kStream ? 5 : static_cast<int>(2 * copies);
      for (int i = 0; i < calls; ++i) {
        const uint8_t* w = p == kStream ? stream.data() : buffers[rot++ % copies].data();
        const double t0 = now();
        call(static_cast<Pattern>(p), w, p == kStream ? stream_bytes : bytes, shape);
        t.push_back(now() - t0);
      }
      std::sort(t.begin(), t.end());
      std::printf("%s%.2f", p ? ", " : "", (p == kStream ? stream_bytes : bytes) / t[t.size() / 2] / 1e9);
    }
    std::printf("]");
    std::fflush(stdout);
  }
  std::printf("]}\n");
  if (!g_kernel_ok) std::fprintf(stderr, "the kernel reported a corrupt code in valid weights\n");
  return g_kernel_ok ? 0 : 1;
}
