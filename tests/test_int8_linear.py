"""bitops.nn.Int8Linear: per-row absmax int8 weights with int8 activations (the int8 output head)."""

import pytest
import torch

from bitops.nn import Int8Linear
from bitops.int8_linear import quantize_rows_int8


def test_weights_are_per_row_absmax_int8():
    w = torch.randn(37, 50)
    w[3] = 0.0
    q, scale = quantize_rows_int8(w)
    assert q.dtype == torch.int8 and scale.dtype == torch.float32
    assert torch.equal(scale, w.abs().amax(1) / 127)
    assert int(q.abs().max()) == 127 and torch.equal(q[3], torch.zeros(50, dtype=torch.int8))
    assert ((q.float() * scale[:, None] - w).abs() <= scale[:, None] / 2 * 1.0001 + 1e-7).all()


@pytest.mark.parametrize("m", [0, 1, 5])
@pytest.mark.parametrize("bias", [False, True])
def test_output_within_the_activation_quantization_bound(m, bias):
    torch.manual_seed(m)
    lin = torch.nn.Linear(96, 301, bias=bias)
    layer = Int8Linear.from_linear(lin)
    x = torch.randn(m, 96) * 3
    y = layer(x)
    assert y.shape == (m, 301) and y.dtype == torch.float32
    if not m:
        return
    wd = layer.qweight.float() * layer.scale[:, None]
    exact = x.double() @ wd.double().T + (lin.bias.detach().double() if bias else 0)
    # activations become affine uint8 over [min(x, 0), max(x, 0)]: each is off by at most half a step
    step = (x.max().clamp_min(0) - x.min().clamp_max(0)).double() / 255
    bound = step / 2 * wd.abs().double().sum(1) * 1.01 + 1e-4
    assert ((y.double() - exact).abs() <= bound).all()


def test_dtypes_state_dict_and_errors():
    layer = Int8Linear.from_weight(torch.randn(16, 32), torch.randn(16))
    cast = Int8Linear.from_weight(torch.randn(16, 32)).to(torch.bfloat16)
    assert cast.scale.dtype == torch.float32  # a cast never rounds the scale
    x = torch.randn(2, 3, 32)
    assert layer(x.bfloat16()).dtype == torch.bfloat16 and layer(x).shape == (2, 3, 16)
    fresh = Int8Linear(32, 16, bias=True)
    fresh.load_state_dict(layer.state_dict())
    assert torch.equal(fresh(x), layer(x))
    with pytest.raises(ValueError, match="in_features=32"):
        layer(torch.randn(2, 31))
    with pytest.raises(TypeError, match="float"):
        layer(torch.ones(2, 32, dtype=torch.int32))
    with pytest.raises(ValueError, match="NaN"):
        Int8Linear.from_weight(torch.full((2, 2), float("nan")))


def test_gradients_flow_through_the_float_form():
    layer = Int8Linear.from_weight(torch.randn(8, 16))
    x = torch.randn(3, 16, requires_grad=True)
    layer(x).sum().backward()
    wd = layer.qweight.float() * layer.scale[:, None]
    assert torch.allclose(x.grad, wd.sum(0).expand(3, 16), atol=1e-6)
