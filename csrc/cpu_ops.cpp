// CPU implementations of the bitops ops: argument checks, allocation and
// threading (at::parallel_for over output tiles, or row chunks for packing);
// the math is in kernels/cpu.
#include <ATen/Parallel.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>
#include "checks.h"
#include "tiles.h"
#include "kernels/cpu/amx_kernels.h"
#include "kernels/cpu/cpu_kernels.h"

namespace bitops::glue {
namespace {

using cpu::Tile;

const cpu::KernelTable& K() { return cpu::active_kernels(); }

// The AMX panels lay x out again for every tile: there, fewer and larger tiles (2 a
// thread) measured 1.2-1.6x faster at M = 128-512 on the 2B4T shapes than 8 a thread,
// and from 256 rows of x a thread on, tiles of 256 rows by all of N (ternary_m_block).
bool ternary_amx_runs(int64_t m, int64_t k) {
  return &K() == cpu::avx512vnni_kernels() && m >= 16 && k <= cpu::amx::kMaxK && cpu::amx::enabled();
}
int64_t ternary_tiles_per_thread(int64_t m, int64_t k) { return ternary_amx_runs(m, k) ? 2 : 8; }
int64_t ternary_m_block(int64_t m, int64_t k) {
  constexpr int64_t kAmxPassRows = 256;  // one AMX pass (avx512_ternary.cpp)
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  return ternary_amx_runs(m, k) && m >= kAmxPassRows * threads ? kAmxPassRows : 0;
}

void raise_corrupt(const char* name) {
  TORCH_CHECK_VALUE(false, "bitops: ", name, " is corrupt: it holds the invalid 2-bit code 3 (only codes 0, 1, 2 = "
              "weights -1, 0, +1 are valid); pack weights with bitops.pack_ternary");
}

// Rows of x as float32, one row at a time, in any float dtype, optionally RMS-normalised:
// no whole-tensor conversion in front of the quantiser. The norm is the contract of
// bitops.reference.rms_norm: r = float(1 / sqrt(sum(x^2) / k + eps)) with the sum in double,
// then (x * r) * w in float32.
struct RowSource {
  const void* data = nullptr;
  at::ScalarType dtype = at::kFloat;
  int64_t k = 0;
  const float* norm_weight = nullptr;  // nullptr: no norm
  double eps = 0.0;

  bool plain_f32() const { return dtype == at::kFloat && !norm_weight; }

