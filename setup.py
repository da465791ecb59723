"""Builds bitops._C against the installed torch.

    pip install --no-build-isolation -e .          # CPU part always
    BITOPS_CUDA=1 pip install --no-build-isolation .  # force the CUDA part (needs nvcc)
    TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0" pip wheel --no-build-isolation .  # GPU wheels

The CUDA part is built when torch has CUDA and nvcc is found, unless BITOPS_CUDA=0/1 says otherwise.
"""

import glob
import os
import shutil

from setuptools import setup

import torch
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

HERE = os.path.dirname(os.path.abspath(__file__))


def want_cuda() -> bool:
    forced = os.environ.get("BITOPS_CUDA")
    if forced is not None:
        return forced == "1"
    return torch.version.cuda is not None and shutil.which("nvcc") is not None


def sources(pattern: str) -> list:
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern), recursive=True))


# No -march=native: one binary must run on any x86-64. The AVX2 and AVX-512 code
# turns on its ISA per file (#pragma GCC target in csrc/kernels/cpu/avx2_*.cpp and
# avx512_*.cpp) and runs only after cpuid (csrc/kernels/cpu/dispatch.cpp).
# -ffp-contract=off keeps a*b+c as two roundings, as in the torch oracle.
cxx_flags = ["-O3", "-std=c++17", "-ffp-contract=off", "-fno-math-errno", "-Wall", "-Wno-unused-function"]
# at::parallel_for is a header template built on `#pragma omp parallel`: without -fopenmp it
# silently runs on one thread (measured: no 1 -> 2 thread scaling at all). The extension then
# shares torch's OpenMP runtime (same soname, loaded first), so torch.set_num_threads applies.
link_flags = []
if torch.backends.openmp.is_available():
    cxx_flags.append("-fopenmp")
    link_flags.append("-fopenmp")
cpu_sources = ["csrc/library.cpp", "csrc/cpu_ops.cpp", "csrc/cpu_dense_ops.cpp", "csrc/cpu_weight_ops.cpp", "csrc/cpu_train_ops.cpp"] + sources("csrc/kernels/cpu/*.cpp")

if want_cuda():
    extension = CUDAExtension(
        "bitops._C",
        cpu_sources + ["csrc/cuda_ops.cpp"] + sources("csrc/kernels/cuda/*.cu"),
        define_macros=[("BITOPS_WITH_CUDA", "1")],
        extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"]},
        extra_link_args=link_flags,
    )
else:
    extension = CppExtension("bitops._C", cpu_sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags)

setup(
    ext_modules=[extension],
    cmdclass={"build_ext": BuildExtension},
)
