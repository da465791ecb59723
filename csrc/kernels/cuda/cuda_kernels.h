// CUDA kernels of bitops on raw device pointers: no torch here (the glue is
// csrc/cuda_ops.cpp). Every launcher takes the stream to run on and returns
// the launch's cudaError_t; it does not synchronise.
//
// Corrupt ternary buffers (code 3): the CPU kernels raise, but finding a code 3
// on the GPU would cost a device->host sync per call, so the matmul kernels do
// not look (a code 3 acts as weight +2). unpack_ternary does check (it syncs).
#pragma once
#include <cuda_runtime.h>
#include <cstdint>

namespace bitops::cuda {

// Element types crossing the launcher boundary.
enum class DType : int { F32 = 0, F16 = 1, BF16 = 2, I32 = 3, I8 = 4, Bits = 5 };

// Kinds of weight x activation product.
enum class Kind : int {
  Ternary = 0,   // packed ternary weights x int8 activations
  BinaryI8 = 1,  // packed binary weights x int8 activations
  BinaryB1 = 2,  // packed binary weights x sign bits (XNOR-popcount)
};

// ---------------------------------------------------------------- small M (GEMV-like)
// out[m, n] for m < M, n < N. x is either float-like [M, ldx] (F32/F16/BF16:
// quantised or binarised inside the kernel, once per block) or already integer
// (I8 for Kind::Ternary, Bits for Kind::BinaryB1: out is then int32, exact).
// Float outputs have x's dtype: y = float(acc) * (gamma[n * gamma_stride] / s[m]) + bias[n].
struct GemvArgs {
  Kind kind = Kind::Ternary;
  DType x_type = DType::F32;
  const void* x = nullptr;
  int64_t ldx = 0;          // elements (or bytes, for Bits) between rows of x
  const uint8_t* w = nullptr;  // packed [N, row_bytes(K)], 16-byte aligned
  int64_t M = 0, N = 0, K = 0;
  const float* gamma = nullptr;
  int64_t gamma_stride = 0;
  const float* bias = nullptr;  // float32 [N] or nullptr
  void* out = nullptr;          // [M, N]: x's dtype, or int32 for integer x
  // Float x only, optional: gemv_workspace_bytes() of device memory. Given, the
  // activations are quantised once by a small kernel into it (then the GEMV,
  // with Programmatic Dependent Launch on sm_90+); null: quantised inside every
  // block of the single fused kernel.
  void* workspace = nullptr;
};

// Bytes of GemvArgs::workspace for float activations (0 for integer x).
int64_t gemv_workspace_bytes(Kind kind, DType x_type, int64_t M, int64_t K);

// True when the GEMV kernel can stage one row of activations of this K in
// shared memory on `device` (else use the tensor-core path).
bool gemv_supported(Kind kind, int64_t K, int device);
cudaError_t launch_gemv(const GemvArgs& a, int device, cudaStream_t stream);

// ---------------------------------------------------------------- activations
// Per-row int8 absmax quantisation (sign=false) or sign to +-1 (sign=true) of
// x [M, ldx] into xq [M, ldq]: columns [0, K) get values, [K, kout) get 0.
// s[m] = 127 / max(amax, 1e-5) (true division), or 1 for sign; NaN for a row
// holding NaN/Inf (whose xq is then 0 in quantise mode).
cudaError_t launch_quantize_rows(DType x_type, const void* x, int64_t ldx, int64_t M, int64_t K, bool sign,
                                 int8_t* xq, int64_t ldq, int64_t kout, float* s, cudaStream_t stream);
// Sign bits of x into the binary packed format: bits [M, binary_row_bytes(K)], s = 1 or NaN.
cudaError_t launch_binarize_rows(DType x_type, const void* x, int64_t ldx, int64_t M, int64_t K, uint8_t* bits,
                                 float* s, cudaStream_t stream);

// ---------------------------------------------------------------- formats
// pack_*: wq int8 [N, K] -> packed [N, row_bytes]. *bad (init to INT64_MAX by
// the caller) receives the smallest flat index of a value outside the format.
cudaError_t launch_pack_ternary(const int8_t* wq, int64_t N, int64_t K, uint8_t* packed,
                                unsigned long long* bad, cudaStream_t stream);
cudaError_t launch_pack_binary(const int8_t* wq, int64_t N, int64_t K, uint8_t* packed,
                               unsigned long long* bad, cudaStream_t stream);
// Decodes packed rows into out [n_out, ldo] of type I8 or F32: rows < N get the
// weights for columns < K and 0 for columns [K, kout); rows [N, n_out) are
// zeroed. bad_row (ternary only, may be null; init to INT64_MAX) receives the
// first row holding code 3 within K.
cudaError_t launch_decode_ternary(const uint8_t* packed, int64_t N, int64_t K, DType out_type, void* out,
                                  int64_t ldo, int64_t kout, int64_t n_out, unsigned long long* bad_row,
                                  cudaStream_t stream);
cudaError_t launch_decode_binary(const uint8_t* packed, int64_t N, int64_t K, DType out_type, void* out,
                                 int64_t ldo, int64_t kout, int64_t n_out, cudaStream_t stream);

// ---------------------------------------------------------------- epilogue
// out[m, n] (type out_type, ld N) = float(acc[m * lda + n]) * (gamma / s[m]) + bias[n]
// for acc of type I32 or F32; s may be null (no activation scale).
cudaError_t launch_epilogue(DType acc_type, const void* acc, int64_t lda, int64_t M, int64_t N, const float* s,
                            const float* gamma, int64_t gamma_stride, const float* bias, DType out_type,
                            void* out, cudaStream_t stream);

}  // namespace bitops::cuda
