"""The gradient oracle: a quantized linear layer as plain fake quantization in pure torch.

The detach trick over :mod:`bitops.reference`, never the kernels: its forward values equal
:func:`bitops.bit_linear.bit_linear`'s up to float rounding (this one multiplies dequantized
floats), and its autograd gradients are the straight-through gradients that the kernels'
backward (:mod:`bitops.autograd`, ``BitLinearFunction``) must reproduce.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import reference as ref
from .config import check_config

__all__ = ["fake_quant_linear"]


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
