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
}  // namespace bitops::cpu::amx
#endif