  // Row m as float32: a pointer into x when it already is one, else converted into buf [k].
  const float* row(int64_t m, float* buf) const {
    if (dtype == at::kFloat) {
      const float* src = static_cast<const float*>(data) + m * k;
      if (!norm_weight) return src;
      std::copy(src, src + k, buf);
    } else if (dtype == at::kBFloat16) {
      const auto* src = static_cast<const c10::BFloat16*>(data) + m * k;
      for (int64_t i = 0; i < k; ++i) buf[i] = static_cast<float>(src[i]);
    } else {
      const auto* src = static_cast<const c10::Half*>(data) + m * k;
      for (int64_t i = 0; i < k; ++i) buf[i] = static_cast<float>(src[i]);
    }
    if (norm_weight) {
      // four running sums: the squares of float32 values are exact in double, and the sum's
      // order only moves bits far below the float32 r computed from it
      double part[4] = {0.0, 0.0, 0.0, 0.0};
      int64_t i = 0;
      for (; i + 4 <= k; i += 4)
        for (int j = 0; j < 4; ++j) part[j] += double(buf[i + j]) * double(buf[i + j]);
      for (; i < k; ++i) part[0] += double(buf[i]) * double(buf[i]);
      const double ss = (part[0] + part[1]) + (part[2] + part[3]);
      const float r = static_cast<float>(1.0 / std::sqrt(ss / double(k) + eps));
      for (int64_t i = 0; i < k; ++i) buf[i] = (buf[i] * r) * norm_weight[i];
    }
    return buf;
  }
};

// The int8 quantiser over a RowSource: xq [M, k], s [M].
std::tuple<at::Tensor, at::Tensor> quantize_rows(const RowSource& src, int64_t m, const at::TensorOptions& opt) {
  auto xq = at::empty({m, src.k}, opt.dtype(at::kChar));
  auto s = at::empty({m}, opt.dtype(at::kFloat));
  int8_t* q = xq.data_ptr<int8_t>();
  float* sp = s.data_ptr<float>();
  const int64_t k = src.k;
  at::parallel_for(0, m, grain_for(k), [&](int64_t m0, int64_t m1) {
    if (src.plain_f32()) return K().quantize_rows(static_cast<const float*>(src.data), k, m0, m1, q, sp);
    std::vector<float> buf(k);
    for (int64_t r = m0; r < m1; ++r) K().quantize_rows(src.row(r, buf.data()), k, 0, 1, q + r * k, sp + r);
  });
  return {xq, s};
}

std::tuple<at::Tensor, at::Tensor> binarize_rows(const RowSource& src, int64_t m, const at::TensorOptions& opt) {
  const int64_t k = src.k, rb = binary_row_bytes(k);
  auto bits = at::empty({m, rb}, opt.dtype(at::kByte));
  auto s = at::empty({m}, opt.dtype(at::kFloat));
  uint8_t* b = bits.data_ptr<uint8_t>();
  float* sp = s.data_ptr<float>();
  at::parallel_for(0, m, grain_for(k), [&](int64_t m0, int64_t m1) {
    if (src.plain_f32()) return K().binarize_rows(static_cast<const float*>(src.data), k, m0, m1, b, sp);
    std::vector<float> buf(k);
    for (int64_t r = m0; r < m1; ++r) K().binarize_rows(src.row(r, buf.data()), k, 0, 1, b + r * rb, sp + r);
  });
  return {bits, s};
}

std::tuple<at::Tensor, at::Tensor> quantize_activations(const at::Tensor& x) {
  check_cpu(x, "x");
  check_float_input(x, "x");
  check_k(x.size(-1));
  auto x2 = x.reshape({-1, x.size(-1)}).contiguous();
  auto [xq, s] = quantize_rows(RowSource{x2.data_ptr(), x2.scalar_type(), x2.size(1)}, x2.size(0), x2.options());
  auto lead = x.sizes().vec();
  auto xq_shape = lead;
  lead.pop_back();
  return {xq.reshape(xq_shape), s.reshape(lead)};
}

std::tuple<at::Tensor, at::Tensor> binarize_activations(const at::Tensor& x) {
  check_cpu(x, "x");
  check_float_input(x, "x");
  check_k(x.size(-1));
  auto x2 = x.reshape({-1, x.size(-1)}).contiguous();
  auto [bits, s] = binarize_rows(RowSource{x2.data_ptr(), x2.scalar_type(), x2.size(1)}, x2.size(0), x2.options());
  auto lead = x.sizes().vec();
  lead.pop_back();
  auto bits_shape = lead;
  bits_shape.push_back(bits.size(1));
  return {bits.reshape(bits_shape), s.reshape(lead)};
}

at::Tensor check_weights_2d(const at::Tensor& wq) {
  check_cpu(wq, "wq");
  check_dtype(wq, at::kChar, "wq");
  TORCH_CHECK_VALUE(wq.dim() == 2, "bitops: wq must be 2-D [N, K], got shape ", wq.sizes());
  check_k(wq.size(1));
  return wq.contiguous();
}

const cpu::PackTable& P() { return cpu::active_pack_kernels(); }

// Packing streams bytes: a chunk of rows touches at least ~1 MiB (about 100 µs at memory
// speed, far above the cost of waking a thread), so small matrices stay on one thread.
constexpr int64_t kPackChunkBytes = int64_t(1) << 20;

// Runs fn(n0, n1) over rows [0, n) in chunks of at least kPackChunkBytes handed out from
// an atomic counter (as for_tiles, so a thread on a busy core takes fewer). fn returns a
// position of its first bad row's value, or -1; the result is the smallest over all
// chunks, the same as one pass in row order would report. Chunks that start after a bad
// position already found are skipped: they cannot hold a smaller one.
template <class F>
int64_t first_bad_over_rows(int64_t n, int64_t bytes_per_row, int64_t pos_per_row, F&& fn) {
  if (n == 0) return -1;
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t grain = std::max<int64_t>(1, kPackChunkBytes / std::max<int64_t>(1, bytes_per_row));
  const int64_t rows = std::max(grain, (n + threads * 4 - 1) / (threads * 4));
  const int64_t chunks = (n + rows - 1) / rows;
  if (chunks == 1 || threads == 1) return fn(int64_t(0), n);
  std::atomic<int64_t> next{0}, best{-1};
  at::parallel_for(0, std::min(threads, chunks), 1, [&](int64_t, int64_t) {
    for (int64_t c = next++; c < chunks; c = next++) {
      const int64_t n0 = c * rows, b = best.load();
      if (b >= 0 && n0 * pos_per_row > b) continue;
      const int64_t bad = fn(n0, std::min(n, n0 + rows));
      if (bad < 0) continue;
      int64_t cur = best.load();
      while ((cur < 0 || bad < cur) && !best.compare_exchange_weak(cur, bad)) {
      }
    }
  });
  return best.load();
}

// transformers BitNet weight [ceil(N/4), K] -> bitops packed [N, ternary_row_bytes(K)].
at::Tensor pack_ternary_from_hf(const at::Tensor& hf_in, int64_t n) {
  check_cpu(hf_in, "weight");
  check_dtype(hf_in, at::kByte, "weight");
  TORCH_CHECK_VALUE(hf_in.dim() == 2, "bitops: weight must be 2-D [ceil(N/4), K], got shape ", hf_in.sizes());
  const int64_t rows = hf_in.size(0), k = hf_in.size(1);
  check_k(k);
  TORCH_CHECK_VALUE(n >= 1 && (rows - 1) * 4 < n && n <= rows * 4, "bitops: weight has ", rows,
                    " rows, which cannot hold out_features=", n);
  auto hf = hf_in.contiguous();
  const int64_t rb = ternary_row_bytes(k);
  auto packed = at::empty({n, rb}, hf.options());
  const uint8_t* src = hf.data_ptr<uint8_t>();
  uint8_t* dst = packed.data_ptr<uint8_t>();
  const int64_t bad = first_bad_over_rows(n, k + rb, 1, [&](int64_t n0, int64_t n1) {
    return cpu::pack_ternary_from_hf(src, rows, k, n0, n1, dst);
  });
  TORCH_CHECK_VALUE(bad < 0, "bitops: packed HF BitNet weights are corrupt: output row ", bad,
                    " holds the invalid code 3");
  return packed;
}

at::Tensor pack_ternary(const at::Tensor& wq_in) {
  auto wq = check_weights_2d(wq_in);
  const int64_t n = wq.size(0), k = wq.size(1), rb = ternary_row_bytes(k);
  auto packed = at::empty({n, rb}, wq.options().dtype(at::kByte));
  const int8_t* src = wq.data_ptr<int8_t>();
  uint8_t* dst = packed.data_ptr<uint8_t>();
  const int64_t bad = first_bad_over_rows(n, k + rb, k, [&](int64_t n0, int64_t n1) {
    return P().pack_ternary(src, k, n0, n1, dst);
  });
  TORCH_CHECK_VALUE(bad < 0, "bitops: wq must hold only -1, 0 and 1 to be packed as ternary, found ",
              bad < 0 ? 0 : int(src[bad]), " at row ", bad / k, ", column ", bad % k);
  return packed;
}

at::Tensor pack_binary(const at::Tensor& wq_in) {
  auto wq = check_weights_2d(wq_in);
  const int64_t n = wq.size(0), k = wq.size(1), rb = binary_row_bytes(k);
  auto packed = at::empty({n, rb}, wq.options().dtype(at::kByte));
  const int8_t* src = wq.data_ptr<int8_t>();
  uint8_t* dst = packed.data_ptr<uint8_t>();
  const int64_t bad = first_bad_over_rows(n, k + rb, k, [&](int64_t n0, int64_t n1) {
    return P().pack_binary(src, k, n0, n1, dst);
  });
  TORCH_CHECK_VALUE(bad < 0, "bitops: wq must hold only -1 and +1 to be packed as binary, found ",
              bad < 0 ? 0 : int(src[bad]), " at row ", bad / k, ", column ", bad % k);
  return packed;
}

at::Tensor unpack_ternary(const at::Tensor& packed_in, int64_t k) {
  check_k(k);
  check_cpu(packed_in, "packed");
  check_packed(packed_in, k, ternary_row_bytes(k), "packed");
  auto packed = packed_in.contiguous();
  const int64_t n = packed.size(0), rb = ternary_row_bytes(k);
  auto wq = at::empty({n, k}, packed.options().dtype(at::kChar));
  const uint8_t* src = packed.data_ptr<uint8_t>();
  int8_t* dst = wq.data_ptr<int8_t>();
  const int64_t bad = first_bad_over_rows(n, k + rb, 1, [&](int64_t n0, int64_t n1) {
    return P().unpack_ternary(src, k, n0, n1, dst);
  });
  TORCH_CHECK_VALUE(bad < 0, "bitops: packed is corrupt: row ", bad, " holds the invalid 2-bit code 3");
  return wq;
}

at::Tensor unpack_binary(const at::Tensor& packed_in, int64_t k) {
  check_k(k);
  check_cpu(packed_in, "packed");
  check_packed(packed_in, k, binary_row_bytes(k), "packed");
  auto packed = packed_in.contiguous();
  const int64_t n = packed.size(0), rb = binary_row_bytes(k);
  auto wq = at::empty({n, k}, packed.options().dtype(at::kChar));
  const uint8_t* src = packed.data_ptr<uint8_t>();
  int8_t* dst = wq.data_ptr<int8_t>();
  first_bad_over_rows(n, k + rb, 1, [&](int64_t n0, int64_t n1) {
    P().unpack_binary(src, k, n0, n1, dst);
    return int64_t(-1);
  });
  return wq;
}

// -1 when every row is canonical (pack(unpack(row)) == row), else the first row that is not.
int64_t validate_ternary(const at::Tensor& packed_in, int64_t k) {
  check_k(k);
  check_cpu(packed_in, "packed");
  check_packed(packed_in, k, ternary_row_bytes(k), "packed");
  auto packed = packed_in.contiguous();
  const int64_t n = packed.size(0), rb = ternary_row_bytes(k);
  const uint8_t* src = packed.data_ptr<uint8_t>();
  return first_bad_over_rows(n, rb, 1, [&](int64_t n0, int64_t n1) { return P().validate_ternary(src, k, n0, n1); });
}

int64_t validate_binary(const at::Tensor& packed_in, int64_t k) {
  check_k(k);
  check_cpu(packed_in, "packed");
  check_packed(packed_in, k, binary_row_bytes(k), "packed");
  auto packed = packed_in.contiguous();
  const int64_t n = packed.size(0), rb = binary_row_bytes(k);
  const uint8_t* src = packed.data_ptr<uint8_t>();
  // Only the last 32-byte block of a row is read (its padding); that one line per row is the traffic.
  const int64_t touched = std::min<int64_t>(rb, 64);
  return first_bad_over_rows(n, touched, 1, [&](int64_t n0, int64_t n1) { return P().validate_binary(src, k, n0, n1); });
}

at::Tensor ternary_matmul_int(const at::Tensor& xq_in, const at::Tensor& packed_in, int64_t k) {
  check_k(k);
  check_cpu(xq_in, "xq");
  check_cpu(packed_in, "packed");
  check_dtype(xq_in, at::kChar, "xq");
  check_last_dim(xq_in, k, "xq");
  check_packed(packed_in, k, ternary_row_bytes(k), "packed");
  auto xq = xq_in.reshape({-1, k}).contiguous();
  auto packed = packed_in.contiguous();
  const int64_t m = xq.size(0), n = packed.size(0);
  auto out = at::empty({m, n}, xq.options().dtype(at::kInt));
  Epilogue e;
  e.out_int = out.data_ptr<int32_t>();
  e.ldo = n;
  const bool ok = for_tiles(m, n, k, [&](Tile t) {
    return K().ternary_gemm_i8(xq.data_ptr<int8_t>(), packed.data_ptr<uint8_t>(), k, t, e);
  }, ternary_tiles_per_thread(m, k), ternary_m_block(m, k));
  if (!ok) raise_corrupt("packed");
  return out.reshape(out_shape(xq_in, n));
}

at::Tensor binary_matmul_int(const at::Tensor& xbits_in, const at::Tensor& wbits_in, int64_t k) {
  check_k(k);
  check_cpu(xbits_in, "xbits");
  check_cpu(wbits_in, "wbits");
  check_dtype(xbits_in, at::kByte, "xbits");
  TORCH_CHECK_VALUE(xbits_in.dim() >= 1 && xbits_in.size(-1) == binary_row_bytes(k), "bitops: xbits must have rows of ",
              binary_row_bytes(k), " bytes for k=", k, ", got shape ", xbits_in.sizes());
  check_packed(wbits_in, k, binary_row_bytes(k), "wbits");
  auto xbits = xbits_in.reshape({-1, binary_row_bytes(k)}).contiguous();
  auto wbits = wbits_in.contiguous();
  const int64_t m = xbits.size(0), n = wbits.size(0);
  auto out = at::empty({m, n}, xbits.options().dtype(at::kInt));
  Epilogue e;
  e.out_int = out.data_ptr<int32_t>();
  e.ldo = n;
  for_tiles(m, n, k / 8, [&](Tile t) {
    K().binary_gemm_bits(xbits.data_ptr<uint8_t>(), wbits.data_ptr<uint8_t>(), k, t, e);
    return true;
  });
  return out.reshape(out_shape(xbits_in, n));
}

// What every linear op shares: checks, flattening, the epilogue's scale and bias, and the
// output in x's dtype. The kernels write float32; for a bf16/fp16 x each tile is rounded
// into the output right after it is computed (while it is in cache), exactly as .to() would.
struct LinearCall {
  at::Tensor x2, packed, scale, bias, out, out_f32, norm_weight, row_scale;
  int64_t m, n, k;
  Epilogue e;
  RowSource rows;

