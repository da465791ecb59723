"""Bf16Linear: ``nn.Linear`` over bf16 weights, whose decode-sized calls stream the weights.

For the float layer a BitNet model keeps in bf16: its output head (128256 x 2560 in the 2B4T
model, 0.66 GB, more bytes per decoded token than all its ternary layers together). torch's bf16
``F.linear`` on one row of x reads those weights at about half the memory bandwidth on the CPU;
bitops' GEMV (:func:`bitops.ops.bf16_linear`) reads them front to back at memory speed
(benchmarks/results/decode_cpu.md). Calls with more rows of x (prefill of every position,
training) and calls that need gradients or run elsewhere are plain ``nn.Linear``.

The module is an ``nn.Linear``: same parameters, state_dict and tying (``from_linear`` shares the
weight and bias tensors, so a head tied to the input embedding stays tied).
"""

from __future__ import annotations

import torch
from torch import nn

from . import ops

__all__ = ["Bf16Linear"]

# Rows of x up to which the GEMV runs: it reads the weights once per call and each row of x
# adds one FMA per weight, so a few rows stay memory-bound; GEMMs are torch's job.
GEMV_MAX_ROWS = 4


class Bf16Linear(nn.Linear):
    """``nn.Linear`` whose inference calls with at most 4 rows of x and a bf16 weight on the CPU
    run bitops' streaming GEMV (float32 sums, output in x's dtype). Under ``torch.compile`` the
    GEMV is an opaque custom op (it has a fake kernel), so the graph keeps it."""

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Bf16Linear:
        """A Bf16Linear sharing ``linear``'s weight and bias (no copy)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"bitops: Bf16Linear.from_linear takes an nn.Linear, got {type(linear).__name__}")
        module = cls(linear.in_features, linear.out_features, bias=False, device="meta")
        module.weight = linear.weight
        module.bias = linear.bias
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if (w.dtype == torch.bfloat16 and x.is_cpu and w.is_cpu and x.dim() >= 1 and x.shape[-1] == self.in_features
                and x.numel() <= GEMV_MAX_ROWS * self.in_features
                and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad
                                                      or (self.bias is not None and self.bias.requires_grad)))):
            return ops.bf16_linear(x, w, self.bias)
        return super().forward(x)
