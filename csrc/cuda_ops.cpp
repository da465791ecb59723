// CUDA implementations of the bitops ops: argument checks (checks.h), device
// guard, allocation on the current stream, and the choice between
//   - the small-M GEMV (kernels/cuda/gemv.cu): quantise/binarise the
//     activations and multiply with the packed weights, in one fused launch
//     (M <= 2) or with the activations quantised once into a workspace by a
//     small kernel ahead of the GEMV (M > 2; PDL on sm_90+); and
//   - the tensor-core path for larger M: quantise the activations to a padded
//     int8 matrix, decode the weights to int8, torch._int_mm (cuBLASLt int8),
//     then the float epilogue kernel.
// Float-activation ops decode to float32 and use cuBLAS (at::mm) in float32.
// The math lives in kernels/cuda; every launch is checked here.
#ifdef BITOPS_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdlib>
#include <limits>

#include "checks.h"
#include "tuning.h"
#include "kernels/cuda/cuda_kernels.h"

namespace bitops::glue {
namespace {

namespace bc = bitops::cuda;
constexpr int64_t kNoBad = std::numeric_limits<int64_t>::max();

void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.is_cuda(), "bitops: ", name, " must be a CUDA tensor here, got ", t.device());
  check_storage(t, name);
}

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "bitops: CUDA kernel ", what, " failed: ", cudaGetErrorString(err));
}

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

bc::DType float_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return bc::DType::F32;
    case at::kHalf: return bc::DType::F16;
    case at::kBFloat16: return bc::DType::BF16;
    default: TORCH_CHECK_TYPE(false, "bitops: unsupported dtype ", c10::toString(t.scalar_type()));
  }
  return bc::DType::F32;
}

int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// Largest M served by the fused kernel (beyond it: tensor cores). Measured on
// H100 (benchmarks/results/cuda_*); BITOPS_CUDA_GEMV_MAX_M or set_cuda_tuning overrides it.
int64_t gemv_max_m() { return cuda_tuning().gemv_max_m.load(std::memory_order_relaxed); }

// Float activations on the GEMV path: quantised inside every block of the one
// fused kernel, or once by a small kernel ahead of the GEMV (a workspace; PDL).
// Measured on H100 (benchmarks/results/cuda_bench.md): fused is faster at
// M <= 2 (4096x4096, M=1: 5.9 vs 11.7 us), the pre-quantised path from M = 4
// (M=8: 15.8 vs 26.2 us). BITOPS_CUDA_GEMV_FUSED=1 / =0 (or set_cuda_tuning) forces one of them.
bool gemv_fused(int64_t m) {
  const int64_t forced = cuda_tuning().gemv_fused.load(std::memory_order_relaxed);
  return forced < 0 ? m <= 2 : forced == 1;
}

bool use_gemv(bc::Kind kind, int64_t m, int64_t k, int device) {
  return m <= gemv_max_m() && bc::gemv_supported(kind, k, device);
}

// The 16-byte loads of the GEMV kernel need an aligned buffer (a view with an
// odd storage offset gets copied).
at::Tensor aligned_packed(const at::Tensor& p) {
  auto c = p.contiguous();
  if (reinterpret_cast<uintptr_t>(c.data_ptr()) % 16 != 0) c = c.clone();
  return c;
}

// torch._int_mm needs M > 16 and K, N multiples of 8: rows of x are padded to
// 17 with zeros, K to the packed block (zeros), N to a multiple of 8.
int64_t tc_rows(int64_t m) { return std::max<int64_t>(m, 17); }

// acc[Mp, Np] = xq[Mp, Kp] @ decode(packed)[Np, Kp]^T on int8 tensor cores.
at::Tensor tc_product(const at::Tensor& xq, const at::Tensor& packed, bool ternary, int64_t n, int64_t k) {
  const int64_t kp = xq.size(1), np = round_up(n, 8);
  auto wd = at::empty({np, kp}, xq.options());
  if (ternary)
    check_launch(bc::launch_decode_ternary(packed.data_ptr<uint8_t>(), n, k, bc::DType::I8, wd.data_ptr(), kp, kp, np,
                                           nullptr, stream()),
                 "decode_ternary");
  else
    check_launch(bc::launch_decode_binary(packed.data_ptr<uint8_t>(), n, k, bc::DType::I8, wd.data_ptr(), kp, kp, np,
                                          stream()),
                 "decode_binary");
  return at::_int_mm(xq, wd.t());
}

// [..., k] float tensor -> contiguous [M, k] in its own dtype (the kernels read all three).
at::Tensor as_rows(const at::Tensor& x) { return x.reshape({-1, x.size(-1)}).contiguous(); }

