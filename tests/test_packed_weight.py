"""PackedWeight and the objects around it behave as PyTorch users expect: the packed weight knows
its K and scale, modules survive casts and moves, the public ops are differentiable with the
straight-through gradients of the fake-quant oracle (native and fallback alike), and foreign
buffers are checked exactly."""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import bitops
from bitops import reference as ref
from bitops.fake_quant import fake_quant_linear
from bitops.nn import BitLinear, PackedBitLinear, pack_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [("ternary", 8), ("ternary", None), ("binary", 8), ("binary", 1), ("binary", None)]


def _weights(kind, n, k, seed=0, per_channel=False):
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(seed))
    quantize, pack = (bitops.ternary_quantize, bitops.pack_ternary) if kind == "ternary" else (bitops.binary_quantize, bitops.pack_binary)
    wq, scale = quantize(w, per_channel=per_channel)
    return w, wq, scale, pack(wq, scale)


# --------------------------------------------------------------------------- the object


@pytest.mark.parametrize("kind", ["ternary", "binary"])
def test_packed_weight_knows_its_shape_scale_and_layout(kind):
    w, wq, scale, packed = _weights(kind, 7, 300)
    assert packed.kind == kind and packed.shape == (7, 300) and packed.in_features == 300 and packed.out_features == 7
    assert packed.layout == bitops.packed.LAYOUT_VERSION and packed.device == torch.device("cpu")
    assert torch.equal(packed.scale, scale) and packed.scale.dtype == torch.float32
    assert torch.equal(packed.unpack(), wq)
    assert torch.equal(packed.dequantize(), wq.float() * scale)
    assert packed.nbytes == packed.qdata.numel() + 4
    assert "shape=[7, 300]" in repr(packed) and kind in repr(packed)
    # the op takes the scale from the object; passing it as well is refused, not silently ambiguous
    x = torch.randn(3, 300)
    op = bitops.ternary_linear if kind == "ternary" else bitops.binary_linear
    assert torch.equal(op(x, packed), op(x, packed.with_scale(None), scale))
    assert torch.equal(op(x, packed), op(x, packed.qdata, scale, in_features=300))


def test_packed_weight_moves_with_the_scale_float32():
    _, _, _, packed = _weights("ternary", 5, 70)
    on_meta = packed.to("meta")
    assert on_meta.device.type == "meta" and on_meta.scale.device.type == "meta" and on_meta.scale.dtype == torch.float32
    assert on_meta.shape == packed.shape and packed.to("cpu") is packed
    with pytest.raises(TypeError, match="no float dtype"):
        packed.to(torch.bfloat16)


def test_per_row_scales_are_carried_and_used():
    x = torch.randn(4, 200)
    _, wq, gamma, packed = _weights("ternary", 6, 200, per_channel=True)
    assert packed.scale.shape == (6,)
    assert torch.equal(bitops.ternary_linear(x, packed), ref.ternary_linear(x, ref.pack_ternary(wq), gamma))
    module = PackedBitLinear.from_packed(packed, bias=None)
    assert torch.equal(module(x), bitops.ternary_linear(x, packed))
    fresh = PackedBitLinear(200, 6, bias=False, per_channel=True)
    fresh.load_state_dict(module.state_dict())
    assert torch.equal(fresh(x), module(x))


# --------------------------------------------------------------------------- modules: casts and moves


def _packed_model(kind, act_bits, norm=False):
    torch.manual_seed(0)
    model = nn.Sequential(BitLinear(96, 64, weight=kind, act_bits=act_bits, norm=norm), nn.ReLU(),
                          BitLinear(64, 32, weight=kind, act_bits=act_bits))
    return pack_model(model.eval())


@pytest.mark.parametrize("kind,act_bits", CONFIGS)
@pytest.mark.parametrize("cast", ["bfloat16", "half", "to_bf16", "to_f16_then_float"])
def test_packed_models_survive_casts(kind, act_bits, cast):
    """A cast changes bias/norm and the output dtype, never the float32 scale; outputs stay
    within 2% of the float32 run (bf16 inputs move a few activations by one int8 step)."""
    model = _packed_model(kind, act_bits, norm=True)
    x = torch.randn(16, 96, generator=torch.Generator().manual_seed(1))
    want = model(x)
    scales = [m.weight_scale.clone() for m in model.modules() if isinstance(m, PackedBitLinear)]
    dtype = {"bfloat16": torch.bfloat16, "half": torch.float16, "to_bf16": torch.bfloat16}.get(cast)
    if cast == "bfloat16":
        model.bfloat16()
    elif cast == "half":
        model.half()
    elif cast == "to_bf16":
        model.to(torch.bfloat16)
    else:
        model.to(torch.float16).float()
        dtype = torch.float32
    layers = [m for m in model.modules() if isinstance(m, PackedBitLinear)]
    for layer, scale in zip(layers, scales):
        assert layer.weight_scale.dtype == torch.float32 and torch.equal(layer.weight_scale, scale)
        assert layer.bias.dtype == dtype
    y = model(x.to(dtype))
    assert y.dtype == dtype
    err = (y.float() - want).norm() / want.norm()
    assert err < 0.02, f"relative error {err:.4f}"


