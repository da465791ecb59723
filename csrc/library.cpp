// The op schemas (one place for every backend) and the Python module stub.
#include <Python.h>
#include <torch/library.h>
#include "kernels/cpu/cpu_kernels.h"

namespace {
#ifdef BITOPS_WITH_CUDA
constexpr bool kHasCuda = true;
#else
constexpr bool kHasCuda = false;
#endif
std::string cpu_isa() { return bitops::cpu::active_kernels().name; }
bool has_cuda() { return kHasCuda; }
}  // namespace

TORCH_LIBRARY(bitops, m) {
  m.def("quantize_activations(Tensor x) -> (Tensor, Tensor)");
  m.def("binarize_activations(Tensor x) -> (Tensor, Tensor)");
  m.def("pack_ternary(Tensor wq) -> Tensor");
  m.def("unpack_ternary(Tensor packed, int k) -> Tensor");
  m.def("pack_binary(Tensor wq) -> Tensor");
  m.def("unpack_binary(Tensor packed, int k) -> Tensor");
  // -1 if packed is in canonical form (pack(unpack(packed)) == packed), else its first bad row.
  m.def("validate_ternary(Tensor packed, int k) -> int");
  m.def("validate_binary(Tensor packed, int k) -> int");
  m.def("ternary_matmul_int(Tensor xq, Tensor packed, int k) -> Tensor");
  m.def("binary_matmul_int(Tensor xbits, Tensor wbits, int k) -> Tensor");
  m.def("ternary_linear_i8(Tensor x, Tensor packed, Tensor gamma, Tensor? bias) -> Tensor");
  m.def("ternary_linear_f(Tensor x, Tensor packed, Tensor gamma, Tensor? bias) -> Tensor");
  m.def("binary_linear_i8(Tensor x, Tensor packed, Tensor beta, Tensor? bias) -> Tensor");
  m.def("binary_linear_f(Tensor x, Tensor packed, Tensor beta, Tensor? bias) -> Tensor");
  m.def("binary_linear_b1(Tensor x, Tensor packed, Tensor beta, Tensor? bias) -> Tensor");
  m.def("cpu_isa() -> str", &cpu_isa);
  m.def("has_cuda() -> bool", &has_cuda);
}


// Importing bitops._C loads this library, which registers the ops above.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "bitops native ops (torch.ops.bitops)", -1,
                                      nullptr};
  return PyModule_Create(&module);
}