std::tuple<at::Tensor, at::Tensor> quantize_activations(const at::Tensor& x) {
  check_cuda(x, "x");
  check_float_input(x, "x");
  const int64_t k = x.size(-1);
  check_k(k);
  c10::cuda::CUDAGuard guard(x.device());
  auto x2 = as_rows(x);
  const int64_t m = x2.size(0);
  auto xq = at::empty({m, k}, x2.options().dtype(at::kChar));
  auto s = at::empty({m}, x2.options().dtype(at::kFloat));
  check_launch(bc::launch_quantize_rows(float_dtype(x2), x2.data_ptr(), k, m, k, false, xq.data_ptr<int8_t>(), k, k,
                                        s.data_ptr<float>(), stream()),
               "quantize_activations");
  auto lead = x.sizes().vec();
  auto xq_shape = lead;
  lead.pop_back();
  return {xq.reshape(xq_shape), s.reshape(lead)};
}

std::tuple<at::Tensor, at::Tensor> binarize_activations(const at::Tensor& x) {
  check_cuda(x, "x");
  check_float_input(x, "x");
  const int64_t k = x.size(-1);
  check_k(k);
  c10::cuda::CUDAGuard guard(x.device());
  auto x2 = as_rows(x);
  const int64_t m = x2.size(0), rb = binary_row_bytes(k);
  auto bits = at::empty({m, rb}, x2.options().dtype(at::kByte));
  auto s = at::empty({m}, x2.options().dtype(at::kFloat));
  check_launch(bc::launch_binarize_rows(float_dtype(x2), x2.data_ptr(), k, m, k, bits.data_ptr<uint8_t>(),
                                        s.data_ptr<float>(), stream()),
               "binarize_activations");
  auto lead = x.sizes().vec();
  lead.pop_back();
  auto bits_shape = lead;
  bits_shape.push_back(rb);
  return {bits.reshape(bits_shape), s.reshape(lead)};
}

at::Tensor check_weights_2d(const at::Tensor& wq) {
  check_cuda(wq, "wq");
  check_dtype(wq, at::kChar, "wq");
  TORCH_CHECK_VALUE(wq.dim() == 2, "bitops: wq must be 2-D [N, K], got shape ", wq.sizes());
  check_k(wq.size(1));
  return wq.contiguous();
}

// Packing is not on the hot path: it syncs once to report an invalid value.
int64_t read_bad(const at::Tensor& bad) { return bad.item<int64_t>(); }

at::Tensor pack_ternary(const at::Tensor& wq_in) {
  auto wq = check_weights_2d(wq_in);
  c10::cuda::CUDAGuard guard(wq.device());
  const int64_t n = wq.size(0), k = wq.size(1);
  auto packed = at::empty({n, ternary_row_bytes(k)}, wq.options().dtype(at::kByte));
  auto bad = at::full({1}, kNoBad, wq.options().dtype(at::kLong));
  check_launch(bc::launch_pack_ternary(wq.data_ptr<int8_t>(), n, k, packed.data_ptr<uint8_t>(),
                                       reinterpret_cast<unsigned long long*>(bad.data_ptr<int64_t>()), stream()),
               "pack_ternary");
  const int64_t b = read_bad(bad);
  TORCH_CHECK_VALUE(b == kNoBad, "bitops: wq must hold only -1, 0 and 1 to be packed as ternary, found ",
                    b == kNoBad ? 0 : int(wq.view({-1})[b].item<int8_t>()), " at row ", b / k, ", column ", b % k);
  return packed;
}

at::Tensor pack_binary(const at::Tensor& wq_in) {
  auto wq = check_weights_2d(wq_in);
  c10::cuda::CUDAGuard guard(wq.device());
  const int64_t n = wq.size(0), k = wq.size(1);
  auto packed = at::empty({n, binary_row_bytes(k)}, wq.options().dtype(at::kByte));
  auto bad = at::full({1}, kNoBad, wq.options().dtype(at::kLong));
  check_launch(bc::launch_pack_binary(wq.data_ptr<int8_t>(), n, k, packed.data_ptr<uint8_t>(),
                                      reinterpret_cast<unsigned long long*>(bad.data_ptr<int64_t>()), stream()),
               "pack_binary");
  const int64_t b = read_bad(bad);
  TORCH_CHECK_VALUE(b == kNoBad, "bitops: wq must hold only -1 and +1 to be packed as binary, found ",
                    b == kNoBad ? 0 : int(wq.view({-1})[b].item<int8_t>()), " at row ", b / k, ", column ", b % k);
  return packed;
}

