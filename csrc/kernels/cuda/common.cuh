// Device helpers shared by the CUDA kernels: dtype conversion, block
// reductions, and the per-row activation staging (absmax int8 quantisation,
// sign, sign bits) used both by the fused GEMV kernels (into shared memory)
// and by the stand-alone quantisation kernels (into global memory).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstdint>

#include "../epilogue.h"
#include "../layout.h"
#include "cuda_kernels.h"

namespace bitops::cuda::detail {

constexpr int kThreads = 256;  // every kernel here runs 256-thread blocks
constexpr int kWarps = kThreads / 32;
constexpr float kActEps = 1e-5f;  // same constant as the CPU path (quantize_common.h)
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

// float -> output dtype, round to nearest even; NaN mapped to the NaN torch's
// own conversions produce, so outputs match the CPU path bit for bit.
template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) {
  if (isnan(v)) return __ushort_as_half(static_cast<unsigned short>((__float_as_uint(v) >> 16 & 0x8000u) | 0x7E00u));
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  if (isnan(v)) return __ushort_as_bfloat16(static_cast<unsigned short>(0x7FC0u));
  return __float2bfloat16_rn(v);
}

// Same operations, same order as bitops::cpu::quantize_value.
__device__ __forceinline__ int quantize_value(float v, float s) {
  float r = rintf(__fmul_rn(v, s));  // round half to even
  r = r < -128.0f ? -128.0f : (r > 127.0f ? 127.0f : r);
  return static_cast<int>(r);
}

