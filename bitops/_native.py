"""Loads the compiled extension once and says which backend serves a device."""

from __future__ import annotations

import os
import warnings

import torch

try:
    from . import _C  # noqa: F401  (importing it registers torch.ops.bitops.*)

    LOADED = True
    LOAD_ERROR = None
except ImportError as exc:  # no build, or a build for another torch
    LOADED = False
    LOAD_ERROR = exc
    if os.environ.get("BITOPS_QUIET") != "1":
        warnings.warn(
            f"bitops: the native extension bitops._C could not be loaded ({exc}); every op runs on the "
            "pure-torch reference (correct but slow). Build it with `pip install --no-build-isolation -e .`.",
            RuntimeWarning,
            stacklevel=2,
        )


HAS_CUDA = LOADED and bool(torch.ops.bitops.has_cuda())  # fixed at build time: asked once


def has_cuda_kernels() -> bool:
    return HAS_CUDA


def backend(device: str | torch.device = "cpu") -> str:
    """Which implementation runs bitops ops for tensors on ``device``.

    ``"cpu-avx512vnni"``, ``"cpu-avx2"`` or ``"cpu-scalar"`` (native CPU kernels, chosen once by
    cpuid and capped by ``BITOPS_ISA=avx2`` or ``=scalar``),
    ``"cuda"`` (native CUDA kernels) or ``"reference"`` (the pure-torch oracle).
    """
    kind = torch.device(device).type
    if not LOADED:
        return "reference"
    if kind == "cpu":
        return str(torch.ops.bitops.cpu_isa())
    if kind == "cuda" and has_cuda_kernels():
        return "cuda"
    return "reference"
