// The op schemas (one place for every backend) and the Python module stub.
#include <Python.h>
#include <torch/library.h>
#include <cstdlib>
#include <tuple>
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/vnni_kernels.h"
#include "kernels/cpu/amx_kernels.h"
#include "tuning.h"

namespace {
#ifdef BITOPS_WITH_CUDA
constexpr bool kHasCuda = true;
#else
constexpr bool kHasCuda = false;
#endif
std::string cpu_isa() { return bitops::cpu::active_kernels().name; }
bool has_cuda() { return kHasCuda; }

constexpr int64_t kDefaultGemvMaxM = 8;  // measured on H100: benchmarks/results/cuda_*

int64_t env_int(const char* name, int64_t fallback) {
  const char* env = std::getenv(name);
  return env && *env ? std::strtol(env, nullptr, 10) : fallback;
}

// Negative values restore the default (gemv_max_m) or the automatic choice (gemv_fused).
void set_cuda_tuning(int64_t gemv_max_m, int64_t gemv_fused) {
  auto& t = bitops::glue::cuda_tuning();
  t.gemv_max_m = gemv_max_m < 0 ? kDefaultGemvMaxM : std::min<int64_t>(gemv_max_m, 4096);
  t.gemv_fused = gemv_fused < 0 ? -1 : (gemv_fused ? 1 : 0);
}

// The AVX-512 VNNI M = 1 GEMV's read order (vnni_kernels.h): 0 four rows at a time,
// 1 rows in memory order; and the AMX panels of the ternary GEMM (amx_kernels.h): 0 off,
// 1 on where usable. -1: the automatic choice. cpu_tuning() gives the choices in use.
void set_cpu_tuning(int64_t gemv_order, int64_t amx) {
  bitops::cpu::vnni::set_gemv_order(static_cast<int>(gemv_order));
  bitops::cpu::amx::set_enabled(static_cast<int>(amx));
}
std::tuple<int64_t, int64_t> get_cpu_tuning() {
  return {bitops::cpu::vnni::gemv_order(), bitops::cpu::amx::enabled() ? 1 : 0};
}

std::tuple<int64_t, int64_t> get_cuda_tuning() {
  auto& t = bitops::glue::cuda_tuning();
  return {t.gemv_max_m.load(), t.gemv_fused.load()};
}
}  // namespace

namespace bitops::glue {
CudaTuning& cuda_tuning() {
  static CudaTuning* tuning = [] {
    auto* t = new CudaTuning;
    const int64_t max_m = env_int("BITOPS_CUDA_GEMV_MAX_M", kDefaultGemvMaxM);
    t->gemv_max_m = max_m < 0 ? 0 : std::min<int64_t>(max_m, 4096);
    const char* fused = std::getenv("BITOPS_CUDA_GEMV_FUSED");
    t->gemv_fused = fused && fused[0] == '1' ? 1 : fused && fused[0] == '0' ? 0 : -1;
    return t;
  }();
  return *tuning;
}
}  // namespace bitops::glue

