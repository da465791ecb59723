// Small-M products: one kernel per call, memory-bound on the packed weights.
// The glue sends M <= 8 here by default (gemv_max_m in csrc/cuda_ops.cpp;
// BITOPS_CUDA_GEMV_MAX_M, at most 4096). The kernel itself takes any M: blocks
// of MT = 1, 2, 4 or 8 rows of x (launch_x: the next size up from M, 8 from
// M = 5 on, halved while MT staged rows exceed kStageBudget), at most 65535
// blocks in y (so M <= 65535 * MT), and one row of x must fit in shared memory
// (gemv_supported).
//
// Each block first stages its MT activation rows in shared memory: quantised
// to int8 (or sign bits) right there from the float input, so the whole op is
// a single launch. Before staging, every warp issues the loads of its first
// weights, so the quantisation overlaps the DRAM latency. Then each warp owns
// R = 1 weight row at a time (a work unit; 1 keeps the most warps in flight):
// every lane loads 16-byte chunks of it (coalesced, D = 4 chunks in flight),
// decodes them in registers and multiplies with __dp4a (or XOR + __popc), and
// the warp reduces with shuffles and applies the epilogue of epilogue.h.
//
// Float activations with a workspace (GemvArgs::workspace; the glue passes
// one for M > 2, where it measured faster): the rows are quantised ONCE by prep_kernel (one block per row,
// the same staging code, so the values are identical) into global int8 + s +
// row sum, and the GEMV blocks only copy those few KB into shared memory,
// instead of each block re-reading the float row and running block-wide
// reductions before its first dot product. On sm_90 the GEMV is launched with
// Programmatic Dependent Launch: its blocks start while prep_kernel runs,
// issue their first weight loads, and only then wait for the activations.
// Measured on H100: this path is SLOWER at M=1 (4096x4096: prep 2.6 us + GEMV
// 9.1 us, vs 5.5 us fused; also with PDL off), although the GEMV no longer
// quantises. Not yet explained; the MT=1 instantiation differs from the fused
// one in its occupancy (launch bounds 4 blocks/SM, 64 registers, a grid of all
// resident blocks) -- a suspect, since MT >= 2 (2 blocks/SM) is not slower.
#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "common.cuh"

