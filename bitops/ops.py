"""The public ops: native kernels when the extension is loaded, else the oracle.

Each function here checks that its tensors share one device, then calls
``torch.ops.bitops.*`` (CPU or CUDA kernels) or, where no native kernel serves
that device, :mod:`bitops.reference`. Fake (meta) implementations are
registered so the ops trace under ``torch.compile``.
"""

from __future__ import annotations

import torch

from . import reference as ref
from ._native import LOADED, backend, has_cuda_kernels

__all__ = [
    "ternary_quantize",
    "binary_quantize",
    "quantize_activations",
    "binarize_activations",
    "pack_ternary",
    "unpack_ternary",
    "pack_binary",
    "unpack_binary",
    "ternary_matmul_int",
    "binary_matmul_int",
    "ternary_linear",
    "binary_linear",
]

# The weight quantizers are a few torch ops: the contract has torch compute gamma/beta once.
ternary_quantize = ref.ternary_quantize
binary_quantize = ref.binary_quantize


def _native_for(*tensors) -> bool:
    """True when the native kernels serve these tensors; raises on mixed or unsupported devices."""
    for t in tensors:  # the common case first: all on the CPU (device objects cost ~1 us a call)
        if isinstance(t, torch.Tensor) and not t.is_cpu:
            break
    else:
        return LOADED
    present = [t for t in tensors if isinstance(t, torch.Tensor)]
    device = present[0].device
    for t in present[1:]:
        if t.device != device:
            raise ValueError(f"bitops: all tensors must be on one device, got {device} and {t.device}")
    if not LOADED:
        return False
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        if not has_cuda_kernels():
            raise RuntimeError(
                f"bitops: a tensor is on {device}, but this bitops build has no CUDA kernels; "
                "rebuild with BITOPS_CUDA=1 on a machine with nvcc, or move the tensors to the CPU"
            )
        return True
    return False


def _check_tensor(t, name):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"bitops: {name} must be a torch.Tensor, got {type(t).__name__}")
    # the kernels read plain strided memory; say so instead of a dispatcher error naming a backend
    if t.layout != torch.strided or t.is_nested or t.is_quantized:
        kind = "nested" if t.is_nested else "quantized" if t.is_quantized else str(t.layout)
        raise TypeError(f"bitops: {name} must be a dense (strided) tensor, got a {kind} tensor")


def _check_int(k, name="k"):
    if not isinstance(k, int) or isinstance(k, bool):
        raise TypeError(f"bitops: {name} must be an int, got {type(k).__name__}")
    if not 1 <= k <= ref.MAX_K:  # checked here too: torch cannot pass an int beyond int64 to the op
        raise ValueError(f"bitops: {name} must be in [1, {ref.MAX_K}] so that int32 accumulation stays exact, got {name}={k}")


def quantize_activations(x: torch.Tensor):
    """Per-row int8 absmax: ``(xq int8 [..., K], s float32 [...])``; see :func:`bitops.reference.quantize_activations`."""
    _check_tensor(x, "x")
    if _native_for(x):
        return tuple(torch.ops.bitops.quantize_activations(x))
    return ref.quantize_activations(x)


def binarize_activations(x: torch.Tensor):
    """Sign bits of x in the packed binary format, and s (1, or NaN for non-finite rows)."""
    _check_tensor(x, "x")
    if _native_for(x):
        return tuple(torch.ops.bitops.binarize_activations(x))
    return ref.binarize_activations(x)


def pack_ternary(wq: torch.Tensor) -> torch.Tensor:
    """int8 ``[N, K]`` in {-1, 0, 1} -> packed uint8 ``[N, ternary_row_bytes(K)]`` (layout: csrc/kernels/layout.h)."""
    _check_tensor(wq, "wq")
    if _native_for(wq):
        return torch.ops.bitops.pack_ternary(wq)
    return ref.pack_ternary(wq)