  LinearCall(const at::Tensor& x, const at::Tensor& packed_in, const at::Tensor& scale_in,
             const std::optional<at::Tensor>& bias_in, bool ternary, const char* scale_name) {
    check_cpu(x, "x");
    check_cpu(packed_in, "packed");
    check_cpu(scale_in, scale_name);
    if (bias_in) check_cpu(*bias_in, "bias");
    check_float_input(x, "x");
    k = x.size(-1);
    check_k(k);
    check_packed(packed_in, k, ternary ? ternary_row_bytes(k) : binary_row_bytes(k), "packed");
    n = packed_in.size(0);
    e.gamma_stride = check_scale(scale_in, n, scale_name);
    check_bias(bias_in, n);
    x2 = x.reshape({-1, k}).contiguous();
    m = x2.size(0);
    packed = packed_in.contiguous();
    scale = scale_in.contiguous();
    out = at::empty({m, n}, x2.options());
    out_f32 = x2.scalar_type() == at::kFloat ? out : at::empty({m, n}, x2.options().dtype(at::kFloat));
    e.gamma = scale.data_ptr<float>();
    if (bias_in) {
      bias = bias_in->to(at::kFloat).contiguous();
      e.bias = bias.data_ptr<float>();
    }
    e.out = out_f32.data_ptr<float>();
    e.ldo = n;
    rows.data = x2.data_ptr();
    rows.dtype = x2.scalar_type();
    rows.k = k;
  }