// unpack_ternary checks for the invalid code 3 (one sync), unlike the matmul kernels.
at::Tensor unpack_ternary(const at::Tensor& packed_in, int64_t k) {
  check_k(k);
  check_cuda(packed_in, "packed");
  check_packed(packed_in, k, ternary_row_bytes(k), "packed");
  c10::cuda::CUDAGuard guard(packed_in.device());
  auto packed = packed_in.contiguous();
  const int64_t n = packed.size(0);
  auto wq = at::empty({n, k}, packed.options().dtype(at::kChar));
  auto bad = at::full({1}, kNoBad, packed.options().dtype(at::kLong));
  check_launch(bc::launch_decode_ternary(packed.data_ptr<uint8_t>(), n, k, bc::DType::I8, wq.data_ptr(), k, k, n,
                                         reinterpret_cast<unsigned long long*>(bad.data_ptr<int64_t>()), stream()),
               "unpack_ternary");
  const int64_t b = read_bad(bad);
  TORCH_CHECK_VALUE(b == kNoBad, "bitops: packed is corrupt: row ", b, " holds the invalid 2-bit code 3");
  return wq;
}

at::Tensor unpack_binary(const at::Tensor& packed_in, int64_t k) {
  check_k(k);
  check_cuda(packed_in, "packed");
  check_packed(packed_in, k, binary_row_bytes(k), "packed");
  c10::cuda::CUDAGuard guard(packed_in.device());
  auto packed = packed_in.contiguous();
  const int64_t n = packed.size(0);
  auto wq = at::empty({n, k}, packed.options().dtype(at::kChar));
  check_launch(bc::launch_decode_binary(packed.data_ptr<uint8_t>(), n, k, bc::DType::I8, wq.data_ptr(), k, k, n,
                                        stream()),
               "unpack_binary");
  return wq;
}

at::Tensor ternary_matmul_int(const at::Tensor& xq_in, const at::Tensor& packed_in, int64_t k) {
  check_k(k);
  check_cuda(xq_in, "xq");
  check_cuda(packed_in, "packed");
  check_same_device(xq_in, packed_in, "xq", "packed");
  check_dtype(xq_in, at::kChar, "xq");
  check_last_dim(xq_in, k, "xq");
  check_packed(packed_in, k, ternary_row_bytes(k), "packed");
  c10::cuda::CUDAGuard guard(xq_in.device());
  auto xq = xq_in.reshape({-1, k}).contiguous();
  auto packed = aligned_packed(packed_in);
  const int64_t m = xq.size(0), n = packed.size(0);
  auto out = at::empty({m, n}, xq.options().dtype(at::kInt));
  if (m > 0 && n > 0) {
    const int device = xq.device().index();
    if (use_gemv(bc::Kind::Ternary, m, k, device)) {
      bc::GemvArgs a;
      a.kind = bc::Kind::Ternary;
      a.x_type = bc::DType::I8;
      a.x = xq.data_ptr();
      a.ldx = k;
      a.w = packed.data_ptr<uint8_t>();
      a.M = m;
      a.N = n;
      a.K = k;
      a.out = out.data_ptr();
      check_launch(bc::launch_gemv(a, device, stream()), "ternary_matmul_int (gemv)");
    } else {
      const int64_t mp = tc_rows(m), kp = ternary_row_bytes(k) * 4;
      auto xpad = at::zeros({mp, kp}, xq.options());
      xpad.narrow(0, 0, m).narrow(1, 0, k).copy_(xq);
      out.copy_(tc_product(xpad, packed, true, n, k).narrow(0, 0, m).narrow(1, 0, n));
    }
  }
  return out.reshape(out_shape(xq_in, n));
}