def unpack_ternary(packed: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of :func:`pack_ternary`; raises ValueError on a corrupt buffer (code 3)."""
    _check_tensor(packed, "packed")
    _check_int(k)
    if _native_for(packed):
        return torch.ops.bitops.unpack_ternary(packed, k)
    return ref.unpack_ternary(packed, k)


def pack_binary(wq: torch.Tensor) -> torch.Tensor:
    """int8 ``[N, K]`` in {-1, +1} -> packed bits uint8 ``[N, binary_row_bytes(K)]``."""
    _check_tensor(wq, "wq")
    if _native_for(wq):
        return torch.ops.bitops.pack_binary(wq)
    return ref.pack_binary(wq)


def unpack_binary(packed: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of :func:`pack_binary`."""
    _check_tensor(packed, "packed")
    _check_int(k)
    if _native_for(packed):
        return torch.ops.bitops.unpack_binary(packed, k)
    return ref.unpack_binary(packed, k)


def ternary_matmul_int(xq: torch.Tensor, packed: torch.Tensor, k: int) -> torch.Tensor:
    """Exact int32 ``[..., N]``: ``sum_k xq[..., k] * Wq[n, k]``."""
    _check_tensor(xq, "xq")
    _check_tensor(packed, "packed")
    _check_int(k)
    if _native_for(xq, packed):
        return torch.ops.bitops.ternary_matmul_int(xq, packed, k)
    return ref.ternary_matmul_int(xq, packed, k)


def binary_matmul_int(xbits: torch.Tensor, wbits: torch.Tensor, k: int) -> torch.Tensor:
    """Exact int32 XNOR-popcount product of packed sign bits."""
    _check_tensor(xbits, "xbits")
    _check_tensor(wbits, "wbits")
    _check_int(k)
    if _native_for(xbits, wbits):
        return torch.ops.bitops.binary_matmul_int(xbits, wbits, k)
    return ref.binary_matmul_int(xbits, wbits, k)


def _linear_args(x, packed, scale, bias, scale_name):
    _check_tensor(x, "x")
    _check_tensor(packed, "packed")
    _check_tensor(scale, scale_name)
    if bias is not None:
        _check_tensor(bias, "bias")
    return _native_for(x, packed, scale, bias)


def ternary_linear(x, packed, gamma, bias=None, act_bits=8):
    """``y = x @ (gamma * Wq).T + bias`` over packed ternary weights.

    ``act_bits=8`` quantizes x per row to int8 and accumulates exactly in int32 (W1.58A8);
    ``act_bits=None`` keeps x in float32 (add/sub of activations). Output dtype = x's.
    """
    if act_bits not in (8, None):
        raise ValueError(f"bitops: ternary_linear supports act_bits=8 or None, got {act_bits!r}")
    if not _linear_args(x, packed, gamma, bias, "gamma"):
        return ref.ternary_linear(x, packed, gamma, bias, act_bits)
    op = torch.ops.bitops.ternary_linear_i8 if act_bits == 8 else torch.ops.bitops.ternary_linear_f
    return op(x, packed, gamma, bias)


def binary_linear(x, packed, beta, bias=None, act_bits=8):
    """``y = x @ (beta * Wb).T + bias`` over packed binary weights.

    ``act_bits=8``: int8 activations; ``act_bits=1``: sign activations, XNOR-popcount;
    ``act_bits=None``: float activations.
    """
    ops = {8: "binary_linear_i8", 1: "binary_linear_b1", None: "binary_linear_f"}
    if act_bits not in ops:
        raise ValueError(f"bitops: binary_linear supports act_bits=8, 1 or None, got {act_bits!r}")
    if not _linear_args(x, packed, beta, bias, "beta"):
        return ref.binary_linear(x, packed, beta, bias, act_bits)
    return getattr(torch.ops.bitops, ops[act_bits])(x, packed, beta, bias)


# --------------------------------------------------------------------------- fake kernels

if LOADED:

    def _lead(x, last):
        return (*x.shape[:-1], last)

    @torch.library.register_fake("bitops::quantize_activations")
    def _(x):
        return x.new_empty(x.shape, dtype=torch.int8), x.new_empty(x.shape[:-1], dtype=torch.float32)

    @torch.library.register_fake("bitops::binarize_activations")
    def _(x):
        bits = x.new_empty(_lead(x, ref.binary_row_bytes(x.shape[-1])), dtype=torch.uint8)
        return bits, x.new_empty(x.shape[:-1], dtype=torch.float32)

    @torch.library.register_fake("bitops::pack_ternary")
    def _(wq):
        return wq.new_empty((wq.shape[0], ref.ternary_row_bytes(wq.shape[1])), dtype=torch.uint8)

    @torch.library.register_fake("bitops::pack_binary")
    def _(wq):
        return wq.new_empty((wq.shape[0], ref.binary_row_bytes(wq.shape[1])), dtype=torch.uint8)

    @torch.library.register_fake("bitops::unpack_ternary")
    def _(packed, k):
        return packed.new_empty((packed.shape[0], k), dtype=torch.int8)

    @torch.library.register_fake("bitops::unpack_binary")
    def _(packed, k):
        return packed.new_empty((packed.shape[0], k), dtype=torch.int8)

    @torch.library.register_fake("bitops::ternary_matmul_int")
    def _(xq, packed, k):
        return xq.new_empty(_lead(xq, packed.shape[0]), dtype=torch.int32)

    @torch.library.register_fake("bitops::binary_matmul_int")
    def _(xbits, wbits, k):
        return xbits.new_empty(_lead(xbits, wbits.shape[0]), dtype=torch.int32)

    def _linear_fake(x, packed, scale, bias):
        return x.new_empty(_lead(x, packed.shape[0]))

    for _name in ("ternary_linear_i8", "ternary_linear_f", "binary_linear_i8", "binary_linear_f", "binary_linear_b1"):
        torch.library.register_fake(f"bitops::{_name}")(_linear_fake)

__all__ += ["backend"]