__device__ __forceinline__ float absmax_scale(float amax) {
  return __fdiv_rn(127.0f, amax > kActEps ? amax : kActEps);  // a true division, as on the CPU
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
__device__ __forceinline__ unsigned warp_sum(unsigned v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

// Block-wide reductions (all threads call; all get the result). scratch: 32 words of shared memory.
// The per-warp partials are combined by one more shuffle reduction in every
// warp (not a serial loop over them: up to 32 with 1024-thread blocks). Max
// and the modular integer sum are exact, so the result does not depend on the order.
__device__ __forceinline__ float block_max(float v, unsigned* scratch) {
  v = warp_max(v);
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = __float_as_uint(v);
  __syncthreads();
  const int lane = threadIdx.x & 31;
  float r = lane < (int)(blockDim.x >> 5) ? __uint_as_float(scratch[lane]) : -INFINITY;
  r = warp_max(r);
  __syncthreads();
  return r;
}
// Unsigned: sums wrap modulo 2^32 without undefined behaviour; the true results fit in int32.
__device__ __forceinline__ unsigned block_sum(unsigned v, unsigned* scratch) {
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  const int lane = threadIdx.x & 31;
  unsigned r = lane < (int)(blockDim.x >> 5) ? scratch[lane] : 0u;
  r = warp_sum(r);
  __syncthreads();
  return r;
}

// Loads x[k0, k0 + 8) as floats, 0 past K. `vec`: the row is 16-byte aligned.
template <class T>
__device__ __forceinline__ void load8(const T* row, int64_t k0, int64_t K, bool vec, float v[8]) {
  if (vec && k0 + 8 <= K) {
    if constexpr (sizeof(T) == 4) {
      const float4 a = __ldg(reinterpret_cast<const float4*>(row + k0));
      const float4 b = __ldg(reinterpret_cast<const float4*>(row + k0 + 4));
      v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
      v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    } else {
      const uint4 a = __ldg(reinterpret_cast<const uint4*>(row + k0));
      const T* h = reinterpret_cast<const T*>(&a);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] = to_f32(h[i]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = (k0 + i < K) ? to_f32(row[k0 + i]) : 0.0f;
  }
}

// Where activation k goes in a staged row. kPlain: at k. kBinPerm (binary
// weights x int8): inside each run of 32, x[8l + j] goes to byte 4j + l, so the
// 32-bit word j holds the activations of bits j, j+8, j+16, j+24 of a weight
// word, which (w >> j) & 0x01010101 puts in byte lanes for __dp4a.
enum Layout { kPlain = 0, kBinPerm = 1 };

// Stages one row: dst[k] = quantised x[k] (or sign(x[k]) in {-1, +1} when SIGN)
// for k < K and 0 for K <= k < kout. Returns {s, sum of the staged values}
// to every thread. Non-finite rows: s = NaN and all values 0.
template <class T, bool SIGN, int LAYOUT>
__device__ void stage_quant_row(const T* row, int64_t K, int8_t* dst, int64_t kout, unsigned* scratch, float* s_out,
                                int* sum_out) {
  const bool vec = (reinterpret_cast<uintptr_t>(row) & 15) == 0;
  float amax = 0.0f;
  int finite = 1;
  for (int64_t g = threadIdx.x; g * 8 < K; g += blockDim.x) {
    float v[8];
    load8(row, g * 8, K, vec, v);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      finite &= isfinite(v[i]) ? 1 : 0;
      amax = fmaxf(amax, fabsf(v[i]));
    }
  }
  finite = __syncthreads_and(finite);
  float s;
  if (SIGN) {
    s = finite ? 1.0f : __int_as_float(0x7fc00000);
  } else {
    amax = block_max(amax, scratch);
    s = finite ? absmax_scale(amax) : __int_as_float(0x7fc00000);
  }
  const bool vec_out = LAYOUT == kPlain && (reinterpret_cast<uintptr_t>(dst) & 7) == 0;
  unsigned sum = 0;
  for (int64_t g = threadIdx.x; g * 8 < kout; g += blockDim.x) {
    float v[8];
    load8(row, g * 8, K, vec, v);  // a second read of the row: served by L1/L2
    int q[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int64_t k = g * 8 + i;
      q[i] = (!finite || k >= K) ? 0 : (SIGN ? (v[i] >= 0.0f ? 1 : -1) : quantize_value(v[i], s));
      sum += static_cast<unsigned>(q[i]);
    }
    if (LAYOUT == kBinPerm) {  // kout is a multiple of 256 here
      int8_t* base = dst + (g >> 2) * 32 + (g & 3);
#pragma unroll
      for (int i = 0; i < 8; ++i) base[4 * i] = static_cast<int8_t>(q[i]);
    } else if (vec_out && g * 8 + 8 <= kout) {
      uint2 packed;
      packed.x = (q[0] & 0xff) | (q[1] & 0xff) << 8 | (q[2] & 0xff) << 16 | (unsigned)(q[3] & 0xff) << 24;
      packed.y = (q[4] & 0xff) | (q[5] & 0xff) << 8 | (q[6] & 0xff) << 16 | (unsigned)(q[7] & 0xff) << 24;
      *reinterpret_cast<uint2*>(dst + g * 8) = packed;
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if (g * 8 + i < kout) dst[g * 8 + i] = static_cast<int8_t>(q[i]);
    }
  }
  sum = block_sum(sum, scratch);
  *s_out = s;
  *sum_out = static_cast<int>(sum);
}

// Copies a given int8 row (zero-padded to kout); returns the sum of its values.
__device__ inline int stage_copy_row(const int8_t* row, int64_t K, int8_t* dst, int64_t kout, unsigned* scratch) {
  unsigned sum = 0;
  for (int64_t k = threadIdx.x; k < kout; k += blockDim.x) {
    const int v = k < K ? row[k] : 0;
    dst[k] = static_cast<int8_t>(v);
    sum += static_cast<unsigned>(v);
  }
  return static_cast<int>(block_sum(sum, scratch));
}

// Sign bits of a row into `words` 32-bit words (bit set where x >= 0, padding
// bits 0). Returns s = 1, or NaN for a row holding NaN/Inf.
template <class T>
__device__ float stage_sign_bits(const T* row, int64_t K, uint32_t* dst, int64_t words) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int finite = 1;
  for (int64_t q = warp; q < words; q += blockDim.x >> 5) {
    const int64_t k = q * 32 + lane;
    const float v = k < K ? to_f32(row[k]) : 0.0f;
    finite &= isfinite(v) ? 1 : 0;
    const unsigned bits = __ballot_sync(kFull, k < K && v >= 0.0f);
    if (lane == 0) dst[q] = bits;
  }
  finite = __syncthreads_and(finite);
  return finite ? 1.0f : __int_as_float(0x7fc00000);
}

__device__ inline void stage_copy_bytes(const uint8_t* src, int64_t n, uint8_t* dst) {
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace bitops::cuda::detail
