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
from . import reference as ref
from ._native import LOADED
from .autograd import gemm_dtype, grad_bias, grad_input, rows_of
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


def _forward_saving(x, packed: PackedWeight, bias, act_bits, save_x: bool, norm=None):
    """y, and what the weight gradient needs of the layer's input (x, or its RMSNorm when
    ``norm = (weight, eps)``): the activations the kernel multiplied, as cheaply as they keep
    (int8 codes + scales for act_bits=8, int8 signs for act_bits=1, the input itself for float
    activations). On the CPU the int8 forward normalizes, quantizes and multiplies in one call
    and hands back its own quantization."""
    if act_bits == 8 and LOADED and x.is_cpu and packed.qdata.is_cpu and not ops.is_compiling():
        qdata, _, scale = ops.linear_operands(packed.kind, x, packed, None, None, "scale")
        norm_weight, eps = norm if norm is not None else (None, 0.0)
        with ops.below_autograd():
            y, xq, s = getattr(torch.ops.bitops, _WITH_ACT[packed.kind])(x, qdata, scale, bias, norm_weight, eps)
        return y, ((xq, s) if save_x else ())
    dtype = x.dtype
    if norm is not None:  # float32 up to the quantizer, as the fused kernel keeps it
        x = ref.rms_norm(x, *norm)
    y = kernel_linear(x, packed, bias, act_bits).to(dtype)
    if not save_x:
        return y, ()
    if act_bits == 8:
        return y, ops.quantize_activations(x)  # bit-identical to the kernel's own quantization
    if act_bits == 1:
        return y, (torch.where(x >= 0, 1, -1).to(torch.int8),)
    return y, (x,)


def rms_norm_backward(grad, x, weight, eps, needs_weight_grad: bool):
    """Gradients of ``bitops.reference.rms_norm(x, weight, eps)`` in float32:
    with ``r = 1 / sqrt(mean(x^2) + eps)`` and ``g = grad * weight``,
    ``grad_x = r * (g - x * r^2 * mean(x * g))`` and ``grad_weight = sum(grad * x * r)``."""
    if LOADED and x.is_cpu and grad.is_cpu and weight.is_cpu and not ops.is_compiling():
        grad_x, grad_w = torch.ops.bitops.rms_norm_backward(grad, x, weight, eps)
        return grad_x, (grad_w if needs_weight_grad else None)
    xf = x.float()
    k = xf.shape[-1]
    r = (1.0 / torch.sqrt(xf.double().square().sum(dim=-1, keepdim=True) / k + eps)).float()
    g = grad.float() * weight.float()
    dot = (xf * g).sum(dim=-1, keepdim=True) / k
    grad_x = (g - xf * (r * r * dot)) * r
    grad_w = (grad.float() * (xf * r)).reshape(-1, k).sum(0) if needs_weight_grad else None
    return grad_x, grad_w