namespace bitops::cuda {
namespace detail {
namespace {

constexpr int R = 1;                          // weight rows per warp work unit (1: most warps in flight)
constexpr int D = 4;                          // 16-byte chunks per row loaded at once
constexpr int64_t kStageBudget = 96 * 1024;   // staged bytes per block: keeps 2 blocks per SM

template <class XT>
struct OutOf {
  using type = XT;  // float inputs: the output has the input's dtype
};
template <>
struct OutOf<int8_t> {
  using type = int32_t;
};
template <>
struct OutOf<uint8_t> {
  using type = int32_t;
};

// Streaming 16-byte weight load: read once, so keep it out of L1.
__device__ __forceinline__ uint4 ld_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

__device__ __forceinline__ void prefetch_l1(const void* p) { asm volatile("prefetch.global.L1 [%0];" ::"l"(p)); }

// PDL (sm_90+): no-ops on older targets, where the launches are plain and the
// stream order alone makes prep_kernel's results visible.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Workspace of the pre-quantised path: [M][kp] int8 rows, then s [M] float,
// then the row sums [M] int. kp is a multiple of 32, so both are aligned.
struct Workspace {
  int8_t* xq;
  float* s;
  int* sum;
};
__host__ __device__ __forceinline__ Workspace workspace_of(void* base, int64_t M, int64_t kp) {
  int8_t* b = static_cast<int8_t*>(base);
  return Workspace{b, reinterpret_cast<float*>(b + M * kp), reinterpret_cast<int*>(b + M * kp + 4 * M)};
}

// One block per activation row: quantise (or sign-binarise) x into the
// workspace exactly as the fused kernel stages it in shared memory (the same
// staging code; amax, finiteness and the integer sum do not depend on how the
// row is split among threads). 1024 threads: one pass of loads per row up to
// K = 8192, so the GEMV waits on as few serial memory round trips as possible.
constexpr int kPrepThreads = 1024;
template <Kind KIND, class XT>
__global__ void __launch_bounds__(kPrepThreads) prep_kernel(GemvArgs a, int64_t kp) {
  __shared__ unsigned scratch[32];
  // The GEMV may launch now: its griddepcontrol.wait still waits for this
  // whole grid to finish and its writes to be visible.
  pdl_trigger();
  const Workspace ws = workspace_of(a.workspace, a.M, kp);
  const int64_t m = blockIdx.x;
  const XT* row = static_cast<const XT*>(a.x) + m * a.ldx;
  int8_t* dst = ws.xq + m * kp;
  if constexpr (KIND == Kind::BinaryB1) {
    const float sv = stage_sign_bits(row, a.K, reinterpret_cast<uint32_t*>(dst), binary_row_bytes(a.K) / 4);
    if (threadIdx.x == 0) {
      ws.s[m] = sv;
      ws.sum[m] = 0;
    }
  } else {
    float sv;
    int sum;
    stage_quant_row<XT, false, KIND == Kind::BinaryI8 ? kBinPerm : kPlain>(row, a.K, dst, kp, scratch, &sv, &sum);
    if (threadIdx.x == 0) {
      ws.s[m] = sv;
      ws.sum[m] = sum;
    }
  }
}

__device__ __forceinline__ uint32_t word_of(const uint4& v, int t) {
  return t == 0 ? v.x : t == 1 ? v.y : t == 2 ? v.z : v.w;
}

// PRE: the activations come pre-quantised in a.workspace (prep_kernel).
template <Kind KIND, class XT, int MT, bool PRE>
__global__ void __launch_bounds__(kThreads, PRE && MT == 1 ? 4 : 2) gemv_kernel(GemvArgs a, int64_t kp) {
  extern __shared__ int4 smem[];
  int8_t* xs = reinterpret_cast<int8_t*>(smem);  // [MT][kp] staged activations
  __shared__ float s_sh[MT];
  __shared__ int sum_sh[MT];
  __shared__ unsigned scratch[32];
  using OT = typename OutOf<XT>::type;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t N = a.N, K = a.K;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * MT;
  const int mrows = static_cast<int>(a.M - m0 < MT ? a.M - m0 : MT);
  const int64_t rb = KIND == Kind::Ternary ? ternary_row_bytes(K) : binary_row_bytes(K);
  const int C = static_cast<int>(rb / 16);  // 16-byte chunks per weight row
  const int S = (C + 31) / 32;              // chunk steps per lane
  const int64_t units = (N + R - 1) / R;
  const int64_t ustride = static_cast<int64_t>(gridDim.x) * kWarps;
  int64_t u = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  int s0 = 0;

  uint4 wv[D][R];
  auto load = [&](uint4(&dst)[D][R], int64_t uu, int ss) {
#pragma unroll
    for (int d = 0; d < D; ++d)
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t n = uu * R + r;
        const int c = (ss + d) * 32 + lane;
        dst[d][r] = (n < N && c < C) ? ld_stream(a.w + n * rb + c * 16) : make_uint4(0, 0, 0, 0);
      }
  };
  if (u < units) load(wv, u, 0);  // in flight while the activations are staged

