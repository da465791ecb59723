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


class cpu_tuning:
    """Forces the CPU kernels' choices for a block (benchmarks and tests); restores them after.

    ``gemv_order``: the AVX-512 VNNI M = 1 ternary GEMV's read order, ``"tiles"`` (four weight rows
    at a time: measured best on AMD EPYC) or ``"rows"`` (one row at a time in memory order:
    measured best on an Intel Xeon); by default chosen by the CPU's vendor.
    ``amx``: whether the ternary int8 GEMM (16 rows of x or more) runs its panels on AMX-INT8
    where the CPU has it (default: yes). None keeps the current choice. Every choice gives the
    same exact sums; kernel sets without these paths ignore them.
    """

    ORDERS = {"tiles": 0, "rows": 1}

    def __init__(self, gemv_order: str | None = None, amx: bool | None = None):
        if gemv_order is not None and gemv_order not in self.ORDERS:
            raise ValueError(f"bitops: gemv_order must be 'tiles' or 'rows', got {gemv_order!r}")
        self.gemv_order, self.amx = gemv_order, amx

    def __enter__(self):
        self.saved = tuple(int(v) for v in torch.ops.bitops.cpu_tuning())
        order = self.saved[0] if self.gemv_order is None else self.ORDERS[self.gemv_order]
        amx = self.saved[1] if self.amx is None else int(bool(self.amx))
        torch.ops.bitops.set_cpu_tuning(order, amx)
        return self

    def __exit__(self, *exc):
        torch.ops.bitops.set_cpu_tuning(*self.saved)


def amx_usable() -> bool:
    """Whether this CPU and OS run bitops' AMX-INT8 panels."""
    if not LOADED:
        return False
    with cpu_tuning(amx=True):
        return bool(torch.ops.bitops.cpu_tuning()[1])


class cuda_tuning:
    """Forces the CUDA glue's kernel choices for a block (benchmarks and tests); restores them after.

    ``gemv_max_m``: largest M served by the GEMV kernels (0: always the tensor-core path);
    ``gemv_fused``: True (quantize inside the GEMV), False (quantize once, then GEMV), None (automatic).
    The starting values come from ``BITOPS_CUDA_GEMV_MAX_M`` / ``BITOPS_CUDA_GEMV_FUSED``, read once.
    """

    def __init__(self, gemv_max_m: int | None = None, gemv_fused: bool | None = None):
        self.gemv_max_m, self.gemv_fused = gemv_max_m, gemv_fused

    def __enter__(self):
        self.saved = tuple(torch.ops.bitops.cuda_tuning())
        max_m = self.saved[0] if self.gemv_max_m is None else self.gemv_max_m
        fused = -1 if self.gemv_fused is None else int(bool(self.gemv_fused))
        torch.ops.bitops.set_cuda_tuning(max_m, fused)
        return self

    def __exit__(self, *exc):
        torch.ops.bitops.set_cuda_tuning(*self.saved)
