"""Quantizers with straight-through estimators (DESIGN.md section 1).

The forward pass sees quantized values; the backward pass treats each quantizer as the identity
(sign activations: the identity where ``|x| <= 1``, zero elsewhere). The weight scale (gamma or
beta) is part of the quantizer, so no gradient flows through it separately:
``dL/dW = dL/dW_dequantized``.
"""

from __future__ import annotations

import torch

from . import ops

__all__ = [
    "TernaryWeightSTE",
    "BinaryWeightSTE",
    "Int8ActivationSTE",
    "SignActivationSTE",
    "ternary_weight_ste",
    "binary_weight_ste",
    "int8_activation_ste",
    "sign_activation_ste",
]


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