def _dequantized_activations(saved, act_bits) -> torch.Tensor:
    if act_bits == 8:
        xq, s = saved
        if LOADED and xq.is_cpu and not ops.is_compiling():
            return torch.ops.bitops.dequantize_activations(xq, s)  # one pass, the same division
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
    """``y = Q_act(norm(x)) @ (scale * Wq).T + bias``, forward on the packed kernels.

    Inputs: ``x [..., K]``, the latent ``weight [N, K]`` (it receives the STE gradient), ``bias``,
    the :class:`PackedWeight` of ``weight`` (quantized and packed once per step by the caller),
    ``act_bits``, for ``backward="int8"`` the packed ``W^T`` (else None), and optionally the
    RMSNorm in front of the quantizer (``norm_weight``, ``norm_eps``; bitops.reference.rms_norm),
    which the CPU forward fuses into the kernel call. It saves the packed weight (2 bits a value),
    not an int8 or float copy, and the int8 activations the forward kernel quantized (it does
    not quantize them again).

    Backward, exact (float32; a GEMM runs in bfloat16 when grad_y and its result are, as nn.Linear's):
      grad_h = (grad_y @ (scale * Wq)) [* (|h| <= 1) for sign activations]   (bitops.autograd)
      grad_W = grad_y^T @ Q_act(h)          (the dequantized activations the kernel saw)
      grad_b = sum of grad_y over the rows
    with h = norm(x) (or x); the norm's own backward then gives grad_x and grad_norm_weight.
    grad_h decodes Wq to float and uses the BLAS: training matrices are GEMMs (many rows),
    where a BLAS sgemm beats the packed float add/sub kernel by about 2x.
    Backward, int8: grad_h = Q8(grad_y) @ (scale * Wq) [* window] on the int8 kernels over W^T;
    everything else as above.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, packed: PackedWeight, act_bits, packed_t=None, norm_weight=None, norm_eps=0.0):
        norm = None if norm_weight is None else (norm_weight, norm_eps)
        y, saved = _forward_saving(x, packed, bias, act_bits, ctx.needs_input_grad[1], norm)
        ctx.act_bits, ctx.kind, ctx.k = act_bits, packed.kind, packed.in_features
        ctx.packed_t, ctx.norm_eps = packed_t, norm_eps
        ctx.n_saved_x = len(saved)
        ctx.x_shape, ctx.x_dtype = x.shape, x.dtype
        ctx.weight_dtype = weight.dtype
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.norm_dtype = None if norm_weight is None else norm_weight.dtype
        window = ()
        if act_bits == 1 and (ctx.needs_input_grad[0] or (norm is not None and ctx.needs_input_grad[6])):
            h = x if norm is None else ref.rms_norm(x, *norm)
            window = (h.abs() <= 1,)
        norm_inputs = (x, norm_weight) if norm is not None and (ctx.needs_input_grad[0] or ctx.needs_input_grad[6]) else ()
        ctx.n_window, ctx.n_norm = len(window), len(norm_inputs)
        weights = (packed.qdata, packed.scale) if packed_t is None else (packed_t.qdata, packed_t.scale)
        ctx.save_for_backward(*weights, *saved, *window, *norm_inputs)
        ctx.n_out = packed.out_features
        return y

    @staticmethod
    def backward(ctx, grad_y):
        qdata, scale, *rest = ctx.saved_tensors
        saved_x = rest[: ctx.n_saved_x]
        window = rest[ctx.n_saved_x : ctx.n_saved_x + ctx.n_window]
        norm_inputs = rest[ctx.n_saved_x + ctx.n_window :]
        n, k = ctx.n_out, ctx.k
        grad_x = grad_w = grad_b = grad_norm = None
        needs_h = ctx.needs_input_grad[0] or (ctx.n_norm and ctx.needs_input_grad[6])
        if needs_h:
            mask = window[0] if window else None
            h_dtype = ctx.x_dtype if not ctx.n_norm else torch.float32
            if ctx.packed_t is None:
                grad_h = grad_input(grad_y, ctx.kind, qdata, scale, k, ctx.x_shape, h_dtype, mask)
            else:
                grad_h = int8_grad_input(grad_y, ctx.packed_t, ctx.x_shape, h_dtype, mask)
            if ctx.n_norm:
                x, norm_weight = norm_inputs
                grad_x, grad_norm = rms_norm_backward(grad_h, x, norm_weight, ctx.norm_eps, ctx.needs_input_grad[6])
                grad_x = grad_x.to(ctx.x_dtype)
                grad_norm = None if grad_norm is None else grad_norm.to(ctx.norm_dtype)
            else:
                grad_x = grad_h
        if ctx.needs_input_grad[1]:
            dtype = gemm_dtype(grad_y, ctx.weight_dtype)
            x_used = _dequantized_activations(saved_x, ctx.act_bits).reshape(-1, k).to(dtype)
            grad_w = (rows_of(grad_y, n).to(dtype).T @ x_used).to(ctx.weight_dtype)
        if ctx.needs_input_grad[2]:
            grad_b = grad_bias(grad_y, n, ctx.bias_dtype)
        if not ctx.needs_input_grad[0]:
            grad_x = None
        return grad_x, grad_w, grad_b, None, None, None, grad_norm, None


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
    *,
    norm_weight: torch.Tensor | None = None,
    norm_eps: float = 1e-6,
) -> torch.Tensor:
    """The trainable quantized linear layer, forward on the packed kernels.

    ``quantized`` lets a caller that already quantized and packed ``weight`` (for this step)
    reuse it; by default the weight is quantized and packed here. ``backward``: ``"exact"``
    (the straight-through gradient) or ``"int8"`` (grad_x on the int8 kernels; see the module).
    ``norm_weight`` / ``norm_eps``: an RMSNorm of x in front of the activation quantizer
    (:func:`bitops.reference.rms_norm`), differentiable in x and ``norm_weight``.
    """
    check_config(kind, act_bits)
    check_backward(backward)
    leaves = (x, weight, bias, norm_weight)
    tracks_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in leaves)
    int8_grad = backward == "int8" and tracks_grad and weight.shape[0] > 0 and (
        x.requires_grad or (norm_weight is not None and norm_weight.requires_grad))
    packed_t = None
    if quantized is None:
        packed = quantize_weight(weight, kind, transposed=int8_grad)
        if int8_grad:
            packed, packed_t = packed
    else:
        packed = quantized
        packed_t = transpose_packed(quantized) if int8_grad else None
    if not tracks_grad:  # no graph: skip saving activations for a backward that never comes
        h = x if norm_weight is None else ref.rms_norm(x, norm_weight, norm_eps)
        return kernel_linear(h, packed, bias, act_bits).to(x.dtype)
    return BitLinearFunction.apply(x, weight, bias, packed, act_bits, packed_t, norm_weight, norm_eps)