  if constexpr (PRE) {
    // The epilogue's gamma and bias do not depend on prep_kernel: start
    // bringing the first unit's into L1 now, off the critical path.
    if (u < units && lane < R) {
      const int64_t n = u * R + lane;
      if (n < N) {
        if (a.gamma) prefetch_l1(a.gamma + n * a.gamma_stride);
        if (a.bias) prefetch_l1(a.bias + n);
      }
    }
    pdl_wait();  // prep_kernel's xq, s and sums are complete and visible from here
    const Workspace ws = workspace_of(a.workspace, a.M, kp);
    // kp is a multiple of 32: whole 16-byte vectors. __ldcg: L2 only (written
    // by the grid just before; never from a possibly stale L1 line).
    const int4* src = reinterpret_cast<const int4*>(ws.xq + m0 * kp);
    const int nvec = static_cast<int>(mrows * kp / 16);
    for (int i = threadIdx.x; i < nvec; i += kThreads) smem[i] = __ldcg(src + i);
    if (threadIdx.x < mrows) {
      s_sh[threadIdx.x] = __ldcg(ws.s + m0 + threadIdx.x);
      sum_sh[threadIdx.x] = __ldcg(ws.sum + m0 + threadIdx.x);
    }
  }
  for (int m = 0; m < (PRE ? 0 : mrows); ++m) {
    int8_t* dst = xs + m * kp;
    const XT* row = static_cast<const XT*>(a.x) + (m0 + m) * a.ldx;
    if constexpr (KIND == Kind::BinaryB1) {
      if constexpr (std::is_same_v<XT, uint8_t>) {
        stage_copy_bytes(row, rb, reinterpret_cast<uint8_t*>(dst));
      } else {
        const float s = stage_sign_bits(row, K, reinterpret_cast<uint32_t*>(dst), rb / 4);
        if (threadIdx.x == 0) s_sh[m] = s;
      }
    } else if constexpr (std::is_same_v<XT, int8_t>) {
      const int sum = stage_copy_row(row, K, dst, kp, scratch);
      if (threadIdx.x == 0) sum_sh[m] = sum;
    } else {
      float s;
      int sum;
      stage_quant_row<XT, false, KIND == Kind::BinaryI8 ? kBinPerm : kPlain>(row, K, dst, kp, scratch, &s, &sum);
      if (threadIdx.x == 0) {
        s_sh[m] = s;
        sum_sh[m] = sum;
      }
    }
  }
  __syncthreads();

  int acc[MT][R];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int r = 0; r < R; ++r) acc[m][r] = 0;