TORCH_LIBRARY(bitops, m) {
  m.def("quantize_activations(Tensor x) -> (Tensor, Tensor)");
  m.def("binarize_activations(Tensor x) -> (Tensor, Tensor)");
  m.def("pack_ternary(Tensor wq) -> Tensor");
  m.def("pack_ternary_from_hf(Tensor weight, int out_features) -> Tensor");
  m.def("unpack_ternary(Tensor packed, int k) -> Tensor");
  m.def("pack_binary(Tensor wq) -> Tensor");
  m.def("unpack_binary(Tensor packed, int k) -> Tensor");
  // -1 if packed is in canonical form (pack(unpack(packed)) == packed), else its first bad row.
  m.def("validate_ternary(Tensor packed, int k) -> int");
  m.def("validate_binary(Tensor packed, int k) -> int");
  // A training step's weight quantisation and packing in one pass over w (float [N, K]):
  // ternary codes clamp(round(w / divisor), -1, 1), binary signs; [packed] or, with
  // transposed, [packed, packed W^T] (uint8 [K, row_bytes(N)]: the weights of grad_x).
  m.def("quantize_pack_ternary(Tensor w, Tensor divisor, bool transposed) -> Tensor[]");
  m.def("quantize_pack_binary(Tensor w, bool transposed) -> Tensor[]");
  // scale * Wq as float32 [N, k] (scale: one value or [N]), or rounded to dtype (bfloat16):
  // the weight of the exact grad_x.
  m.def("dequantize_ternary(Tensor packed, int k, Tensor scale, ScalarType? dtype=None) -> Tensor");
  m.def("dequantize_binary(Tensor packed, int k, Tensor scale, ScalarType? dtype=None) -> Tensor");
  m.def("ternary_matmul_int(Tensor xq, Tensor packed, int k) -> Tensor");
  m.def("binary_matmul_int(Tensor xbits, Tensor wbits, int k) -> Tensor");
  m.def("ternary_linear_i8(Tensor x, Tensor packed, Tensor gamma, Tensor? bias) -> Tensor");
  // y = x @ weight.T (+ bias) over a bf16 weight [N, K] on the streaming GEMV; y in x's dtype.
  m.def("bf16_linear(Tensor x, Tensor weight, Tensor? bias) -> Tensor");
  // RMSNorm of x (bitops.reference.rms_norm: weight [k], eps) fused in front of ternary_linear_i8.
  m.def("ternary_linear_i8_norm(Tensor x, Tensor packed, Tensor gamma, Tensor? bias, Tensor norm_weight, float eps) -> Tensor");
  // The int8 linear ops (with the RMSNorm when norm_weight is given), also returning the
  // int8 activations they multiplied (xq, s): what grad_W needs in training. No autograd of
  // their own: BitLinearFunction's forward calls them.
  m.def("ternary_linear_i8_and_act(Tensor x, Tensor packed, Tensor gamma, Tensor? bias, Tensor? norm_weight, float eps) -> (Tensor, Tensor, Tensor)");
  m.def("binary_linear_i8_and_act(Tensor x, Tensor packed, Tensor beta, Tensor? bias, Tensor? norm_weight, float eps) -> (Tensor, Tensor, Tensor)");
  // Gradients of that RMSNorm (bitops.reference.rms_norm) in float32: (grad_x, grad_weight).
  m.def("rms_norm_backward(Tensor grad, Tensor x, Tensor weight, float eps) -> (Tensor, Tensor)");
  // xq / s as float32 (s: one scale per row): the activations the int8 kernels multiplied.
  m.def("dequantize_activations(Tensor xq, Tensor s) -> Tensor");
  m.def("ternary_linear_f(Tensor x, Tensor packed, Tensor gamma, Tensor? bias) -> Tensor");
  m.def("binary_linear_i8(Tensor x, Tensor packed, Tensor beta, Tensor? bias) -> Tensor");
  m.def("binary_linear_f(Tensor x, Tensor packed, Tensor beta, Tensor? bias) -> Tensor");
  m.def("binary_linear_b1(Tensor x, Tensor packed, Tensor beta, Tensor? bias) -> Tensor");
  m.def("cpu_isa() -> str", &cpu_isa);
  m.def("has_cuda() -> bool", &has_cuda);
  m.def("set_cuda_tuning(int gemv_max_m, int gemv_fused) -> ()", &set_cuda_tuning);
  m.def("cuda_tuning() -> (int, int)", &get_cuda_tuning);
  m.def("set_cpu_tuning(int gemv_order, int amx) -> ()", &set_cpu_tuning);
  m.def("cpu_tuning() -> (int, int)", &get_cpu_tuning);
}


// Importing bitops._C loads this library, which registers the ops above.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "bitops native ops (torch.ops.bitops)", -1,
                                      nullptr};
  return PyModule_Create(&module);
}
