// Spreading an output over threads in tiles (cpu_ops.cpp, cpu_dense_ops.cpp).
#pragma once
#include <ATen/Parallel.h>
#include <algorithm>
#include <atomic>
#include "kernels/cpu/cpu_kernels.h"

namespace bitops::glue {

using cpu::Tile;

// Work per parallel chunk at least ~64K multiply-adds, so small problems stay on one thread.
inline int64_t grain_for(int64_t per_item_work) { return std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, per_item_work)); }

// Runs a tile kernel over all of [0, M) x [0, N). Tiles split N only (each weight row
// is read once, and each decoded block serves every row of x), in whole 64-row panels,
// about 8 per thread (per_thread), handed out dynamically from an atomic counter: on a machine
// shared with other processes a thread whose core is busy takes fewer tiles instead
// of holding the others up at the end (static halves measured up to 2x slower here).
// Small problems stay on one thread (>= ~64K multiply-adds per tile).
// Returns false if any tile failed.
// With m_block > 0 the tiles split M instead, m_block rows of x by all of N each: for a kernel
// that lays each tile's rows of x out again (the AMX panels), so x is laid out once in all.
template <class F>
inline bool for_tiles(int64_t m, int64_t n, int64_t k, F&& tile_fn, int64_t per_thread = 8, int64_t m_block = 0) {
  if (m == 0 || n == 0) return true;
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  constexpr int64_t kPanel = 64;
  int64_t rows = std::max((n + threads * per_thread - 1) / (threads * per_thread), grain_for(m * k));
  if (n > kPanel) rows = (rows + kPanel - 1) / kPanel * kPanel;
  const bool split_m = m_block > 0;
  const int64_t tiles = split_m ? (m + m_block - 1) / m_block : (n + rows - 1) / rows;
  std::atomic<int64_t> next{0};
  std::atomic<bool> ok{true};
  at::parallel_for(0, std::min(threads, tiles), 1, [&](int64_t, int64_t) {
    for (int64_t t = next++; t < tiles; t = next++) {
      const Tile tile = split_m ? Tile{t * m_block, std::min(m, (t + 1) * m_block), 0, n}
                                : Tile{0, m, t * rows, std::min(n, (t + 1) * rows)};
      if (!tile_fn(tile)) ok = false;
    }
  });
  return ok;
}

}  // namespace bitops::glue
