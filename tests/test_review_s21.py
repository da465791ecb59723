"""Regressions found in review: gradients the fast path dropped, norms fused twice into shared
layers, Int8Linear's fbgemm prepack going stale and saturating on non-VNNI CPUs."""

import os
import subprocess
import sys

import pytest
import torch

import bitops
from bitops.nn import BitLinear, Int8Linear


@pytest.mark.parametrize("norm", [False, True])
def test_packed_layer_keeps_the_graph_for_a_bias_that_requires_grad(norm):
    layer = BitLinear(64, 16, bias=True, norm=norm).eval().pack()
    if layer.norm is not None:
        layer.norm.requires_grad_(False)
    t = layer.bias
    t.requires_grad_(True)
    x = torch.randn(3, 64)  # x itself needs no gradient
    y = layer(x)
    assert y.grad_fn is not None
    y.sum().backward()
    assert t.grad is not None