at::Tensor binary_matmul_int(const at::Tensor& xbits_in, const at::Tensor& wbits_in, int64_t k) {
  check_k(k);
  check_cuda(xbits_in, "xbits");
  check_cuda(wbits_in, "wbits");
  check_same_device(xbits_in, wbits_in, "xbits", "wbits");
  check_dtype(xbits_in, at::kByte, "xbits");
  const int64_t rb = binary_row_bytes(k);
  TORCH_CHECK_VALUE(xbits_in.dim() >= 1 && xbits_in.size(-1) == rb, "bitops: xbits must have rows of ", rb,
                    " bytes for k=", k, ", got shape ", xbits_in.sizes());
  check_packed(wbits_in, k, rb, "wbits");
  c10::cuda::CUDAGuard guard(xbits_in.device());
  auto xbits = xbits_in.reshape({-1, rb}).contiguous();
  auto wbits = aligned_packed(wbits_in);
  const int64_t m = xbits.size(0), n = wbits.size(0);
  auto out = at::empty({m, n}, xbits.options().dtype(at::kInt));
  if (m > 0 && n > 0) {
    const int device = xbits.device().index();
    if (use_gemv(bc::Kind::BinaryB1, m, k, device)) {
      bc::GemvArgs a;
      a.kind = bc::Kind::BinaryB1;
      a.x_type = bc::DType::Bits;
      a.x = xbits.data_ptr();
      a.ldx = rb;
      a.w = wbits.data_ptr<uint8_t>();
      a.M = m;
      a.N = n;
      a.K = k;
      a.out = out.data_ptr();
      check_launch(bc::launch_gemv(a, device, stream()), "binary_matmul_int (gemv)");
    } else {
      const int64_t mp = tc_rows(m), kp = rb * 8;
      auto xd = at::empty({mp, kp}, xbits.options().dtype(at::kChar));
      check_launch(bc::launch_decode_binary(xbits.data_ptr<uint8_t>(), m, k, bc::DType::I8, xd.data_ptr(), kp, kp, mp,
                                            stream()),
                   "decode_binary (xbits)");
      out.copy_(tc_product(xd, wbits, false, n, k).narrow(0, 0, m).narrow(1, 0, n));
    }
  }
  return out.reshape(out_shape(xbits_in, n));
}

// What every linear op shares: checks, device guard, flattening, scale and bias.
struct LinearCall {
  c10::cuda::OptionalCUDAGuard guard;
  at::Tensor x2, packed, scale, bias, out;
  int64_t m = 0, n = 0, k = 0, gamma_stride = 0;
  int device = 0;

  LinearCall(const at::Tensor& x, const at::Tensor& packed_in, const at::Tensor& scale_in,
             const std::optional<at::Tensor>& bias_in, bool ternary, const char* scale_name) {
    check_cuda(x, "x");
    guard.set_device(x.device());
    check_cuda(packed_in, "packed");
    check_cuda(scale_in, scale_name);
    check_same_device(x, packed_in, "x", "packed");
    check_same_device(x, scale_in, "x", scale_name);
    if (bias_in) {
      check_cuda(*bias_in, "bias");
      check_same_device(x, *bias_in, "x", "bias");
    }
    check_float_input(x, "x");
    k = x.size(-1);
    check_k(k);
    check_packed(packed_in, k, ternary ? ternary_row_bytes(k) : binary_row_bytes(k), "packed");
    n = packed_in.size(0);
    gamma_stride = check_scale(scale_in, n, scale_name);
    check_bias(bias_in, n);
    x2 = as_rows(x);
    m = x2.size(0);
    packed = aligned_packed(packed_in);
    scale = scale_in.contiguous();
    if (bias_in) bias = bias_in->to(at::kFloat).contiguous();
    out = at::empty({m, n}, x2.options());
    device = x.device().index();
  }

  bool empty() const { return m == 0 || n == 0; }
  const float* bias_ptr() const { return bias.defined() ? bias.data_ptr<float>() : nullptr; }

  bc::GemvArgs gemv(bc::Kind kind) const {
    bc::GemvArgs a;
    a.kind = kind;
    a.x_type = float_dtype(x2);
    a.x = x2.data_ptr();
    a.ldx = k;
    a.w = packed.data_ptr<uint8_t>();
    a.M = m;
    a.N = n;
    a.K = k;
    a.gamma = scale.data_ptr<float>();
    a.gamma_stride = gamma_stride;
    a.bias = bias_ptr();
    a.out = out.data_ptr();
    return a;
  }

  // Integer activations on tensor cores: quantise (or sign) into a padded int8
  // matrix, int8 GEMM against the decoded weights, epilogue into `out`.
  void tensor_core(bool ternary, bool sign) {
    const int64_t mp = tc_rows(m);
    const int64_t kp = ternary ? ternary_row_bytes(k) * 4 : binary_row_bytes(k) * 8;
    auto xq = at::empty({mp, kp}, x2.options().dtype(at::kChar));
    if (mp > m) xq.narrow(0, m, mp - m).zero_();
    auto s = at::empty({m}, x2.options().dtype(at::kFloat));
    check_launch(bc::launch_quantize_rows(float_dtype(x2), x2.data_ptr(), k, m, k, sign, xq.data_ptr<int8_t>(), kp, kp,
                                          s.data_ptr<float>(), stream()),
                 "quantize (tensor-core path)");
    auto acc = tc_product(xq, packed, ternary, n, k);
    check_launch(bc::launch_epilogue(bc::DType::I32, acc.data_ptr(), acc.size(1), m, n, s.data_ptr<float>(),
                                     scale.data_ptr<float>(), gamma_stride, bias_ptr(), float_dtype(out),
                                     out.data_ptr(), stream()),
                 "epilogue");
  }