  // Small MT: double-buffered, the next batch of weights is loaded while this
  // one is multiplied (larger MT would run out of registers).
  constexpr bool kPipe = MT <= 2;
  while (u < units) {  // warp-uniform
    int64_t un = u;
    int sn = s0 + D;
    if (sn >= S) {
      un = u + ustride;
      sn = 0;
    }
    uint4 wn[D][R];
    if constexpr (kPipe) {
      if (un < units) load(wn, un, sn);
    }
#pragma unroll
    for (int d = 0; d < D; ++d) {
      const int c = (s0 + d) * 32 + lane;
      if (c >= C) continue;
      if constexpr (KIND == Kind::Ternary) {
        // Chunk c = half h of 128-weight block b. Word t, shifted by 6 - 2i,
        // holds the codes of weights 128b + 32i + 16h + 4t .. +3. Lanes visit
        // the four runs i in a rotated order so that the 8 lanes of a shared
        // memory phase read 8 different 16-byte bank groups.
        const int b = c >> 1, h = c & 1, rot = (lane >> 1) & 3;
        uint32_t codes[R][4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int sh = 6 - 2 * ((i + rot) & 3);
#pragma unroll
          for (int r = 0; r < R; ++r)
#pragma unroll
            for (int t = 0; t < 4; ++t) codes[r][i][t] = (word_of(wv[d][r], t) >> sh) & 0x03030303u;
        }
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          if (m >= mrows) break;
          const int8_t* base = xs + m * kp + 128 * b + 16 * h;
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int4 av = *reinterpret_cast<const int4*>(base + 32 * ((i + rot) & 3));
#pragma unroll
            for (int r = 0; r < R; ++r) {
              acc[m][r] = __dp4a(static_cast<int>(codes[r][i][0]), av.x, acc[m][r]);
              acc[m][r] = __dp4a(static_cast<int>(codes[r][i][1]), av.y, acc[m][r]);
              acc[m][r] = __dp4a(static_cast<int>(codes[r][i][2]), av.z, acc[m][r]);
              acc[m][r] = __dp4a(static_cast<int>(codes[r][i][3]), av.w, acc[m][r]);
            }
          }
        }
      } else if constexpr (KIND == Kind::BinaryI8) {
        // Chunk c = weights 128c .. 128c + 127; word t covers 32 of them. With
        // the permuted staging, 16 bytes at 128c + 32t + 16hh hold the
        // activations of bit masks j = 4hh .. 4hh + 3. Rotated like above.
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          if (m >= mrows) break;
          const int8_t* base = xs + m * kp + 128 * c;
#pragma unroll
          for (int e = 0; e < 8; ++e) {
            const int ee = (e + lane) & 7, t = ee >> 1, j0 = 4 * (ee & 1);
            const int4 av = *reinterpret_cast<const int4*>(base + 16 * ee);
#pragma unroll
            for (int r = 0; r < R; ++r) {
              const uint32_t wt = word_of(wv[d][r], t);
              acc[m][r] = __dp4a(static_cast<int>((wt >> j0) & 0x01010101u), av.x, acc[m][r]);
              acc[m][r] = __dp4a(static_cast<int>((wt >> (j0 + 1)) & 0x01010101u), av.y, acc[m][r]);
              acc[m][r] = __dp4a(static_cast<int>((wt >> (j0 + 2)) & 0x01010101u), av.z, acc[m][r]);
              acc[m][r] = __dp4a(static_cast<int>((wt >> (j0 + 3)) & 0x01010101u), av.w, acc[m][r]);
            }
          }
        }
      } else {
        // XNOR-popcount: count the differing bits among the first K (padding masked).
        uint32_t mask[4];
#pragma unroll
        for (int t = 0; t < 4; ++t) {
          const int64_t valid = K - (static_cast<int64_t>(c) * 128 + 32 * t);
          mask[t] = valid >= 32 ? 0xffffffffu : (valid <= 0 ? 0u : (1u << valid) - 1u);
        }
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          if (m >= mrows) break;
          const uint4 xv = *reinterpret_cast<const uint4*>(xs + m * kp + 16 * c);
#pragma unroll
          for (int r = 0; r < R; ++r) {
            acc[m][r] += __popc((wv[d][r].x ^ xv.x) & mask[0]) + __popc((wv[d][r].y ^ xv.y) & mask[1]) +
                         __popc((wv[d][r].z ^ xv.z) & mask[2]) + __popc((wv[d][r].w ^ xv.w) & mask[3]);
          }
        }
      }
    }

    if (sn == 0) {  // this unit's rows are complete: reduce, epilogue, store
      unsigned tot[MT][R];
#pragma unroll
      for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int r = 0; r < R; ++r) {
          tot[m][r] = m < mrows ? warp_sum(static_cast<unsigned>(acc[m][r])) : 0u;
          acc[m][r] = 0;
        }
#pragma unroll
      for (int j = 0; j < MT * R; ++j) {
        const int m = j / R, r = j % R;
        const int64_t n = u * R + r;
        if (lane != (j & 31) || m >= mrows || n >= N) continue;
        int v;
        if constexpr (KIND == Kind::Ternary) {
          v = static_cast<int>(tot[m][r] - static_cast<unsigned>(sum_sh[m]));  // codes are w + 1
        } else if constexpr (KIND == Kind::BinaryI8) {
          v = static_cast<int>(2u * tot[m][r] - static_cast<unsigned>(sum_sh[m]));  // bits are (w + 1) / 2
        } else {
          v = static_cast<int>(static_cast<unsigned>(K) - 2u * tot[m][r]);
        }
        const int64_t o = (m0 + m) * N + n;
        if constexpr (std::is_same_v<OT, int32_t>) {
          static_cast<int32_t*>(a.out)[o] = v;
        } else {
          Epilogue e;
          e.s = s_sh;
          e.gamma = a.gamma;
          e.gamma_stride = a.gamma_stride;
          e.bias = a.bias;
          static_cast<OT*>(a.out)[o] = from_f32<OT>(epilogue_value(static_cast<float>(v), e, m, n));
        }
      }
    }
    if constexpr (kPipe) {
#pragma unroll
      for (int d = 0; d < D; ++d)
#pragma unroll
        for (int r = 0; r < R; ++r) wv[d][r] = wn[d][r];
    } else {
      if (un < units) load(wv, un, sn);
    }
    u = un;
    s0 = sn;
  }
}

struct DeviceInfo {
  int sms = 0;
  int smem_optin = 0;
  int major = 0;
};