def test_packed_model_moves_to_meta_and_keeps_scale_dtype():
    model = _packed_model("ternary", 8)
    model.to("meta")
    layer = model[0]
    assert layer.packed_weight.device.type == "meta" and layer.weight_scale.device.type == "meta"
    assert layer.weight_scale.dtype == torch.float32
    assert model(torch.randn(2, 96, device="meta")).shape == (2, 32)


def test_constructors_do_not_pack(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a constructor packed a matrix")

    monkeypatch.setattr(bitops.ops, "pack_ternary", refuse)
    monkeypatch.setattr(bitops.ops, "pack_binary", refuse)
    for kind in ("ternary", "binary"):
        layer = PackedBitLinear(300, 5, weight=kind)
        assert bitops.validate.first_bad_row(kind, layer.packed_weight, 300) == -1  # canonical zeros
        assert torch.equal(layer(torch.randn(2, 300)), layer.bias.expand(2, 5))


# --------------------------------------------------------------------------- from_parts


def test_from_parts_refuses_broadcastable_and_corrupt_buffers():
    _, wq, gamma, packed = _weights("ternary", 4, 200)
    good = PackedBitLinear.from_parts("ternary", 8, 200, packed.qdata, gamma)
    assert torch.equal(good(torch.ones(1, 200)), bitops.ternary_linear(torch.ones(1, 200), packed))
    one_row = packed.qdata[:1]  # would broadcast over 4 rows under copy_
    assert PackedBitLinear.from_parts("ternary", 8, 200, one_row, gamma).out_features == 1  # its own N, never broadcast
    with pytest.raises(ValueError, match="bias must have shape \\[1\\]"):
        PackedBitLinear.from_parts("ternary", 8, 200, one_row, gamma, bias=torch.zeros(4))
    with pytest.raises(ValueError, match="bytes per row"):
        PackedBitLinear.from_parts("ternary", 8, 300, packed.qdata, gamma)
    with pytest.raises(ValueError, match="scale must hold one value or \\[N=4\\]"):
        PackedBitLinear.from_parts("ternary", 8, 200, packed.qdata, torch.ones(2))
    with pytest.raises(TypeError, match="float32"):
        PackedBitLinear.from_parts("ternary", 8, 200, packed.qdata, gamma.double())
    corrupt = packed.qdata.clone()
    corrupt[2, 5] |= 0xC0  # a code 3 inside K
    with pytest.raises(ValueError, match="corrupt: row 2"):
        PackedBitLinear.from_parts("ternary", 8, 200, corrupt, gamma)
    dirty = packed.qdata.clone()
    dirty[3, -1] = 0  # a padding weight other than 0 (code 0 = -1)
    with pytest.raises(ValueError, match="corrupt: row 3"):
        PackedBitLinear.from_parts("ternary", 8, 200, dirty, gamma)
    with pytest.raises(ValueError, match="in_features"):
        PackedBitLinear.from_parts("ternary", 8, 100, packed, None)
    with pytest.raises(ValueError, match="act_bits"):
        PackedBitLinear.from_parts("ternary", True, 200, packed.qdata, gamma)


@pytest.mark.parametrize("bad", [True, 8.0, 2, "8"])
def test_act_bits_must_be_exactly_8_1_or_none(bad):
    with pytest.raises(ValueError, match="act_bits"):
        BitLinear(8, 4, weight="binary", act_bits=bad)
    with pytest.raises(ValueError, match="act_bits"):
        PackedBitLinear(8, 4, weight="binary", act_bits=bad)
    with pytest.raises(ValueError, match="act_bits"):
        bitops.binary_linear(torch.ones(1, 8), _weights("binary", 4, 8)[3], act_bits=bad)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("kind,act_bits", CONFIGS)
@pytest.mark.parametrize("per_channel", [False, True])
def test_public_op_gradients_equal_the_fake_quant_oracle(kind, act_bits, per_channel):
    """grad_x and grad_bias of bitops.ternary_linear / binary_linear are the fake-quant oracle's
    straight-through gradients (same float32 product, so equal up to BLAS summation order)."""
    g = torch.Generator().manual_seed(3)
    w, wq, scale, packed = _weights(kind, 9, 150, seed=4, per_channel=per_channel)
    x = (torch.randn(2, 5, 150, generator=g) * 1.5).requires_grad_()
    bias = torch.randn(9, generator=g).requires_grad_()
    grad_y = torch.randn(2, 5, 9, generator=g)
    op = bitops.ternary_linear if kind == "ternary" else bitops.binary_linear
    gx, gb = torch.autograd.grad(op(x, packed, bias=bias, act_bits=act_bits), (x, bias), grad_y)
    # the oracle: fake quantization with the same (possibly per-row) scale
    x_o, b_o = x.detach().clone().requires_grad_(), bias.detach().clone().requires_grad_()
    w_fq = wq.float() * scale.reshape(-1, 1)
    if act_bits == 8:
        xq, s = ref.quantize_activations(x_o.detach())
        x_fq = x_o + (xq.float() / s[..., None] - x_o).detach()
    elif act_bits == 1:
        window = x_o.clamp(-1, 1)
        x_fq = window + (torch.where(x_o >= 0, 1.0, -1.0) - window).detach()
    else:
        x_fq = x_o
    want_x, want_b = torch.autograd.grad(nn.functional.linear(x_fq, w_fq, b_o), (x_o, b_o), grad_y)
    torch.testing.assert_close(gx, want_x, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gb, want_b, rtol=1e-6, atol=1e-6)
    if act_bits == 1:
        assert (gx[x.detach().abs() > 1] == 0).all() and (x.detach().abs() > 1).any()
    if not per_channel:  # and the layer-level oracle agrees (it quantizes w itself)
        x_l = x.detach().clone().requires_grad_()
        (want_l,) = torch.autograd.grad(fake_quant_linear(x_l, w, None, kind, act_bits), (x_l,), grad_y)
        torch.testing.assert_close(gx, want_l, rtol=1e-5, atol=1e-6)


def test_gradients_follow_the_input_dtype_and_skip_constant_inputs():
    _, _, _, packed = _weights("ternary", 6, 64)
    x = torch.randn(3, 64, dtype=torch.bfloat16, requires_grad=True)
    y = bitops.ternary_linear(x, packed)
    assert y.requires_grad and y.dtype == torch.bfloat16
    (gx,) = torch.autograd.grad(y.float().sum(), (x,))
    assert gx.dtype == torch.bfloat16 and gx.shape == x.shape
    assert not bitops.ternary_linear(x.detach(), packed).requires_grad
    with torch.no_grad():
        assert not bitops.ternary_linear(x, packed).requires_grad


def _fallback_case(kind, act_bits):
    """Output and gradients of one public linear op on fixed inputs (run here and in the fallback)."""
    g = torch.Generator().manual_seed(5)
    w = torch.randn(7, 130, generator=g)
    x = (torch.randn(4, 130, generator=g) * 1.5).requires_grad_()
    b = torch.randn(7, generator=g).requires_grad_()
    q, p = (bitops.ternary_quantize, bitops.pack_ternary) if kind == "ternary" else (bitops.binary_quantize, bitops.pack_binary)
    wq, scale = q(w)
    op = bitops.ternary_linear if kind == "ternary" else bitops.binary_linear
    y = op(x, p(wq, scale), bias=b, act_bits=act_bits)
    gx, gb = torch.autograd.grad(y, (x, b), torch.ones_like(y))
    return y.detach(), gx, gb


_FALLBACK_SCRIPT = r"""
import json, sys
sys.modules["bitops._C"] = None  # as if the extension were not built
sys.path.insert(0, %r)
import bitops
from tests.test_packed_weight import CONFIGS, _fallback_case
assert bitops.backend() == "reference"
print(json.dumps({f"{k}-{a}": [t.tolist() for t in _fallback_case(k, a)] for k, a in CONFIGS}))
"""


@pytest.mark.skipif(bitops.backend() == "reference", reason="compares the fallback with the native kernels")
def test_fallback_gives_the_native_values_and_gradients():
    env = dict(os.environ, BITOPS_QUIET="1")
    run = subprocess.run([sys.executable, "-c", _FALLBACK_SCRIPT % ROOT], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    fallback = json.loads(run.stdout.strip().splitlines()[-1])
    for kind, act_bits in CONFIGS:
        y, gx, gb = _fallback_case(kind, act_bits)
        fy, fgx, fgb = (torch.tensor(v) for v in fallback[f"{kind}-{act_bits}"])
        tol = dict(rtol=0, atol=0) if act_bits is not None else dict(rtol=1e-5, atol=1e-5)  # float sums: other order
        torch.testing.assert_close(y, fy, **tol)
        torch.testing.assert_close(gx, fgx, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gb, fgb, rtol=1e-6, atol=1e-6)
