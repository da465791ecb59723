// bf16_linear: y = x @ weight.T (+ bias) over a bf16 weight, for few rows of x
// (a model's output head at decode), on the streaming bf16 GEMV (kernels/cpu/bf16_gemv.h).
#include <ATen/ATen.h>
#include <torch/library.h>
#include "checks.h"
#include "kernels/cpu/bf16_gemv.h"
#include "tiles.h"

namespace bitops::glue {
namespace {

at::Tensor bf16_linear(const at::Tensor& x, const at::Tensor& weight_in, const std::optional<at::Tensor>& bias_in) {
  check_cpu(x, "x");
  check_cpu(weight_in, "weight");
  if (bias_in) check_cpu(*bias_in, "bias");
  check_float_input(x, "x");
  check_dtype(weight_in, at::kBFloat16, "weight");
  TORCH_CHECK_VALUE(weight_in.dim() == 2, "bitops: weight must be 2-D [N, K], got shape ", weight_in.sizes());
  const int64_t n = weight_in.size(0), k = weight_in.size(1);
  check_k(k);
  check_last_dim(x, k, "x");
  check_bias(bias_in, n);
  auto weight = weight_in.contiguous();
  auto x2 = x.reshape({-1, k}).to(at::kFloat).contiguous();
  const int64_t m = x2.size(0), kh = (k + 1) / 2;
  // x split by parity (bf16_gemv.h), the odd half's last entry 0 for an odd K.
  auto split = at::zeros({2, m, kh}, x2.options());
  float* xe = split.data_ptr<float>();
  float* xo = xe + m * kh;
  const float* src = x2.data_ptr<float>();
  for (int64_t r = 0; r < m; ++r)
    for (int64_t i = 0; i < k; ++i) ((i & 1) ? xo : xe)[r * kh + i / 2] = src[r * k + i];
  at::Tensor bias;
  if (bias_in) bias = bias_in->to(at::kFloat).contiguous();
  auto out = at::empty({m, n}, x2.options());
  const cpu::Bf16GemvFn gemv = cpu::active_bf16_gemv();
  const auto* w = reinterpret_cast<const uint16_t*>(weight.data_ptr<at::BFloat16>());
  const float* b = bias.defined() ? bias.data_ptr<float>() : nullptr;
  float* o = out.data_ptr<float>();
  for_tiles(m, n, k, [&](Tile t) {
    gemv(xe, xo, w, k, t, b, o, n);
    return true;
  });
  return out.to(x.scalar_type()).reshape(out_shape(x, n));
}

}  // namespace

TORCH_LIBRARY_IMPL(bitops, CPU, m) { m.impl("bf16_linear", bf16_linear); }

}  // namespace bitops::glue
