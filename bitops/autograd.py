"""Straight-through gradients of the public linear ops (DESIGN.md section 1).

The forward of ``bitops.ternary_linear`` / ``binary_linear`` quantizes x; the backward treats
that quantizer as the identity (sign activations: the identity where ``|x| <= 1``, zero
elsewhere), and the packed weights and their scale are constants:

    grad_x = grad_y @ (scale * Wq)        [* (|x| <= 1) for act_bits=1]
    grad_bias = grad_y summed over rows

This is registered on the native ops (``torch.library.register_autograd``), so
``torch.ops.bitops.*`` are differentiable too, and the pure-torch fallback runs the same
backward through :class:`ReferenceLinear`. :class:`bitops.bit_linear.BitLinearFunction` reuses
:func:`grad_input` for its input gradient.
"""

from __future__ import annotations

import math

import torch

from . import reference as ref
from ._native import HAS_CUDA, LOADED

__all__ = ["grad_input", "grad_bias", "gemm_dtype", "rows_of", "ReferenceLinear", "reference_linear"]

_OP_CONFIG = {  # native op -> (weight kind, act_bits)
    "ternary_linear_i8": ("ternary", 8),
    "ternary_linear_f": ("ternary", None),
    "binary_linear_i8": ("binary", 8),
    "binary_linear_b1": ("binary", 1),
    "binary_linear_f": ("binary", None),
}


def _decode(kind: str, qdata: torch.Tensor, k: int) -> torch.Tensor:
    """int8 ``[N, K]`` weight values of a packed buffer, on its device."""
    native = LOADED and (qdata.is_cpu or (qdata.is_cuda and HAS_CUDA) or qdata.device.type == "meta")
    if kind == "ternary":
        return torch.ops.bitops.unpack_ternary(qdata, k) if native else ref.unpack_ternary(qdata, k)
    return torch.ops.bitops.unpack_binary(qdata, k) if native else ref.unpack_binary(qdata, k)


def rows_of(t: torch.Tensor, n: int) -> torch.Tensor:
    """t [..., n] as [rows, n]; unlike reshape(-1, n), also for n = 0."""
    return t.reshape(math.prod(t.shape[:-1]), n)


def gemm_dtype(grad_y: torch.Tensor, out_dtype: torch.dtype) -> torch.dtype:
    """The dtype of a backward float GEMM: bfloat16 when grad_y and the gradient it makes are
    both bfloat16 (as nn.Linear's own backward in bfloat16: bf16 inputs, float32 accumulation,
    one rounding), float32 otherwise (float32 master weights keep a float32 gradient)."""
    both = grad_y.dtype == torch.bfloat16 and out_dtype == torch.bfloat16
    return torch.bfloat16 if both else torch.float32


def grad_input(grad_y, kind, qdata, scale, k, x_shape, x_dtype, window=None) -> torch.Tensor:
    """``grad_y @ (scale * Wq)`` in float32 (the fake-quant oracle's product; in bfloat16 for a
    bfloat16 grad_y, see :func:`gemm_dtype`), masked by ``window`` (``|x| <= 1``, sign
    activations), in x's dtype and shape."""
    n = qdata.shape[0]
    dtype = gemm_dtype(grad_y, x_dtype)
    gy = rows_of(grad_y, n).to(dtype)
    if LOADED and qdata.is_cpu and scale.is_cpu:
        grad_x = _decoded_product(gy, kind, qdata, scale, k, dtype)
    else:
        w = _decode(kind, qdata, k).to(torch.float32).mul_(scale.reshape(-1, 1))
        grad_x = gy @ w.to(dtype)
    grad_x = grad_x.reshape(x_shape)
    if window is not None:
        grad_x = grad_x * window
    return grad_x.to(x_dtype)


# Weight rows decoded at a time for grad_x on the CPU: a float32 block of at most 16 MiB. A whole
# N x K float32 copy (64 MiB at 4096 x 4096) comes back from the allocator as fresh pages every
# step, and touching them costs more than the GEMM's extra passes over its output.
_DECODE_BLOCK_FLOATS = 1 << 22


