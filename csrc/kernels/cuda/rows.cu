// Stand-alone activation kernels (one block per row, the same staging code as
// the fused GEMV kernels, so xq and s are identical on every path) and the
// float epilogue applied after a tensor-core or cuBLAS product.
#include <algorithm>
#include <type_traits>

#include "common.cuh"

namespace bitops::cuda {
namespace detail {
namespace {

template <class T, bool SIGN>
__global__ void __launch_bounds__(kThreads) quantize_rows_kernel(const T* x, int64_t ldx, int64_t K, int8_t* xq,
                                                                 int64_t ldq, int64_t kout, float* s) {
  __shared__ unsigned scratch[32];
  const int64_t m = blockIdx.x;
  float sv;
  int sum;
  stage_quant_row<T, SIGN, kPlain>(x + m * ldx, K, xq + m * ldq, kout, scratch, &sv, &sum);
  if (threadIdx.x == 0) s[m] = sv;
}

template <class T>
__global__ void __launch_bounds__(kThreads) binarize_rows_kernel(const T* x, int64_t ldx, int64_t K, uint8_t* bits,
                                                                 float* s) {
  const int64_t m = blockIdx.x;
  const int64_t rb = binary_row_bytes(K);
  const float sv = stage_sign_bits(x + m * ldx, K, reinterpret_cast<uint32_t*>(bits + m * rb), rb / 4);
  if (threadIdx.x == 0) s[m] = sv;
}

// 2-D grid: x over groups of 4 columns, y over rows (no 64-bit division per element).
template <class A, class O>
__global__ void __launch_bounds__(kThreads) epilogue_kernel(const A* acc, int64_t lda, int64_t M, int64_t N,
                                                            Epilogue e, O* out, bool vec) {
  const int64_t n0 = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
  if (n0 >= N) return;
  for (int64_t m = blockIdx.y; m < M; m += gridDim.y) {
    const A* a = acc + m * lda;
    O* o = out + m * N;
    float v[4];
    if (vec && n0 + 4 <= N) {  // 16-byte loads of the accumulators
      if constexpr (sizeof(A) == 4 && std::is_same_v<A, float>) {
        const float4 t = *reinterpret_cast<const float4*>(a + n0);
        v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
      } else {
        const int4 t = *reinterpret_cast<const int4*>(a + n0);
        v[0] = static_cast<float>(t.x); v[1] = static_cast<float>(t.y);
        v[2] = static_cast<float>(t.z); v[3] = static_cast<float>(t.w);
      }
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) v[i] = n0 + i < N ? static_cast<float>(a[n0 + i]) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (n0 + i < N) o[n0 + i] = from_f32<O>(epilogue_value(v[i], e, m, n0 + i));
  }
}

template <class T>
cudaError_t quantize_t(const void* x, int64_t ldx, int64_t M, int64_t K, bool sign, int8_t* xq, int64_t ldq,
                       int64_t kout, float* s, cudaStream_t stream) {
  if (sign)
    quantize_rows_kernel<T, true><<<static_cast<unsigned>(M), kThreads, 0, stream>>>(static_cast<const T*>(x), ldx, K,
                                                                                   xq, ldq, kout, s);
  else
    quantize_rows_kernel<T, false><<<static_cast<unsigned>(M), kThreads, 0, stream>>>(static_cast<const T*>(x), ldx,
                                                                                    K, xq, ldq, kout, s);
  return cudaGetLastError();
}

template <class A>
cudaError_t epilogue_a(const A* acc, int64_t lda, int64_t M, int64_t N, const Epilogue& e, DType out_type, void* out,
                       cudaStream_t stream) {
  const int64_t gx = ceil_div(ceil_div(N, 4), kThreads);
  const dim3 g(static_cast<unsigned>(gx), static_cast<unsigned>(std::min<int64_t>(M, 65535)));
  const bool vec = N % 4 == 0 && lda % 4 == 0 && (reinterpret_cast<uintptr_t>(acc) & 15) == 0;
  switch (out_type) {
    case DType::F32: epilogue_kernel<<<g, kThreads, 0, stream>>>(acc, lda, M, N, e, static_cast<float*>(out), vec); break;
    case DType::F16: epilogue_kernel<<<g, kThreads, 0, stream>>>(acc, lda, M, N, e, static_cast<__half*>(out), vec); break;
    case DType::BF16:
      epilogue_kernel<<<g, kThreads, 0, stream>>>(acc, lda, M, N, e, static_cast<__nv_bfloat16*>(out), vec);
      break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace
}  // namespace detail

cudaError_t launch_quantize_rows(DType x_type, const void* x, int64_t ldx, int64_t M, int64_t K, bool sign,
                                 int8_t* xq, int64_t ldq, int64_t kout, float* s, cudaStream_t stream) {
  using namespace detail;
  if (M <= 0) return cudaSuccess;
  if (M > 0x7fffffff || kout < K || ldq < kout) return cudaErrorInvalidValue;
  switch (x_type) {
    case DType::F32: return quantize_t<float>(x, ldx, M, K, sign, xq, ldq, kout, s, stream);
    case DType::F16: return quantize_t<__half>(x, ldx, M, K, sign, xq, ldq, kout, s, stream);
    case DType::BF16: return quantize_t<__nv_bfloat16>(x, ldx, M, K, sign, xq, ldq, kout, s, stream);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t launch_binarize_rows(DType x_type, const void* x, int64_t ldx, int64_t M, int64_t K, uint8_t* bits,
                                 float* s, cudaStream_t stream) {
  using namespace detail;
  if (M <= 0) return cudaSuccess;
  if (M > 0x7fffffff) return cudaErrorInvalidValue;
  const unsigned g = static_cast<unsigned>(M);
  switch (x_type) {
    case DType::F32:
      binarize_rows_kernel<<<g, kThreads, 0, stream>>>(static_cast<const float*>(x), ldx, K, bits, s);
      break;
    case DType::F16:
      binarize_rows_kernel<<<g, kThreads, 0, stream>>>(static_cast<const __half*>(x), ldx, K, bits, s);
      break;
    case DType::BF16:
      binarize_rows_kernel<<<g, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(x), ldx, K, bits, s);
      break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t launch_epilogue(DType acc_type, const void* acc, int64_t lda, int64_t M, int64_t N, const float* s,
                            const float* gamma, int64_t gamma_stride, const float* bias, DType out_type, void* out,
                            cudaStream_t stream) {
  using namespace detail;
  if (M <= 0 || N <= 0) return cudaSuccess;
  Epilogue e;
  e.s = s;
  e.gamma = gamma;
  e.gamma_stride = gamma_stride;
  e.bias = bias;
  e.ldo = N;
  switch (acc_type) {
    case DType::I32: return epilogue_a(static_cast<const int32_t*>(acc), lda, M, N, e, out_type, out, stream);
    case DType::F32: return epilogue_a(static_cast<const float*>(acc), lda, M, N, e, out_type, out, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace bitops::cuda
