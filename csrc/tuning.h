// Process-wide choices of the CUDA glue that benchmarks and tests may force:
// read from the environment once (BITOPS_CUDA_GEMV_MAX_M, BITOPS_CUDA_GEMV_FUSED),
// changed at run time through torch.ops.bitops.set_cuda_tuning, never by a
// getenv on the hot path.
#pragma once
#include <atomic>
#include <cstdint>

namespace bitops::glue {

struct CudaTuning {
  std::atomic<int64_t> gemv_max_m;  // largest M served by the GEMV kernels
  std::atomic<int64_t> gemv_fused;  // -1: automatic, 0: pre-quantised, 1: fused
};

CudaTuning& cuda_tuning();  // defined in library.cpp

}  // namespace bitops::glue