  void set_norm(const at::Tensor& weight, double eps) {
    check_cpu(weight, "norm_weight");
    check_float_input(weight, "norm_weight");
    TORCH_CHECK_VALUE(weight.dim() == 1 && weight.size(0) == k, "bitops: norm_weight must have shape [k=", k,
                      "], got ", weight.sizes());
    TORCH_CHECK_VALUE(std::isfinite(eps) && eps >= 0.0, "bitops: norm eps must be finite and >= 0, got ", eps);
    norm_weight = weight.to(at::kFloat).contiguous();
    rows.norm_weight = norm_weight.data_ptr<float>();
    rows.eps = eps;
  }

  // The activation scales s [M] of x; with one gamma, gamma / s[m] is divided once per row.
  void set_activation_scales(const at::Tensor& s) {
    e.s = s.data_ptr<float>();
    if (e.gamma_stride != 0) return;
    row_scale = at::empty({m}, s.options());
    float* rs = row_scale.data_ptr<float>();
    for (int64_t r = 0; r < m; ++r) rs[r] = e.gamma[0] / e.s[r];
    e.row_scale = rs;
  }

  // x as one float32 [M, k] tensor, for the float-activation kernels.
  const float* x_f32() {
    if (x2.scalar_type() != at::kFloat) x2 = x2.to(at::kFloat);
    return x2.data_ptr<float>();
  }