DeviceInfo device_info(int device) {
  static DeviceInfo cache[64];
  if (device < 0 || device >= 64) return DeviceInfo{};
  DeviceInfo& info = cache[device];
  if (info.sms == 0) {  // benign race: every thread computes the same values
    int sms = 0, optin = 0, major = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    info.smem_optin = optin;
    info.major = major;
    info.sms = sms;
  }
  return info;
}

int64_t staged_bytes(Kind kind, int64_t K) {
  switch (kind) {
    case Kind::Ternary: return ternary_row_bytes(K) * 4;
    case Kind::BinaryI8: return binary_row_bytes(K) * 8;
    default: return binary_row_bytes(K);
  }
}

constexpr int64_t kStaticSmemMargin = 1024;  // the kernel's own __shared__ arrays

template <Kind KIND, class XT, int MT, bool PRE>
struct GemvTag {};

// Blocks of `kernel` that fit on one SM with `smem` bytes of dynamic shared
// memory. Cached per kernel instantiation (the Tag) and device for the last
// smem size (a benign race: a torn pair only changes the grid size, never the
// result).
template <class Tag, class F>
int blocks_per_sm(F kernel, size_t smem, int device, int fallback) {
  static size_t smem_of[64];
  static int nb_of[64];
  if (device < 0 || device >= 64) return fallback;
  if (nb_of[device] == 0 || smem_of[device] != smem) {
    int nb = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, kernel, kThreads, smem) != cudaSuccess || nb <= 0) {
      cudaGetLastError();
      return fallback;
    }
    smem_of[device] = smem;
    nb_of[device] = nb;
  }
  return nb_of[device];
}

// BITOPS_CUDA_PDL=0 turns Programmatic Dependent Launch off (plain launches).
bool pdl_enabled(int device) {
  static const bool env_on = [] {
    const char* e = std::getenv("BITOPS_CUDA_PDL");
    return !(e && e[0] == '0');
  }();
  return env_on && device_info(device).major >= 9;
}

template <Kind KIND, class XT, int MT, bool PRE>
cudaError_t launch_mt(const GemvArgs& a, int64_t kp, int device, cudaStream_t stream) {
  auto kernel = gemv_kernel<KIND, XT, MT, PRE>;
  const DeviceInfo info = device_info(device);
  const size_t smem = static_cast<size_t>(MT * kp);
  if (smem > 48 * 1024) {
    static bool raised[64] = {};  // once per device and kernel (benign race: same value)
    const bool known = device >= 0 && device < 64;
    if (!known || !raised[device]) {
      const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   info.smem_optin - static_cast<int>(kStaticSmemMargin));
      if (err != cudaSuccess) return err;
      if (known) raised[device] = true;
    }
  }
  const int64_t units = ceil_div(a.N, R);
  const int64_t gy = ceil_div(a.M, MT);
  if (gy > 65535) return cudaErrorInvalidConfiguration;
  // Fused: enough blocks to fill every SM twice, and no more (each block
  // quantises the activations itself). PRE (staging is a cheap copy): as many
  // blocks as fit on the GPU at once, balanced so that every warp gets the
  // same number of work units.
  const int64_t need = ceil_div(units, kWarps);
  int64_t gx;
  if constexpr (PRE) {
    const int nb = blocks_per_sm<GemvTag<KIND, XT, MT, PRE>>(kernel, smem, device, 2);
    const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(nb) * info.sms / gy);
    gx = ceil_div(need, ceil_div(need, cap));
  } else {
    gx = std::min(need, std::max<int64_t>(1, 2 * info.sms / gy));
  }
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));

  if constexpr (PRE) {
    prep_kernel<KIND, XT><<<static_cast<unsigned>(a.M), kPrepThreads, 0, stream>>>(a, kp);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    if (pdl_enabled(device)) {
      cudaLaunchConfig_t cfg = {};
      cfg.gridDim = grid;
      cfg.blockDim = dim3(kThreads);
      cfg.dynamicSmemBytes = smem;
      cfg.stream = stream;
      cudaLaunchAttribute attr[1];
      attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
      attr[0].val.programmaticStreamSerializationAllowed = 1;
      cfg.attrs = attr;
      cfg.numAttrs = 1;
      if (cudaLaunchKernelEx(&cfg, kernel, a, kp) == cudaSuccess) return cudaSuccess;
      cudaGetLastError();  // PDL refused: fall back to a plain launch (stream order suffices)
    }
  }
  kernel<<<grid, kThreads, smem, stream>>>(a, kp);
  return cudaGetLastError();
}

