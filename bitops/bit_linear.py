"""The trainable quantized linear layer on the packed kernels: what ``BitLinear`` runs.

:func:`bit_linear` quantizes and packs the latent weight (once per step, or reuses the caller's
:class:`~bitops.PackedWeight`), runs the packed-kernel forward, so the training-mode output is
bit-identical to the packed inference output, and backpropagates with straight-through
estimators (DESIGN.md section 1).
"""

from __future__ import annotations

import torch

from . import ops
from .autograd import grad_bias, grad_input
from .config import check_config
from .packed import PackedWeight

__all__ = ["quantize_weight", "kernel_linear", "BitLinearFunction", "bit_linear"]


def quantize_weight(weight: torch.Tensor, kind: str) -> PackedWeight:
    """Quantizes and packs a float ``[N, K]`` weight (no gradient): a PackedWeight with its scale."""
    w = weight.detach()
    if kind == "ternary":
        wq, scale = ops.ternary_quantize(w)
        return ops.pack_ternary(wq, scale)
    if kind == "binary":
        wq, scale = ops.binary_quantize(w)
        return ops.pack_binary(wq, scale)
    raise ValueError(f"bitops: weight must be 'ternary' or 'binary', got {kind!r}")


def kernel_linear(x: torch.Tensor, packed: PackedWeight, bias, act_bits) -> torch.Tensor:
    """The packed-kernel linear layer; the one computation both training and inference run."""
    return ops.linear(packed.kind, x, packed, None, bias, act_bits, None, "scale")


def _activations_as_used(x: torch.Tensor, act_bits):
    """What the weight gradient needs of x: the activations the kernel multiplied, as cheaply
    as they keep: int8 codes + scales for act_bits=8, int8 signs for act_bits=1, x itself for
    float activations."""
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
    the :class:`PackedWeight` of ``weight`` (quantized and packed once per step by the caller),
    and ``act_bits``. It saves the packed weight (2 bits a value), not an int8 or float copy.

    Backward, in float32:
      grad_x = (grad_y @ (scale * Wq)) [* (|x| <= 1) for sign activations]   (bitops.autograd)
      grad_W = grad_y^T @ Q_act(x)          (the dequantized activations the kernel saw)
      grad_b = sum of grad_y over the rows
    grad_x decodes Wq to float and uses the BLAS: training matrices are GEMMs (many rows),
    where a BLAS sgemm beats a packed float add/sub kernel by 10x or more.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, packed: PackedWeight, act_bits):
        y = kernel_linear(x, packed, bias, act_bits)
        saved = _activations_as_used(x, act_bits) if ctx.needs_input_grad[1] else ()
        ctx.act_bits, ctx.kind, ctx.k = act_bits, packed.kind, packed.in_features
        ctx.n_saved_x = len(saved)
        ctx.x_shape, ctx.x_dtype = x.shape, x.dtype
        ctx.weight_dtype = weight.dtype
        ctx.bias_dtype = None if bias is None else bias.dtype
        window = (x.abs() <= 1,) if act_bits == 1 and ctx.needs_input_grad[0] else ()
        ctx.save_for_backward(packed.qdata, packed.scale, *saved, *window)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        qdata, scale, *rest = ctx.saved_tensors
        saved_x, window = rest[: ctx.n_saved_x], rest[ctx.n_saved_x :]
        n, k = qdata.shape[0], ctx.k
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_input(grad_y, ctx.kind, qdata, scale, k, ctx.x_shape, ctx.x_dtype,
                                window[0] if window else None)
        if ctx.needs_input_grad[1]:
            x_used = _dequantized_activations(saved_x, ctx.act_bits).reshape(-1, k)
            grad_w = (grad_y.reshape(-1, n).float().T @ x_used).to(ctx.weight_dtype)
        if ctx.needs_input_grad[2]:
            grad_b = grad_bias(grad_y, n, ctx.bias_dtype)
        return grad_x, grad_w, grad_b, None, None


def bit_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    kind: str = "ternary",
    act_bits=8,
    quantized: PackedWeight | None = None,
) -> torch.Tensor:
    """The trainable quantized linear layer, forward on the packed kernels.

    ``quantized`` lets a caller that already quantized and packed ``weight`` (for this step)
    reuse it; by default the weight is quantized and packed here.
    """
    check_config(kind, act_bits)
    packed = quantize_weight(weight, kind) if quantized is None else quantized
    tracks_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    if not tracks_grad:  # no graph: skip saving activations for a backward that never comes
        return kernel_linear(x, packed, bias, act_bits)
    return BitLinearFunction.apply(x, weight, bias, packed, act_bits)
