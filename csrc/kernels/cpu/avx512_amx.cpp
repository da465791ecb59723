// AMX-INT8 tile products for the decoded-panel ternary GEMM (amx_kernels.h).
// A 64-row panel of codes is 4 row groups of 16; x comes as 1 KiB B tiles. Each
// pass keeps 2 x 2 int32 tiles (32 weight rows x 32 rows of x) and streams k in
// steps of 64: 2 A loads, 2 B loads, 4 TDPBUSD.
#include "amx_kernels.h"
#if defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <atomic>
#include <cstring>

#pragma GCC push_options
#pragma GCC target("amx-tile,amx-int8,avx512f,avx512bw")

namespace bitops::cpu::amx {
namespace {

constexpr int kArchReqXcompPerm = 0x1023;
constexpr int kXfeatureXtiledata = 18;

bool request_tile_data() {
  unsigned a, b, c, d;
  __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
  const bool tile = d & (1u << 24), int8 = d & (1u << 25);
  if (!tile || !int8) return false;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

std::atomic<int> g_enabled{-1};

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

const TileConfig& config() {
  static const TileConfig cfg = [] {
    TileConfig c;
    for (int t = 0; t < 8; ++t) {
      c.colsb[t] = 64;
      c.rows[t] = 16;
    }
    return c;
  }();
  return cfg;
}

}  // namespace

bool usable() {
  static const bool ok = request_tile_data();
  return ok;
}

bool enabled() {
  const int on = g_enabled.load(std::memory_order_relaxed);
  return on < 0 ? usable() : (on == 1 && usable());
}

void set_enabled(int on) { g_enabled.store(on == 0 || on == 1 ? on : -1); }

int64_t x_tiles_bytes(int64_t mrows, int64_t kp) { return (mrows + 15) / 16 * (kp / 64) * 1024; }

void layout_x(const int8_t* x, int64_t k, int64_t full, const int8_t* tails, int64_t mrows, int64_t kp, int8_t* x_tiles) {
  const int64_t chunks = kp / 64, groups = (mrows + 15) / 16;
  std::memset(x_tiles, 0, groups * chunks * 1024);
  for (int64_t r = 0; r < mrows; ++r) {
    const int8_t* row = x + r * k;
    int8_t* group = x_tiles + (r / 16) * chunks * 1024 + (r % 16) * 4;
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t i0 = c * 64;
      const int8_t* src = i0 < full * 128 ? row + i0 : tails + r * 128 + (i0 - full * 128);
      int8_t* tile = group + c * 1024;
      for (int q = 0; q < 16; ++q) std::memcpy(tile + q * 64, src + q * 4, 4);
    }
  }
}

void panel_products(const uint8_t* codes, int64_t kp, const int8_t* x_tiles, int64_t mgroups, int32_t* out,
                    int64_t ldo) {
  _tile_loadconfig(&config());
  const int64_t chunks = kp / 64;
  for (int64_t n0 = 0; n0 < 64; n0 += 32) {
    for (int64_t g = 0; g < mgroups; g += 2) {
      const bool two = g + 1 < mgroups;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      const uint8_t* a0 = codes + n0 * kp;
      const uint8_t* a1 = codes + (n0 + 16) * kp;
      const int8_t* b0 = x_tiles + g * chunks * 1024;
      const int8_t* b1 = two ? b0 + chunks * 1024 : b0;
      for (int64_t c = 0; c < chunks; ++c) {
        _tile_loadd(4, a0 + c * 64, kp);
        _tile_loadd(5, a1 + c * 64, kp);
        _tile_loadd(6, b0 + c * 1024, 64);
        _tile_loadd(7, b1 + c * 1024, 64);
        _tile_dpbusd(0, 4, 6);
        _tile_dpbusd(1, 4, 7);
        _tile_dpbusd(2, 5, 6);
        _tile_dpbusd(3, 5, 7);
      }
      int32_t* o = out + n0 * ldo + g * 16;
      _tile_stored(0, o, ldo * 4);
      _tile_stored(2, o + 16 * ldo, ldo * 4);
      if (two) {
        _tile_stored(1, o + 16, ldo * 4);
        _tile_stored(3, o + 16 * ldo + 16, ldo * 4);
      }
    }
  }
  _tile_release();
}

void store_panel(const int32_t* out, int64_t ldo, int64_t np, int64_t mrows, const int64_t* sums, int64_t scale,
                 int64_t m0, int64_t p0, const Epilogue& e) {
  // lane i reads weight row j0 + i: a gather down the L1-resident sums, one contiguous store
  const __m512i rows = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(int32_t(ldo)));
  const __m512i vscale = _mm512_set1_epi32(int32_t(scale));
  for (int64_t r = 0; r < mrows; ++r) {
    const int64_t m = m0 + r;
    // the exact int32 result, in wrapping arithmetic (it fits, so the wraps cancel)
    const __m512i sum = _mm512_set1_epi32(int32_t(sums[r]));
    __m512 row_scale = _mm512_setzero_ps();
    if (e.row_scale) row_scale = _mm512_set1_ps(e.row_scale[m]);
    for (int64_t j0 = 0; j0 < np; j0 += 16) {
      const __mmask16 live = np - j0 >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (np - j0)) - 1);
      const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, rows, out + j0 * ldo + r, 4);
      const __m512i acc = _mm512_sub_epi32(_mm512_mullo_epi32(v, vscale), sum);
      const int64_t n = p0 + j0;
      if (e.out_int) {
        _mm512_mask_storeu_epi32(e.out_int + m * e.ldo + n, live, acc);
        continue;
      }
      __m512 g = row_scale;
      if (!e.row_scale) {
        g = e.gamma_stride ? _mm512_maskz_loadu_ps(live, e.gamma + n) : _mm512_set1_ps(e.gamma[0]);
        if (e.s) g = _mm512_mask_div_ps(g, live, g, _mm512_set1_ps(e.s[m]));
      }
      __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), g);
      if (e.bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(live, e.bias + n));
      _mm512_mask_storeu_ps(e.out + m * e.ldo + n, live, y);
    }
  }
}

}  // namespace bitops::cpu::amx

#pragma GCC pop_options

#else
namespace bitops::cpu::amx {
bool usable() { return false; }
bool enabled() { return false; }
void set_enabled(int) {}
int64_t x_tiles_bytes(int64_t, int64_t) { return 0; }
void layout_x(const int8_t*, int64_t, int64_t, const int8_t*, int64_t, int64_t, int8_t*) {}
void panel_products(const uint8_t*, int64_t, const int8_t*, int64_t, int32_t*, int64_t) {}
void store_panel(const int32_t*, int64_t, int64_t, int64_t, const int64_t*, int64_t, int64_t, int64_t, const Epilogue&) {}
}  // namespace bitops::cpu::amx
#endif
