"""The trainable quantized linear layer on the packed kernels: what ``BitLinear`` runs.

:func:`bit_linear` quantizes and packs the latent weight (once per step, in one pass over it,
or reuses the caller's :class:`~bitops.PackedWeight`), runs the packed-kernel forward, so the
training-mode output is bit-identical to the packed inference output, and backpropagates with
straight-through estimators (DESIGN.md section 1).

Two backward modes:

* ``"exact"`` (the default): the straight-through gradient in float32, equal to the
  fake-quant oracle's (:func:`bitops.quant.fake_quant_linear`);
* ``"int8"``: a different, cheaper estimator (the SwitchBack / int8-training recipe):
  ``grad_x = Q8(grad_y) @ (scale * Wq)`` on the int8 packed kernels, with grad_y quantized
  per row to int8 absmax exactly as activations are, over a packed ``W^T`` made in the same
  pass as the forward's packing. ``grad_W`` stays the exact float product.
"""

from __future__ import annotations

import torch

from . import ops
from ._native import LOADED
from .autograd import grad_bias, grad_input
from .config import check_config
from .packed import PackedWeight

__all__ = ["BACKWARD_MODES", "quantize_weight", "kernel_linear", "BitLinearFunction", "bit_linear"]

BACKWARD_MODES = ("exact", "int8")


def quantize_weight(weight: torch.Tensor, kind: str, transposed: bool = False):
    """Quantizes and packs a float ``[N, K]`` weight (no gradient): a PackedWeight with its
    scale, and with ``transposed`` also the packed ``W^T`` (see :func:`bitops.ops.quantize_pack`)."""
    return ops.quantize_pack(kind, weight.detach(), transposed)


def kernel_linear(x: torch.Tensor, packed: PackedWeight, bias, act_bits) -> torch.Tensor:
    """The packed-kernel linear layer; the one computation both training and inference run."""
    return ops.linear(packed.kind, x, packed, None, bias, act_bits, None, "scale")


_WITH_ACT = {"ternary": "ternary_linear_i8_and_act", "binary": "binary_linear_i8_and_act"}


def _forward_saving(x, packed: PackedWeight, bias, act_bits, save_x: bool):
    """y, and what the weight gradient needs of x: the activations the kernel multiplied, as
    cheaply as they keep (int8 codes + scales for act_bits=8, int8 signs for act_bits=1, x itself
    for float activations). On the CPU the int8 forward hands back its own quantization."""
    if save_x and act_bits == 8 and LOADED and x.is_cpu and packed.qdata.is_cpu and not ops.is_compiling():
        qdata, _, scale = ops.linear_operands(packed.kind, x, packed, None, None, "scale")
        with ops.below_autograd():
            y, xq, s = getattr(torch.ops.bitops, _WITH_ACT[packed.kind])(x, qdata, scale, bias)
        return y, (xq, s)
    y = kernel_linear(x, packed, bias, act_bits)
    if not save_x:
        return y, ()
    if act_bits == 8:
        return y, ops.quantize_activations(x)  # bit-identical to the kernel's own quantization
    if act_bits == 1:
        return y, (torch.where(x >= 0, 1, -1).to(torch.int8),)
    return y, (x,)


def _dequantized_activations(saved, act_bits) -> torch.Tensor:
    if act_bits == 8:
        xq, s = saved
        return xq.float() / s.unsqueeze(-1)
    return saved[0].float()  # signs (act_bits=1) or x itself (float activations)


def transpose_packed(packed: PackedWeight) -> PackedWeight:
    """The packed ``W^T`` of a packed ``W`` with a per-tensor scale (unpacks and packs again)."""
    if packed.scale is None or packed.scale.numel() != 1:
        raise ValueError("bitops: backward='int8' needs a weight with one scale for the whole tensor")
    wq = packed.unpack().T.contiguous()
    pack = ops.pack_ternary if packed.kind == "ternary" else ops.pack_binary
    return pack(wq, packed.scale)


