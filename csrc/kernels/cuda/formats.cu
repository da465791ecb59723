// Packing and decoding of the formats of layout.h on the GPU. Decoding to
// int8 feeds the tensor-core path (torch._int_mm) and unpack_*; decoding to
// float32 feeds the cuBLAS path of the float-activation ops.
#include "common.cuh"

namespace bitops::cuda {
namespace detail {
namespace {

// One thread per output byte: the four weights 128b + 32i + j (i = 0..3).
__global__ void __launch_bounds__(kThreads) pack_ternary_kernel(const int8_t* wq, int64_t N, int64_t K, uint8_t* out,
                                                                unsigned long long* bad) {
  const int64_t rb = ternary_row_bytes(K);
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= N * rb) return;
  const int64_t n = idx / rb, jb = idx - n * rb;
  const int64_t k0 = (jb / 32) * 128 + (jb % 32);
  unsigned byte = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t k = k0 + 32 * i;
    unsigned code = kTernaryZeroCode;
    if (k < K) {
      const int v = wq[n * K + k];
      if (v < -1 || v > 1) atomicMin(bad, static_cast<unsigned long long>(n * K + k));
      code = static_cast<unsigned>(v + 1) & 3u;
    }
    byte |= code << (6 - 2 * i);
  }
  out[idx] = static_cast<uint8_t>(byte);
}

// One thread per output byte: weights 8j .. 8j + 7; padding bits stay 0.
__global__ void __launch_bounds__(kThreads) pack_binary_kernel(const int8_t* wq, int64_t N, int64_t K, uint8_t* out,
                                                               unsigned long long* bad) {
  const int64_t rb = binary_row_bytes(K);
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= N * rb) return;
  const int64_t n = idx / rb, jb = idx - n * rb;
  unsigned byte = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t k = jb * 8 + i;
    if (k < K) {
      const int v = wq[n * K + k];
      if (v != 1 && v != -1) atomicMin(bad, static_cast<unsigned long long>(n * K + k));
      if (v == 1) byte |= 1u << i;
    }
  }
  out[idx] = static_cast<uint8_t>(byte);
}

template <class O>
__device__ __forceinline__ void put4(O* dst, int64_t k0, int64_t kout, bool vec, const int v[4]) {
  if (vec && k0 + 4 <= kout) {
    if constexpr (sizeof(O) == 1) {
      *reinterpret_cast<uint32_t*>(dst + k0) =
          (v[0] & 0xff) | (v[1] & 0xff) << 8 | (v[2] & 0xff) << 16 | static_cast<uint32_t>(v[3] & 0xff) << 24;
    } else {
      *reinterpret_cast<float4*>(dst + k0) = make_float4(v[0], v[1], v[2], v[3]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (k0 + i < kout) dst[k0 + i] = static_cast<O>(v[i]);
  }
}

// One thread per 32-bit word of packed input (16 weights, four runs of 4).
template <class O>
__global__ void __launch_bounds__(kThreads) decode_ternary_kernel(const uint8_t* packed, int64_t N, int64_t K, O* out,
                                                                  int64_t ldo, int64_t kout,
                                                                  unsigned long long* bad_row) {
  const int64_t rb = ternary_row_bytes(K), wpr = rb / 4;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= N * wpr) return;
  const int64_t n = idx / wpr, wi = idx - n * wpr;
  const uint32_t word = *reinterpret_cast<const uint32_t*>(packed + n * rb + wi * 4);
  const int64_t kb = (wi / 8) * 128 + (wi % 8) * 4;
  const bool vec = (ldo % 4) == 0;
  O* dst = out + n * ldo;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t k0 = kb + 32 * i;
    if (k0 >= kout) break;
    const uint32_t codes = (word >> (6 - 2 * i)) & 0x03030303u;
    int v[4];
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const int code = (codes >> (8 * l)) & 3;
      const bool inside = k0 + l < K;
      if (bad_row && inside && code == kTernaryBadCode) atomicMin(bad_row, static_cast<unsigned long long>(n));
      v[l] = inside ? code - 1 : 0;
    }
    put4(dst, k0, kout, vec, v);
  }
}