  // Rounds the tile's float32 results into out (a no-op for a float32 x).
  void finish(Tile t) const {
    if (out_f32.is_same(out)) return;
    const float* src = out_f32.data_ptr<float>();
    for (int64_t r = t.m0; r < t.m1; ++r) {
      const float* a = src + r * n;
      if (out.scalar_type() == at::kBFloat16) {
        auto* b = out.data_ptr<c10::BFloat16>() + r * n;
        for (int64_t j = t.n0; j < t.n1; ++j) b[j] = c10::BFloat16(a[j]);
      } else {
        auto* b = out.data_ptr<c10::Half>() + r * n;
        for (int64_t j = t.n0; j < t.n1; ++j) b[j] = c10::Half(a[j]);
      }
    }
  }

  // Runs kernel(tile) over every tile, then rounds each tile into out; false if any tile failed.
  template <class F>
  bool run(int64_t work_k, F&& kernel, int64_t per_thread = 8, int64_t m_block = 0) {
    return for_tiles(m, n, work_k, [&](Tile t) {
      const bool ok = kernel(t);
      finish(t);
      return ok;
    }, per_thread, m_block);
  }

  at::Tensor result(const at::Tensor& x) const { return out.reshape(out_shape(x, n)); }
};

// y, and the int8 activations it multiplied (xq [..., k], s [...]).
std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_i8(LinearCall& c, const at::Tensor& x) {
  auto [xq, s] = quantize_rows(c.rows, c.m, c.x2.options());
  c.set_activation_scales(s);
  const bool ok = c.run(c.k, [&](Tile t) {
    return K().ternary_gemm_i8(xq.data_ptr<int8_t>(), c.packed.data_ptr<uint8_t>(), c.k, t, c.e);
  }, ternary_tiles_per_thread(c.m, c.k), ternary_m_block(c.m, c.k));
  if (!ok) raise_corrupt("packed");
  return {c.result(x), xq.reshape(x.sizes()), s.reshape(row_shape(x))};
}

at::Tensor ternary_linear_i8(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& gamma,
                             const std::optional<at::Tensor>& bias) {
  LinearCall c(x, packed, gamma, bias, true, "gamma");
  return std::get<0>(ternary_i8(c, x));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_i8_and_act(
    const at::Tensor& x, const at::Tensor& packed, const at::Tensor& gamma, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& norm_weight, double eps) {
  LinearCall c(x, packed, gamma, bias, true, "gamma");
  if (norm_weight) c.set_norm(*norm_weight, eps);
  return ternary_i8(c, x);
}

// RMSNorm (bitops.reference.rms_norm) + int8 quantisation + the ternary GEMM in one call.
at::Tensor ternary_linear_i8_norm(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& gamma,
                                  const std::optional<at::Tensor>& bias, const at::Tensor& norm_weight, double eps) {
  LinearCall c(x, packed, gamma, bias, true, "gamma");
  c.set_norm(norm_weight, eps);
  return std::get<0>(ternary_i8(c, x));
}

at::Tensor ternary_linear_f(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& gamma,
                            const std::optional<at::Tensor>& bias) {
  LinearCall c(x, packed, gamma, bias, true, "gamma");
  const float* xf = c.x_f32();
  const bool ok = c.run(c.k, [&](Tile t) {
    return K().ternary_gemm_f32(xf, c.packed.data_ptr<uint8_t>(), c.k, t, c.e);
  });
  if (!ok) raise_corrupt("packed");
  return c.result(x);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> binary_linear_i8_and_act(
    const at::Tensor& x, const at::Tensor& packed, const at::Tensor& beta, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& norm_weight, double eps) {
  LinearCall c(x, packed, beta, bias, false, "beta");
  if (norm_weight) c.set_norm(*norm_weight, eps);
  auto [xq, s] = quantize_rows(c.rows, c.m, c.x2.options());
  c.set_activation_scales(s);
  c.run(c.k, [&](Tile t) {
    K().binary_gemm_i8(xq.data_ptr<int8_t>(), c.packed.data_ptr<uint8_t>(), c.k, t, c.e);
    return true;
  });
  return {c.result(x), xq.reshape(x.sizes()), s.reshape(row_shape(x))};
}

at::Tensor binary_linear_i8(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& beta,
                            const std::optional<at::Tensor>& bias) {
  return std::get<0>(binary_linear_i8_and_act(x, packed, beta, bias, std::nullopt, 0.0));
}

at::Tensor binary_linear_f(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& beta,
                           const std::optional<at::Tensor>& bias) {
  LinearCall c(x, packed, beta, bias, false, "beta");
  const float* xf = c.x_f32();
  c.run(c.k, [&](Tile t) {
    K().binary_gemm_f32(xf, c.packed.data_ptr<uint8_t>(), c.k, t, c.e);
    return true;
  });
  return c.result(x);
}

at::Tensor binary_linear_b1(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& beta,
                            const std::optional<at::Tensor>& bias) {
  LinearCall c(x, packed, beta, bias, false, "beta");
  auto [bits, s] = binarize_rows(c.rows, c.m, c.x2.options());
  c.set_activation_scales(s);
  c.run(c.k / 8, [&](Tile t) {
    K().binary_gemm_bits(bits.data_ptr<uint8_t>(), c.packed.data_ptr<uint8_t>(), c.k, t, c.e);
    return true;
  });
  return c.result(x);
}

}  // namespace

TORCH_LIBRARY_IMPL(bitops, CPU, m) {
  m.impl("quantize_activations", quantize_activations);
  m.impl("binarize_activations", binarize_activations);
  m.impl("pack_ternary", pack_ternary);
  m.impl("pack_ternary_from_hf", pack_ternary_from_hf);
  m.impl("unpack_ternary", unpack_ternary);
  m.impl("pack_binary", pack_binary);
  m.impl("unpack_binary", unpack_binary);
  m.impl("validate_ternary", validate_ternary);
  m.impl("validate_binary", validate_binary);
  m.impl("ternary_matmul_int", ternary_matmul_int);
  m.impl("binary_matmul_int", binary_matmul_int);
  m.impl("ternary_linear_i8", ternary_linear_i8);
  m.impl("ternary_linear_i8_and_act", ternary_linear_i8_and_act);
  m.impl("binary_linear_i8_and_act", binary_linear_i8_and_act);
  m.impl("ternary_linear_i8_norm", ternary_linear_i8_norm);
  m.impl("ternary_linear_f", ternary_linear_f);
  m.impl("binary_linear_i8", binary_linear_i8);
  m.impl("binary_linear_f", binary_linear_f);
  m.impl("binary_linear_b1", binary_linear_b1);
}

}  // namespace bitops::glue
