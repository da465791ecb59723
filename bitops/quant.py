"""Quantizers with straight-through estimators, and the fused linear Function over the kernels.

DESIGN.md section 1: the forward pass sees quantized values; the backward pass treats each
quantizer as the identity (sign activations: the identity where ``|x| <= 1``, zero elsewhere).
The weight scale (gamma or beta) is part of the quantizer, so no gradient flows through it
separately: ``dL/dW = dL/dW_dequantized``.

:func:`bit_linear` is what :class:`bitops.nn.BitLinear` trains with: its forward runs the
packed kernels (``bitops.ternary_linear`` / ``bitops.binary_linear``), so the training-mode
output is bit-identical to the packed inference output. :func:`fake_quant_linear` is the
same layer written as plain fake quantization in pure torch (the detach trick over
:mod:`bitops.reference`): the gradient oracle the fused Function is tested against.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from . import ops
from . import reference as ref

__all__ = [
    "WEIGHT_KINDS",
    "ACT_BITS",
    "QuantizedWeight",
    "quantize_weight",
    "check_config",
    "kernel_linear",
    "TernaryWeightSTE",
    "BinaryWeightSTE",
    "Int8ActivationSTE",
    "SignActivationSTE",
    "BitLinearFunction",
    "ternary_weight_ste",
    "binary_weight_ste",
    "int8_activation_ste",
    "sign_activation_ste",
    "bit_linear",
    "fake_quant_linear",
]

WEIGHT_KINDS = ("ternary", "binary")
ACT_BITS = (8, 1, None)


def check_config(weight: str, act_bits) -> None:
    """Raises a clear error for an unknown weight kind or an unsupported activation width."""
    if weight not in WEIGHT_KINDS:
        raise ValueError(f"bitops: weight must be 'ternary' or 'binary', got {weight!r}")
    if act_bits not in ACT_BITS:
        raise ValueError(f"bitops: act_bits must be 8, 1 or None, got {act_bits!r}")
    if act_bits == 1 and weight != "binary":
        raise ValueError(
            "bitops: act_bits=1 (sign activations, XNOR-popcount) needs binary weights; "
            f"got weight={weight!r}. Use weight='binary', or act_bits=8 / None with ternary weights"
        )


# --------------------------------------------------------------------------- weights


class QuantizedWeight(NamedTuple):
    """A weight matrix quantized once: the int8 values, their scale, and the packed form."""

    kind: str  # "ternary" | "binary"
    wq: torch.Tensor  # int8 [N, K]: {-1, 0, 1} or {-1, 1}
    scale: torch.Tensor  # float32, one value: gamma (ternary) or beta (binary)
    packed: torch.Tensor  # uint8 [N, row_bytes], the kernels' layout

    def dequantized(self) -> torch.Tensor:
        """``scale * wq`` in float32, ``[N, K]``: the weight the forward pass really used."""
        return self.wq.float() * self.scale.reshape(-1, 1)


def quantize_weight(weight: torch.Tensor, kind: str) -> QuantizedWeight:
    """Quantizes and packs a float ``[N, K]`` weight (no gradient) for the kernels."""
    w = weight.detach()
    if kind == "ternary":
        wq, scale = ops.ternary_quantize(w)
        packed = ops.pack_ternary(wq)
    elif kind == "binary":
        wq, scale = ops.binary_quantize(w)
        packed = ops.pack_binary(wq)
    else:
        raise ValueError(f"bitops: weight must be 'ternary' or 'binary', got {kind!r}")
    return QuantizedWeight(kind, wq, scale, packed)


def kernel_linear(x: torch.Tensor, kind: str, packed, scale, bias, act_bits) -> torch.Tensor:
    """The packed-kernel linear layer; the one computation both training and inference run."""
    op = ops.ternary_linear if kind == "ternary" else ops.binary_linear
    return op(x, packed, scale, bias, act_bits)


# --------------------------------------------------------------------------- STE quantizers


class TernaryWeightSTE(torch.autograd.Function):
    """``w -> gamma * clamp(round(w / gamma), -1, 1)`` (absmean); backward: identity."""

    @staticmethod
    def forward(ctx, w):
        wq, gamma = ops.ternary_quantize(w.detach())
        return (wq.float() * gamma).to(w.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


class BinaryWeightSTE(torch.autograd.Function):
    """``w -> beta * sign(w)`` (+1 at 0, ``beta = mean|w|``); backward: identity."""

    @staticmethod
    def forward(ctx, w):
        wq, beta = ops.binary_quantize(w.detach())
        return (wq.float() * beta).to(w.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


class Int8ActivationSTE(torch.autograd.Function):
    """Per-row int8 absmax fake quantization ``x -> xq / s``; backward: identity."""

    @staticmethod
    def forward(ctx, x):
        xq, s = ops.quantize_activations(x.detach())
        return (xq.float() / s.unsqueeze(-1)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


class SignActivationSTE(torch.autograd.Function):
    """``x -> sign(x)`` with 0 -> +1; backward: the gradient where ``|x| <= 1``, zero elsewhere."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x.abs() <= 1)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (passes,) = ctx.saved_tensors
        return grad * passes


def ternary_weight_ste(w: torch.Tensor) -> torch.Tensor:
    return TernaryWeightSTE.apply(w)


def binary_weight_ste(w: torch.Tensor) -> torch.Tensor:
    return BinaryWeightSTE.apply(w)


def int8_activation_ste(x: torch.Tensor) -> torch.Tensor:
    return Int8ActivationSTE.apply(x)


def sign_activation_ste(x: torch.Tensor) -> torch.Tensor:
    return SignActivationSTE.apply(x)


