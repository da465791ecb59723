// CPU glue of a training step's backward: the RMSNorm the linear ops fuse in front of their
// quantiser (bitops.reference.rms_norm), and the dequantised int8 activations grad_W needs.
#include <ATen/Parallel.h>
#include <cmath>
#include <vector>
#include "checks.h"

namespace bitops::glue {
namespace {

constexpr int kLanes = 8;  // independent running sums: the loops vectorise without reordering

// (sum of a[i]^2 in double, as the forward's; sum of a[i] * b[i] in float32), kLanes running sums each.
std::pair<double, float> square_and_dot(const float* a, const float* b, int64_t k) {
  double sq[kLanes] = {};
  float dot[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= k; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      sq[j] += double(a[i + j]) * double(a[i + j]);
      dot[j] += a[i + j] * b[i + j];
    }
  for (; i < k; ++i) sq[0] += double(a[i]) * double(a[i]), dot[0] += a[i] * b[i];
  double s = 0.0;
  float d = 0.0f;
  for (int j = 0; j < kLanes; ++j) s += sq[j], d += dot[j];
  return {s, d};
}

// With r = 1 / sqrt(mean(x^2) + eps) and g = grad * weight:
//   grad_x = (g - x * (r^2 * mean(x * g))) * r,   grad_weight = sum over rows of grad * (x * r).
// r as the forward computes it (a double sum of squares: no overflow for large x), the rest in float32.
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
  const float inv_k = 1.0f / float(k);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<float> g(k);
    for (int64_t c = c0; c < c1; ++c) {
      float* pw = partial.data() + c * k;
      for (int64_t r0 = c * chunk, row = r0; row < std::min(m, r0 + chunk); ++row) {
        const float* xr = xp + row * k;
        const float* gr = gp + row * k;
        for (int64_t i = 0; i < k; ++i) g[i] = gr[i] * wp[i];
        const auto [sq, dot] = square_and_dot(xr, g.data(), k);
        const float r = static_cast<float>(1.0 / std::sqrt(sq / double(k) + eps));  // the forward's r
        const float c_row = r * r * (dot * inv_k);
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

// xq [..., k] / s [...] as float32: the activations the int8 kernels multiplied (a true division,
// as bitops.reference and the straight-through quantiser compute them).
at::Tensor dequantize_activations(const at::Tensor& xq_in, const at::Tensor& s_in) {
  check_cpu(xq_in, "xq");
  check_cpu(s_in, "s");
  check_dtype(xq_in, at::kChar, "xq");
  check_dtype(s_in, at::kFloat, "s");
  TORCH_CHECK_VALUE(xq_in.dim() >= 1 && s_in.sizes() == row_shape(xq_in), "bitops: s must have shape ",
                    row_shape(xq_in), " (one scale per row of xq), got ", s_in.sizes());
  const int64_t k = xq_in.size(-1);
  auto xq = xq_in.reshape({-1, k}).contiguous();
  auto s = s_in.reshape({-1}).contiguous();
  const int64_t m = xq.size(0);
  auto out = at::empty({m, k}, xq.options().dtype(at::kFloat));
  const int8_t* q = xq.data_ptr<int8_t>();
  const float* sp = s.data_ptr<float>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, m, std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, k)), [&](int64_t m0, int64_t m1) {
    for (int64_t r = m0; r < m1; ++r) {
      const float sr = sp[r];
      for (int64_t i = 0; i < k; ++i) o[r * k + i] = float(q[r * k + i]) / sr;
    }
  });
  return out.reshape(xq_in.sizes());
}

}  // namespace

TORCH_LIBRARY_IMPL(bitops, CPU, m) {
  m.impl("rms_norm_backward", rms_norm_backward);
  m.impl("dequantize_activations", dequantize_activations);
}

}  // namespace bitops::glue