  // Float activations: decode to float32, cuBLAS float32 GEMM, epilogue.
  void float_blas(bool ternary) {
    auto wf = at::empty({n, k}, x2.options().dtype(at::kFloat));
    if (ternary)
      check_launch(bc::launch_decode_ternary(packed.data_ptr<uint8_t>(), n, k, bc::DType::F32, wf.data_ptr(), k, k, n,
                                             nullptr, stream()),
                   "decode_ternary (float)");
    else
      check_launch(bc::launch_decode_binary(packed.data_ptr<uint8_t>(), n, k, bc::DType::F32, wf.data_ptr(), k, k, n,
                                            stream()),
                   "decode_binary (float)");
    auto acc = at::mm(x2.to(at::kFloat), wf.t()).contiguous();
    check_launch(bc::launch_epilogue(bc::DType::F32, acc.data_ptr(), n, m, n, nullptr, scale.data_ptr<float>(),
                                     gamma_stride, bias_ptr(), float_dtype(out), out.data_ptr(), stream()),
                 "epilogue");
  }

  at::Tensor result(const at::Tensor& x) const { return out.reshape(out_shape(x, n)); }
};

at::Tensor linear_int(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scale,
                      const std::optional<at::Tensor>& bias, bc::Kind kind) {
  const bool ternary = kind == bc::Kind::Ternary;
  LinearCall c(x, packed, scale, bias, ternary, ternary ? "gamma" : "beta");
  if (c.empty()) return c.result(x);
  if (use_gemv(kind, c.m, c.k, c.device)) {
    auto a = c.gemv(kind);
    // Workspace for quantising the activations once (small kernel + GEMV);
    // none: the single fused kernel.
    at::Tensor ws;
    if (!gemv_fused(c.m)) {
      const int64_t bytes = bc::gemv_workspace_bytes(kind, a.x_type, a.M, a.K);
      if (bytes > 0) {
        ws = at::empty({bytes}, c.x2.options().dtype(at::kByte));
        a.workspace = ws.data_ptr();
      }
    }
    check_launch(bc::launch_gemv(a, c.device, stream()), "linear (gemv)");
  } else {
    c.tensor_core(ternary, kind == bc::Kind::BinaryB1);
  }
  return c.result(x);
}

at::Tensor ternary_linear_i8(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& gamma,
                             const std::optional<at::Tensor>& bias) {
  return linear_int(x, packed, gamma, bias, bc::Kind::Ternary);
}

at::Tensor binary_linear_i8(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& beta,
                            const std::optional<at::Tensor>& bias) {
  return linear_int(x, packed, beta, bias, bc::Kind::BinaryI8);
}

at::Tensor binary_linear_b1(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& beta,
                            const std::optional<at::Tensor>& bias) {
  return linear_int(x, packed, beta, bias, bc::Kind::BinaryB1);
}

at::Tensor ternary_linear_f(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& gamma,
                            const std::optional<at::Tensor>& bias) {
  LinearCall c(x, packed, gamma, bias, true, "gamma");
  if (!c.empty()) c.float_blas(true);
  return c.result(x);
}

at::Tensor binary_linear_f(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& beta,
                           const std::optional<at::Tensor>& bias) {
  LinearCall c(x, packed, beta, bias, false, "beta");
  if (!c.empty()) c.float_blas(false);
  return c.result(x);
}

}  // namespace

TORCH_LIBRARY_IMPL(bitops, CUDA, m) {
  m.impl("quantize_activations", quantize_activations);
  m.impl("binarize_activations", binarize_activations);
  m.impl("pack_ternary", pack_ternary);
  m.impl("unpack_ternary", unpack_ternary);
  m.impl("pack_binary", pack_binary);
  m.impl("unpack_binary", unpack_binary);
  m.impl("ternary_matmul_int", ternary_matmul_int);
  m.impl("binary_matmul_int", binary_matmul_int);
  m.impl("ternary_linear_i8", ternary_linear_i8);
  m.impl("ternary_linear_f", ternary_linear_f);
  m.impl("binary_linear_i8", binary_linear_i8);
  m.impl("binary_linear_f", binary_linear_f);
  m.impl("binary_linear_b1", binary_linear_b1);
}

}  // namespace bitops::glue
#endif  // BITOPS_WITH_CUDA