# A bfloat16 product decodes W whole, straight to bfloat16, up to this many values (64 MiB):
# summing bf16 blocks would round once per block, so larger ones take the float32 blocks.
_DECODE_WHOLE_BF16 = 1 << 25


def _decoded_product(gy, kind, qdata, scale, k, dtype):
    """``gy @ (scale * Wq)`` on the BLAS, decoding Wq in one native pass: float32 a block of rows
    at a time (accumulated in float32), or for bfloat16 the whole of W in bfloat16 (one GEMM, one
    rounding) when it is not too large, else float32 blocks rounded once at the end."""
    n = qdata.shape[0]
    dequantize = getattr(torch.ops.bitops, f"dequantize_{kind}")
    if dtype == torch.bfloat16:
        if n * k <= _DECODE_WHOLE_BF16:
            return gy @ dequantize(qdata, k, scale, torch.bfloat16)
        return _decoded_product(gy.float(), kind, qdata, scale, k, torch.float32).to(torch.bfloat16)
    rows = max(1, _DECODE_BLOCK_FLOATS // k)
    if n <= rows:
        return gy @ dequantize(qdata, k, scale)
    out = None
    for n0 in range(0, n, rows):
        block = slice(n0, min(n, n0 + rows))
        w = dequantize(qdata[block], k, scale if scale.numel() == 1 else scale.reshape(-1)[block])
        out = gy[:, block] @ w if out is None else out.addmm_(gy[:, block], w)
    return out


def grad_bias(grad_y, n, dtype) -> torch.Tensor:
    return rows_of(grad_y, n).float().sum(0).to(dtype)


def _save(ctx, act_bits, x, qdata, scale, bias):
    ctx.k, ctx.x_shape, ctx.x_dtype = x.shape[-1], x.shape, x.dtype
    ctx.bias_dtype = None if bias is None else bias.dtype
    window = (x.abs() <= 1,) if act_bits == 1 and x.requires_grad else ()
    ctx.save_for_backward(qdata, scale, *window)


def _grads(ctx, kind, grad_y):
    qdata, scale, *window = ctx.saved_tensors
    grad_x = grad_b = None
    if ctx.needs_input_grad[0]:
        grad_x = grad_input(grad_y, kind, qdata, scale, ctx.k, ctx.x_shape, ctx.x_dtype, window[0] if window else None)
    if ctx.needs_input_grad[3]:
        grad_b = grad_bias(grad_y, qdata.shape[0], ctx.bias_dtype)
    return grad_x, None, None, grad_b


def _register_native():
    for name, (kind, act_bits) in _OP_CONFIG.items():

        def setup_context(ctx, inputs, output, act_bits=act_bits):
            _save(ctx, act_bits, *inputs)

        def backward(ctx, grad_y, kind=kind):
            return _grads(ctx, kind, grad_y)

        torch.library.register_autograd(f"bitops::{name}", backward, setup_context=setup_context)


if LOADED:
    _register_native()


class ReferenceLinear(torch.autograd.Function):
    """The pure-torch linear op with the same straight-through backward as the native ops."""

    @staticmethod
    def forward(ctx, x, qdata, scale, bias, kind, act_bits, k):
        fn = ref.ternary_linear if kind == "ternary" else ref.binary_linear
        y = fn(x, qdata, scale, bias, act_bits, in_features=k)
        _save(ctx, act_bits, x, qdata, scale, bias)
        ctx.kind = kind
        return y

    @staticmethod
    def backward(ctx, grad_y):
        return (*_grads(ctx, ctx.kind, grad_y), None, None, None)


def reference_linear(kind, act_bits, x, qdata, scale, bias, k, needs_grad):
    if needs_grad:
        return ReferenceLinear.apply(x, qdata, scale, bias, kind, act_bits, k)
    fn = ref.ternary_linear if kind == "ternary" else ref.binary_linear
    return fn(x, qdata, scale, bias, act_bits, in_features=k)
