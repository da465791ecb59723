// CPU backward of the RMSNorm the linear ops fuse in front of their quantiser
// (bitops.reference.rms_norm): one pass per row over x and the incoming gradient.
#include <ATen/Parallel.h>
#include <cmath>
#include <vector>
#include "checks.h"

namespace bitops::glue {
namespace {

// sum of a[i] * b[i] in double, four running sums (as the forward's sum of squares)
double dot_double(const float* a, const float* b, int64_t k) {
  double part[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t i = 0;
  for (; i + 4 <= k; i += 4)
    for (int j = 0; j < 4; ++j) part[j] += double(a[i + j]) * double(b[i + j]);
  for (; i < k; ++i) part[0] += double(a[i]) * double(b[i]);
  return (part[0] + part[1]) + (part[2] + part[3]);
}

// With r = 1 / sqrt(mean(x^2) + eps) and g = grad * weight:
//   grad_x = (g - x * (r^2 * mean(x * g))) * r,   grad_weight = sum over rows of grad * (x * r).
std::tuple<at::Tensor, at::Tensor> rms_norm_backward(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                     const at::Tensor& weight_in, double eps) {
  check_cpu(grad_in, "grad");
  check_cpu(x_in, "x");
  check_cpu(weight_in, "weight");
  check_float_input(x_in, "x");
  check_float_input(grad_in, "grad");
  check_float_input(weight_in, "weight");
  const int64_t k = x_in.size(-1);
  TORCH_CHECK_VALUE(grad_in.sizes() == x_in.sizes(), "bitops: grad must have x's shape ", x_in.sizes(), ", got ",
                    grad_in.sizes());
  TORCH_CHECK_VALUE(weight_in.dim() == 1 && weight_in.size(0) == k, "bitops: weight must have shape [k=", k, "], got ",
                    weight_in.sizes());
  auto x = x_in.reshape({-1, k}).contiguous().to(at::kFloat);
  auto grad = grad_in.reshape({-1, k}).contiguous().to(at::kFloat);
  auto weight = weight_in.contiguous().to(at::kFloat);
  const int64_t m = x.size(0);
  auto grad_x = at::empty({m, k}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* gp = grad.data_ptr<float>();
  const float* wp = weight.data_ptr<float>();
  float* out = grad_x.data_ptr<float>();
  // grad_weight: a partial sum per chunk of rows, added in chunk order (deterministic)
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(m, (int64_t(1) << 16) / std::max<int64_t>(1, k)));
  const int64_t chunks = m == 0 ? 0 : (m + chunk - 1) / chunk;
  std::vector<float> partial(chunks * k, 0.0f);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<float> g(k);
    for (int64_t c = c0; c < c1; ++c) {
      float* pw = partial.data() + c * k;
      for (int64_t r0 = c * chunk, row = r0; row < std::min(m, r0 + chunk); ++row) {
        const float* xr = xp + row * k;
        const float* gr = gp + row * k;
        const float r = static_cast<float>(1.0 / std::sqrt(dot_double(xr, xr, k) / double(k) + eps));
        for (int64_t i = 0; i < k; ++i) g[i] = gr[i] * wp[i];
        const float c_row = r * r * static_cast<float>(dot_double(xr, g.data(), k) / double(k));
        float* o = out + row * k;
        for (int64_t i = 0; i < k; ++i) {
          o[i] = (g[i] - xr[i] * c_row) * r;
          pw[i] += gr[i] * (xr[i] * r);
        }
      }
    }
  });
  auto grad_weight = at::zeros({k}, x.options());
  float* gw = grad_weight.data_ptr<float>();
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t i = 0; i < k; ++i) gw[i] += partial[c * k + i];
  return {grad_x.reshape(x_in.sizes()), grad_weight};
}

}  // namespace

TORCH_LIBRARY_IMPL(bitops, CPU, m) { m.impl("rms_norm_backward", rms_norm_backward); }

}  // namespace bitops::glue