template <Kind KIND, class XT>
cudaError_t launch_x(const GemvArgs& a, int device, cudaStream_t stream) {
  const int64_t kp = staged_bytes(KIND, a.K);
  const DeviceInfo info = device_info(device);
  int mt = a.M <= 1 ? 1 : a.M <= 2 ? 2 : a.M <= 4 ? 4 : 8;
  while (mt > 1 && mt * kp > kStageBudget) mt /= 2;
  if (mt * kp + kStaticSmemMargin > info.smem_optin) return cudaErrorInvalidValue;
  // Float activations with a workspace: quantised once, outside the GEMV.
  if constexpr (!std::is_integral_v<XT>) {
    if (a.workspace != nullptr) {
      if (a.M > 2147483647) return cudaErrorInvalidConfiguration;  // prep_kernel: one block per row
      switch (mt) {
        case 1: return launch_mt<KIND, XT, 1, true>(a, kp, device, stream);
        case 2: return launch_mt<KIND, XT, 2, true>(a, kp, device, stream);
        case 4: return launch_mt<KIND, XT, 4, true>(a, kp, device, stream);
        default: return launch_mt<KIND, XT, 8, true>(a, kp, device, stream);
      }
    }
  }
  switch (mt) {
    case 1: return launch_mt<KIND, XT, 1, false>(a, kp, device, stream);
    case 2: return launch_mt<KIND, XT, 2, false>(a, kp, device, stream);
    case 4: return launch_mt<KIND, XT, 4, false>(a, kp, device, stream);
    default: return launch_mt<KIND, XT, 8, false>(a, kp, device, stream);
  }
}

template <Kind KIND>
cudaError_t launch_float_x(const GemvArgs& a, int device, cudaStream_t stream) {
  switch (a.x_type) {
    case DType::F32: return launch_x<KIND, float>(a, device, stream);
    case DType::F16: return launch_x<KIND, __half>(a, device, stream);
    case DType::BF16: return launch_x<KIND, __nv_bfloat16>(a, device, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace
}  // namespace detail

int64_t gemv_workspace_bytes(Kind kind, DType x_type, int64_t M, int64_t K) {
  const bool is_float = x_type == DType::F32 || x_type == DType::F16 || x_type == DType::BF16;
  return is_float ? M * detail::staged_bytes(kind, K) + 8 * M : 0;
}

bool gemv_supported(Kind kind, int64_t K, int device) {
  return detail::staged_bytes(kind, K) + detail::kStaticSmemMargin <= detail::device_info(device).smem_optin;
}

cudaError_t launch_gemv(const GemvArgs& a, int device, cudaStream_t stream) {
  using namespace detail;
  if (a.M <= 0 || a.N <= 0) return cudaSuccess;
  if ((reinterpret_cast<uintptr_t>(a.w) & 15) != 0) return cudaErrorMisalignedAddress;
  if ((reinterpret_cast<uintptr_t>(a.workspace) & 15) != 0) return cudaErrorMisalignedAddress;
  switch (a.kind) {
    case Kind::Ternary:
      return a.x_type == DType::I8 ? launch_x<Kind::Ternary, int8_t>(a, device, stream)
                                   : launch_float_x<Kind::Ternary>(a, device, stream);
    case Kind::BinaryI8:
      return launch_float_x<Kind::BinaryI8>(a, device, stream);
    case Kind::BinaryB1:
      return a.x_type == DType::Bits ? launch_x<Kind::BinaryB1, uint8_t>(a, device, stream)
                                     : launch_float_x<Kind::BinaryB1>(a, device, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace bitops::cuda
