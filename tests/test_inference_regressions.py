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


def test_fuse_norms_leaves_layers_shared_between_decoder_layers_alone():
    pytest.importorskip("transformers.integrations.bitnet")
    from .test_hf import _tiny_bitnet

    def shared():
        model = _tiny_bitnet()
        l0, l1 = model.model.layers
        for name in ("q_proj", "k_proj", "v_proj"):  # layer 1 reuses layer 0's projections
            setattr(l1.self_attn, name, getattr(l0.self_attn, name))
        with torch.no_grad():
            l1.input_layernorm.weight.mul_(3)
        return model

    ids = torch.randint(0, 96, (1, 10), generator=torch.Generator().manual_seed(5))
    fused, unfused = bitops.hf.convert(shared()), bitops.hf.convert(shared(), fuse=False)
    assert fused.model.layers[0].self_attn.q_proj is fused.model.layers[1].self_attn.q_proj
    with torch.no_grad():
        got, want = fused(ids).logits, unfused(ids).logits
    cos = torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0)
    assert cos >= 0.9999, float(cos)  # normalized twice (norm0(norm1(x))) before the fix: ~0.99


def _int8_float_form(m, x):
    return torch.nn.functional.linear(x, m.qweight.float() * m.scale[:, None], m.bias)


def test_int8_linear_repacks_after_in_place_edits():
    torch.manual_seed(0)
    m = Int8Linear.from_linear(torch.nn.Linear(64, 32))
    x = torch.randn(4, 64)
    with torch.no_grad():
        m(x)  # fbgemm packs its copy here
        m.scale.mul_(2)
        m.qweight[0].neg_()
        got, want = m(x), _int8_float_form(m, x)
    tol = 0.05 * want.abs().max()
    assert (got - want).abs().max() <= tol, float((got - want).abs().max())


_AVX2_CHECK = """
import torch
from bitops.nn import Int8Linear
torch.manual_seed(1)
w = torch.randn(256, 1024) * 0.02
m = Int8Linear.from_weight(w)
x = torch.randn(8, 1024)
with torch.no_grad():
    y = m(x)
want = x @ (m.qweight.float() * m.scale[:, None]).T
err = float(((y - want).abs().amax(-1) / want.abs().amax(-1)).max())
assert err < 0.035, err  # 7-bit activations: ~0.021; saturated int16 pairs: ~0.057
"""


@pytest.mark.skipif("fbgemm" not in torch.backends.quantized.supported_engines, reason="no fbgemm")
def test_int8_linear_is_right_on_fbgemm_without_vnni():
    env = {**os.environ, "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2", "BITOPS_QUIET": "1"}
    run = subprocess.run([sys.executable, "-c", _AVX2_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
