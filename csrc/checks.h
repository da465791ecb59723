// Argument checks shared by the CPU and CUDA glue. Every message names the
// argument, what was expected and what was given. Wrong dtypes raise
// TypeError, everything else ValueError, as the Python oracle does.
#pragma once
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>
#include "kernels/layout.h"

namespace bitops::glue {

// The name Python users know ("float32", "int8"), not the C++ one ("Float", "Char").
inline std::string dtype_name(at::ScalarType st) { return std::string(c10::getDtypeNames(st).first); }

inline void check_k(int64_t k) {
  TORCH_CHECK_VALUE(k >= 1 && k <= kMaxK, "bitops: k must be in [1, ", kMaxK,
              "] so that int32 accumulation stays exact, got k=", k);
}

inline void check_dtype(const at::Tensor& t, at::ScalarType want, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == want, "bitops: ", name, " must be ", dtype_name(want), ", got ",
              dtype_name(t.scalar_type()));
}

inline void check_float_input(const at::Tensor& x, const char* name) {
  const auto st = x.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kHalf || st == at::kBFloat16, "bitops: ", name,
              " must be float32, float16 or bfloat16, got ", dtype_name(st));
  TORCH_CHECK_VALUE(x.dim() >= 1, "bitops: ", name, " must have at least one dimension, got a scalar");
}

// A tensor whose storage was shrunk under it (untyped_storage().resize_(), as FSDP does
// to free parameters) still reports its old shape: reading it would run past the buffer.
inline void check_storage(const at::Tensor& t, const char* name) {
  if (t.numel() == 0) return;
  const auto need = at::detail::computeStorageNbytes(t.sizes(), t.strides(), t.itemsize(), t.storage_offset());
  TORCH_CHECK_VALUE(t.has_storage() && t.storage().nbytes() >= need, "bitops: ", name, " of shape ", t.sizes(),
              " needs ", need, " bytes of storage, but its storage holds ",
              t.has_storage() ? t.storage().nbytes() : 0, " (was it resized or freed?)");
}

// Every input of a CPU op passes here: on the CPU, and its data really there.
inline void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), "bitops: ", name, " must be a CPU tensor here, got ", t.device());
  check_storage(t, name);
}

inline void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* name_a, const char* name_b) {
  TORCH_CHECK_VALUE(a.device() == b.device(), "bitops: ", name_a, " and ", name_b, " must be on the same device, got ",
              a.device(), " and ", b.device());
}

// A packed weight tensor: uint8 [N, row_bytes(k)].
inline void check_packed(const at::Tensor& p, int64_t k, int64_t row_bytes, const char* name) {
  check_dtype(p, at::kByte, name);
  TORCH_CHECK_VALUE(p.dim() == 2, "bitops: ", name, " must be 2-D [N, row_bytes], got ", p.dim(), " dimensions");
  TORCH_CHECK_VALUE(p.size(1) == row_bytes, "bitops: ", name, " has rows of ", p.size(1), " bytes, but k=", k, " needs ",
              row_bytes, " bytes per row");
}

// A weight scale: float32 holding one value, or [N] values.
inline int64_t check_scale(const at::Tensor& g, int64_t n, const char* name) {
  check_dtype(g, at::kFloat, name);
  TORCH_CHECK_VALUE(g.numel() == 1 || (g.dim() == 1 && g.size(0) == n), "bitops: ", name,
              " must hold one value or [N=", n, "] values, got shape ", g.sizes());
  return g.numel() == 1 ? 0 : 1;  // stride between output rows
}

inline void check_bias(const std::optional<at::Tensor>& bias, int64_t n) {
  if (!bias) return;
  const auto st = bias->scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kHalf || st == at::kBFloat16,
              "bitops: bias must be a float tensor, got ", dtype_name(st));
  TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == n, "bitops: bias must have shape [N=", n, "], got ",
              bias->sizes());
}

inline void check_last_dim(const at::Tensor& x, int64_t k, const char* name) {
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.size(-1) == k, "bitops: ", name, " must have k=", k,
              " features in its last dimension, got shape ", x.sizes());
}

// Output shape [..., n] for an input of shape [..., k].
// The shape of one value per row of x: x's shape without its last dimension.
inline std::vector<int64_t> row_shape(const at::Tensor& x) { return {x.sizes().begin(), x.sizes().end() - 1}; }

inline std::vector<int64_t> out_shape(const at::Tensor& x, int64_t n) {
  auto shape = x.sizes().vec();
  shape.back() = n;
  return shape;
}

}  // namespace bitops::glue