# --------------------------------------------------------------------------- the fused linear


def _activations_as_used(x: torch.Tensor, act_bits):
    """What backward needs of x: the activations the kernel multiplied, as cheaply as they keep.

    int8 codes + scales (1 byte per value) for act_bits=8, int8 signs for act_bits=1, x itself
    for float activations.
    """
    if act_bits == 8:
        return ops.quantize_activations(x)  # bit-identical to the kernel's own quantization
    if act_bits == 1:
        return (torch.where(x >= 0, 1, -1).to(torch.int8),)
    return (x,)


def _dequantized_activations(saved, act_bits) -> torch.Tensor:
    if act_bits == 8:
        xq, s = saved
        return xq.float() / s.unsqueeze(-1)
    return saved[0].float()  # signs (act_bits=1) or x itself (float activations)


class BitLinearFunction(torch.autograd.Function):
    """``y = Q_act(x) @ (scale * Wq).T + bias``, forward on the packed kernels.

    Inputs: ``x [..., K]``, the latent ``weight [N, K]`` (it receives the STE gradient), ``bias``,
    the :class:`QuantizedWeight` of ``weight`` (quantized and packed once per step by the
    caller), and ``act_bits``.

    Backward, in float32:
      grad_x = (grad_y @ (scale * Wq)) [* (|x| <= 1) for sign activations]
      grad_W = grad_y^T @ Q_act(x)          (the dequantized activations the kernel saw)
      grad_b = sum of grad_y over the rows
    grad_x decodes Wq to float and uses the BLAS rather than the kernels' float-activation
    path on a transposed packed copy: the product is the same up to float rounding, there is no
    second pack per step, and training matrices are GEMMs (many rows), where a BLAS sgemm beats a
    packed add/sub kernel by 10x or more (on the portable CPU kernels: 0.8 ms vs 16 ms for
    64x512x512, 12 ms vs 230 ms for 256x1024x1024, packing the transpose included).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, qw: QuantizedWeight, act_bits):
        y = kernel_linear(x, qw.kind, qw.packed, qw.scale, bias, act_bits)
        saved = _activations_as_used(x, act_bits) if ctx.needs_input_grad[1] else ()
        ctx.act_bits = act_bits
        ctx.n_saved_x = len(saved)
        ctx.x_shape, ctx.x_dtype = x.shape, x.dtype
        ctx.weight_dtype = weight.dtype
        ctx.bias_dtype = None if bias is None else bias.dtype
        window = (x.abs() <= 1,) if act_bits == 1 and ctx.needs_input_grad[0] else ()
        ctx.save_for_backward(qw.wq, qw.scale, *saved, *window)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        wq, scale, *rest = ctx.saved_tensors
        saved_x, window = rest[: ctx.n_saved_x], rest[ctx.n_saved_x :]
        n, k = wq.shape
        g = grad_y.reshape(-1, n).float()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = g @ (wq.float() * scale.reshape(-1, 1))
            grad_x = grad_x.reshape(ctx.x_shape)
            if window:
                grad_x = grad_x * window[0]
            grad_x = grad_x.to(ctx.x_dtype)
        if ctx.needs_input_grad[1]:
            x_used = _dequantized_activations(saved_x, ctx.act_bits).reshape(-1, k)
            grad_w = (g.T @ x_used).to(ctx.weight_dtype)
        if ctx.needs_input_grad[2]:
            grad_b = g.sum(0).to(ctx.bias_dtype)
        return grad_x, grad_w, grad_b, None, None


def bit_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    kind: str = "ternary",
    act_bits=8,
    quantized: QuantizedWeight | None = None,
) -> torch.Tensor:
    """The trainable quantized linear layer, forward on the packed kernels.

    ``quantized`` lets a caller that already quantized and packed ``weight`` (for this step)
    reuse it; by default the weight is quantized and packed here.
    """
    check_config(kind, act_bits)
    qw = quantize_weight(weight, kind) if quantized is None else quantized
    tracks_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias)
    )
    if not tracks_grad:  # no graph: skip saving activations for a backward that never comes
        return kernel_linear(x, qw.kind, qw.packed, qw.scale, bias, act_bits)
    return BitLinearFunction.apply(x, weight, bias, qw, act_bits)


# --------------------------------------------------------------------------- the gradient oracle


def fake_quant_linear(x, weight, bias=None, kind: str = "ternary", act_bits=8) -> torch.Tensor:
    """The same layer as plain fake quantization in pure torch (the detach trick).

    Forward values equal :func:`bit_linear`'s up to float rounding (this one multiplies
    dequantized floats); its autograd gradients are the STE gradients :func:`bit_linear` must
    reproduce. Uses only :mod:`bitops.reference`, never the kernels.
    """
    check_config(kind, act_bits)
    quantize = ref.ternary_quantize if kind == "ternary" else ref.binary_quantize
    wq, scale = quantize(weight.detach())
    w32 = weight.float()
    w_fq = w32 + (wq.float() * scale - w32).detach()
    x32 = x.float()
    if act_bits == 8:
        xq, s = ref.quantize_activations(x.detach())
        x_fq = x32 + (xq.float() / s.unsqueeze(-1) - x32).detach()
    elif act_bits == 1:
        window = x32.clamp(-1, 1)  # its gradient is the |x| <= 1 window
        x_fq = window + (torch.where(x32 >= 0, 1.0, -1.0) - window).detach()
    else:
        x_fq = x32
    y = F.linear(x_fq, w_fq, None if bias is None else bias.float())
    return y.to(x.dtype)