// One thread per packed byte (8 weights).
template <class O>
__global__ void __launch_bounds__(kThreads) decode_binary_kernel(const uint8_t* packed, int64_t N, int64_t K, O* out,
                                                                 int64_t ldo, int64_t kout) {
  const int64_t rb = binary_row_bytes(K);
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= N * rb) return;
  const int64_t n = idx / rb, jb = idx - n * rb;
  const int64_t k0 = jb * 8;
  if (k0 >= kout) return;
  const unsigned byte = packed[idx];
  const bool vec = (ldo % 4) == 0;
  O* dst = out + n * ldo;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    int v[4];
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const int b = 4 * h + l;
      v[l] = k0 + b < K ? ((byte >> b) & 1u ? 1 : -1) : 0;
    }
    put4(dst, k0 + 4 * h, kout, vec, v);
  }
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>(ceil_div(n, kThreads)); }

size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 1; }

cudaError_t zero_tail_rows(void* out, DType t, int64_t N, int64_t n_out, int64_t ldo, cudaStream_t stream) {
  if (n_out <= N) return cudaSuccess;
  const size_t es = dtype_size(t);
  return cudaMemsetAsync(static_cast<char*>(out) + static_cast<size_t>(N * ldo) * es, 0,
                         static_cast<size_t>((n_out - N) * ldo) * es, stream);
}

}  // namespace
}  // namespace detail

cudaError_t launch_pack_ternary(const int8_t* wq, int64_t N, int64_t K, uint8_t* packed, unsigned long long* bad,
                                cudaStream_t stream) {
  using namespace detail;
  const int64_t total = N * ternary_row_bytes(K);
  if (total <= 0) return cudaSuccess;
  pack_ternary_kernel<<<blocks_for(total), kThreads, 0, stream>>>(wq, N, K, packed, bad);
  return cudaGetLastError();
}

cudaError_t launch_pack_binary(const int8_t* wq, int64_t N, int64_t K, uint8_t* packed, unsigned long long* bad,
                               cudaStream_t stream) {
  using namespace detail;
  const int64_t total = N * binary_row_bytes(K);
  if (total <= 0) return cudaSuccess;
  pack_binary_kernel<<<blocks_for(total), kThreads, 0, stream>>>(wq, N, K, packed, bad);
  return cudaGetLastError();
}

cudaError_t launch_decode_ternary(const uint8_t* packed, int64_t N, int64_t K, DType out_type, void* out, int64_t ldo,
                                  int64_t kout, int64_t n_out, unsigned long long* bad_row, cudaStream_t stream) {
  using namespace detail;
  if (out_type != DType::I8 && out_type != DType::F32) return cudaErrorInvalidValue;
  if (kout > ternary_row_bytes(K) * 4 || ldo < kout) return cudaErrorInvalidValue;
  const int64_t total = N * (ternary_row_bytes(K) / 4);
  if (total > 0) {
    if (out_type == DType::I8)
      decode_ternary_kernel<<<blocks_for(total), kThreads, 0, stream>>>(packed, N, K, static_cast<int8_t*>(out), ldo,
                                                                        kout, bad_row);
    else
      decode_ternary_kernel<<<blocks_for(total), kThreads, 0, stream>>>(packed, N, K, static_cast<float*>(out), ldo,
                                                                        kout, bad_row);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return zero_tail_rows(out, out_type, N, n_out, ldo, stream);
}

cudaError_t launch_decode_binary(const uint8_t* packed, int64_t N, int64_t K, DType out_type, void* out, int64_t ldo,
                                 int64_t kout, int64_t n_out, cudaStream_t stream) {
  using namespace detail;
  if (out_type != DType::I8 && out_type != DType::F32) return cudaErrorInvalidValue;
  if (kout > binary_row_bytes(K) * 8 || ldo < kout) return cudaErrorInvalidValue;
  const int64_t total = N * binary_row_bytes(K);
  if (total > 0) {
    if (out_type == DType::I8)
      decode_binary_kernel<<<blocks_for(total), kThreads, 0, stream>>>(packed, N, K, static_cast<int8_t*>(out), ldo,
                                                                       kout);
    else
      decode_binary_kernel<<<blocks_for(total), kThreads, 0, stream>>>(packed, N, K, static_cast<float*>(out), ldo,
                                                                       kout);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return zero_tail_rows(out, out_type, N, n_out, ldo, stream);
}

}  // namespace bitops::cuda