class BitLinearFunction(torch.autograd.Function):
    """``y = Q_act(x) @ (scale * Wq).T + bias``, forward on the packed kernels.

    Inputs: ``x [..., K]``, the latent ``weight [N, K]`` (it receives the STE gradient), ``bias``,
    the :class:`PackedWeight` of ``weight`` (quantized and packed once per step by the caller),
    ``act_bits``, and for ``backward="int8"`` the packed ``W^T`` (else None). It saves the packed
    weight (2 bits a value), not an int8 or float copy, and the int8 activations the forward
    kernel quantized (it does not quantize them again).

    Backward, exact (float32):
      grad_x = (grad_y @ (scale * Wq)) [* (|x| <= 1) for sign activations]   (bitops.autograd)
      grad_W = grad_y^T @ Q_act(x)          (the dequantized activations the kernel saw)
      grad_b = sum of grad_y over the rows
    grad_x decodes Wq to float and uses the BLAS: training matrices are GEMMs (many rows),
    where a BLAS sgemm beats the packed float add/sub kernel by about 2x.
    Backward, int8: grad_x = Q8(grad_y) @ (scale * Wq) [* window] on the int8 kernels over W^T;
    grad_W and grad_b as above.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, packed: PackedWeight, act_bits, packed_t: PackedWeight | None = None):
        y, saved = _forward_saving(x, packed, bias, act_bits, save_x=ctx.needs_input_grad[1])
        ctx.act_bits, ctx.kind, ctx.k = act_bits, packed.kind, packed.in_features
        ctx.packed_t = packed_t
        ctx.n_saved_x = len(saved)
        ctx.x_shape, ctx.x_dtype = x.shape, x.dtype
        ctx.weight_dtype = weight.dtype
        ctx.bias_dtype = None if bias is None else bias.dtype
        window = (x.abs() <= 1,) if act_bits == 1 and ctx.needs_input_grad[0] else ()
        weights = (packed.qdata, packed.scale) if packed_t is None else (packed_t.qdata, packed_t.scale)
        ctx.save_for_backward(*weights, *saved, *window)
        ctx.n_out = packed.out_features
        return y

    @staticmethod
    def backward(ctx, grad_y):
        qdata, scale, *rest = ctx.saved_tensors
        saved_x, window = rest[: ctx.n_saved_x], rest[ctx.n_saved_x :]
        n, k = ctx.n_out, ctx.k
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            mask = window[0] if window else None
            if ctx.packed_t is None:
                grad_x = grad_input(grad_y, ctx.kind, qdata, scale, k, ctx.x_shape, ctx.x_dtype, mask)
            else:
                grad_x = int8_grad_input(grad_y, ctx.packed_t, ctx.x_shape, ctx.x_dtype, mask)
        if ctx.needs_input_grad[1]:
            x_used = _dequantized_activations(saved_x, ctx.act_bits).reshape(-1, k)
            grad_w = (grad_y.reshape(-1, n).float().T @ x_used).to(ctx.weight_dtype)
        if ctx.needs_input_grad[2]:
            grad_b = grad_bias(grad_y, n, ctx.bias_dtype)
        return grad_x, grad_w, grad_b, None, None, None


def int8_grad_input(grad_y, packed_t: PackedWeight, x_shape, x_dtype, window=None) -> torch.Tensor:
    """``Q8(grad_y) @ (scale * Wq)``: grad_y quantized per row to int8 absmax, on the int8 kernels."""
    with torch.no_grad():
        grad_x = kernel_linear(grad_y.reshape(-1, packed_t.in_features), packed_t, None, 8)
    grad_x = grad_x.reshape(x_shape)
    if window is not None:
        grad_x = grad_x * window
    return grad_x.to(x_dtype)


def check_backward(backward: str) -> None:
    if backward not in BACKWARD_MODES:
        raise ValueError(f"bitops: backward must be 'exact' or 'int8', got {backward!r}")


def bit_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    kind: str = "ternary",
    act_bits=8,
    quantized: PackedWeight | None = None,
    backward: str = "exact",
) -> torch.Tensor:
    """The trainable quantized linear layer, forward on the packed kernels.

    ``quantized`` lets a caller that already quantized and packed ``weight`` (for this step)
    reuse it; by default the weight is quantized and packed here. ``backward``: ``"exact"``
    (the straight-through gradient) or ``"int8"`` (grad_x on the int8 kernels; see the module).
    """
    check_config(kind, act_bits)
    check_backward(backward)
    tracks_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    int8_grad_x = backward == "int8" and tracks_grad and x.requires_grad and weight.shape[0] > 0
    packed_t = None
    if quantized is None:
        packed = quantize_weight(weight, kind, transposed=int8_grad_x)
        if int8_grad_x:
            packed, packed_t = packed
    else:
        packed = quantized
        packed_t = transpose_packed(quantized) if int8_grad_x else None
    if not tracks_grad:  # no graph: skip saving activations for a backward that never comes
        return kernel_linear(x, packed, bias, act_bits)
    return BitLinearFunction.apply(x, weight, bias, packed, act_bits, packed_t)
