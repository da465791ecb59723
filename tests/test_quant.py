"""STE quantizers and the fused BitLinear Function against the pure-torch fake-quant formulation."""

import pytest
import torch

import bitops
from bitops import quant
from bitops import reference as ref

COMBOS = [("ternary", 8), ("ternary", None), ("binary", 8), ("binary", 1), ("binary", None)]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2)}


def _inputs(shape, n, dtype, seed=0, bias=True):
    gen = torch.Generator().manual_seed(seed)
    k = shape[-1]
    # scaled so that a good share of x lies outside [-1, 1] (the sign STE window)
    x = (1.5 * torch.randn(shape, generator=gen)).to(dtype).requires_grad_()
    w = (0.1 * torch.randn(n, k, generator=gen)).requires_grad_()
    b = torch.randn(n, generator=gen).requires_grad_() if bias else None
    return x, w, b


def _grads(fn, x, w, b, kind, act_bits, seed=1):
    y = fn(x, w, b, kind, act_bits)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y.dtype)
    leaves = [t for t in (x, w, b) if t is not None]
    return y, torch.autograd.grad(y, leaves, g)


# --------------------------------------------------------------------------- STE quantizers


def test_ternary_weight_ste_forward_is_absmean_and_backward_is_identity():
    w = torch.randn(7, 33, requires_grad=True)
    y = quant.ternary_weight_ste(w)
    wq, gamma = ref.ternary_quantize(w.detach())
    torch.testing.assert_close(y, wq.float() * gamma, rtol=0, atol=0)
    assert set(torch.unique(y / gamma).round().tolist()) <= {-1.0, 0.0, 1.0}
    g = torch.randn_like(w)
    (gw,) = torch.autograd.grad(y, w, g)
    assert torch.equal(gw, g)


def test_binary_weight_ste_forward_is_scaled_sign_and_backward_is_identity():
    w = torch.randn(5, 40)
    w[0, 0] = 0.0  # sign(0) = +1
    w.requires_grad_()
    y = quant.binary_weight_ste(w)
    beta = w.detach().abs().mean()
    torch.testing.assert_close(y, torch.where(w >= 0, beta, -beta), rtol=0, atol=0)
    assert y[0, 0] > 0
    g = torch.randn_like(w)
    assert torch.equal(torch.autograd.grad(y, w, g)[0], g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_activation_ste(dtype):
    x = (3 * torch.randn(4, 6, 50)).to(dtype).requires_grad_()
    y = quant.int8_activation_ste(x)
    xq, s = ref.quantize_activations(x.detach())
    assert y.dtype == dtype
    torch.testing.assert_close(y, (xq.float() / s[..., None]).to(dtype), rtol=0, atol=0)
    assert (y.float() - x.detach().float()).abs().max() > 0  # it really quantizes
    g = torch.randn_like(x)
    assert torch.equal(torch.autograd.grad(y, x, g)[0], g)


def test_sign_activation_ste_window_is_inclusive():
    x = torch.tensor([-2.0, -1.0001, -1.0, -0.3, 0.0, 0.5, 1.0, 1.0001, 3.0], requires_grad=True)
    y = quant.sign_activation_ste(x)
    assert y.tolist() == [-1, -1, -1, -1, 1, 1, 1, 1, 1]
    (gx,) = torch.autograd.grad(y, x, torch.full_like(x, 2.0))
    assert gx.tolist() == [0, 0, 2, 2, 2, 2, 2, 0, 0]


# --------------------------------------------------------------------------- the fused Function


@pytest.mark.parametrize("kind,act_bits", COMBOS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(5, 70), (2, 3, 130)])
def test_bit_linear_gradients_equal_fake_quant(kind, act_bits, dtype, shape):
    x, w, b = _inputs(shape, 24, dtype)
    y, grads = _grads(quant.bit_linear, x, w, b, kind, act_bits)
    y_ref, grads_ref = _grads(quant.fake_quant_linear, x, w, b, kind, act_bits)
    assert y.dtype == dtype and y.shape == (*shape[:-1], 24)
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    for name, got, want in zip(("x", "weight", "bias"), grads, grads_ref):
        assert got.dtype == want.dtype, name
        torch.testing.assert_close(got, want, **TOL[dtype], msg=lambda m: f"grad of {name}: {m}")
    if act_bits == 1:  # the window really zeroes some of grad_x
        outside = x.detach().abs() > 1
        assert outside.any() and (grads[0][outside] == 0).all()
        assert (grads[0][~outside] != 0).any()


@pytest.mark.parametrize("kind,act_bits", COMBOS)
def test_bit_linear_forward_is_the_oracle_layer(kind, act_bits):
    """Forward = the reference oracle on the same quantized weights (bit-exact on integer paths)."""
    x, w, b = _inputs((9, 100), 12, torch.float32)
    y = quant.bit_linear(x, w, b, kind, act_bits)
    quantize, pack, linear = (
        (ref.ternary_quantize, ref.pack_ternary, ref.ternary_linear)
        if kind == "ternary"
        else (ref.binary_quantize, ref.pack_binary, ref.binary_linear)
    )
    wq, scale = quantize(w.detach())
    y_ref = linear(x.detach(), pack(wq), scale, b.detach(), act_bits)
    if act_bits is None:
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    else:
        assert torch.equal(y, y_ref)


def test_bit_linear_only_computes_the_gradients_asked_for():
    x, w, _ = _inputs((3, 40), 8, torch.float32, bias=False)
    x.requires_grad_(False)
    y = quant.bit_linear(x, w, None, "ternary", 8)
    (gw,) = torch.autograd.grad(y.sum(), w)
    assert gw.shape == w.shape
    x2, w2, b2 = _inputs((3, 40), 8, torch.float32)
    w2.requires_grad_(False)
    gx, gb = torch.autograd.grad(quant.bit_linear(x2, w2, b2, "binary", 1).sum(), (x2, b2))
    assert gx.shape == x2.shape and torch.equal(gb, torch.full((8,), 3.0))


def test_bit_linear_without_grad_builds_no_graph():
    x, w, b = _inputs((3, 40), 8, torch.float32)
    with torch.no_grad():
        y = quant.bit_linear(x, w, b)
    assert y.grad_fn is None
    assert quant.bit_linear(x, w, b).grad_fn is not None


def test_weight_dtype_gradient_follows_the_parameter():
    x = torch.randn(4, 64, dtype=torch.bfloat16, requires_grad=True)
    w = (0.1 * torch.randn(16, 64)).to(torch.bfloat16).requires_grad_()
    b = torch.zeros(16, dtype=torch.bfloat16, requires_grad=True)
    y = quant.bit_linear(x, w, b, "ternary", 8)
    y.float().sum().backward()
    assert y.dtype == x.grad.dtype == w.grad.dtype == b.grad.dtype == torch.bfloat16


# --------------------------------------------------------------------------- numerical checks


def _directional_fd(f, t, v, eps):
    with torch.no_grad():
        return (f(t + eps * v) - f(t - eps * v)) / (2 * eps)


@pytest.mark.parametrize("kind", ["ternary", "binary"])
def test_float_activation_path_matches_finite_differences(kind):
    """With act_bits=None the layer is linear in x and in bias, so central differences are exact
    up to float rounding: a gradcheck of grad_x and grad_bias through the kernels.

    (A numerical check of grad_W is not meaningful: the quantized forward is piecewise constant
    in W apart from the scale, while the STE gradient is by definition that of the dequantized
    weight; the next test checks it against the surrogate it stands for.)"""
    x, w, b = _inputs((6, 50), 10, torch.float32)
    g = torch.randn(6, 10)
    gx, gb = torch.autograd.grad(quant.bit_linear(x, w, b, kind, None), (x, b), g)
    for t, grad, f in (
        (x.detach(), gx, lambda xx: (quant.bit_linear(xx, w.detach(), b.detach(), kind, None) * g).sum()),
        (b.detach(), gb, lambda bb: (quant.bit_linear(x.detach(), w.detach(), bb, kind, None) * g).sum()),
    ):
        for seed in range(3):
            v = torch.randn(t.shape, generator=torch.Generator().manual_seed(seed))
            numeric = _directional_fd(f, t, v, eps=1e-2)
            torch.testing.assert_close(numeric, (grad * v).sum(), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("kind,act_bits", COMBOS)
def test_weight_gradient_is_that_of_the_dequantized_surrogate(kind, act_bits):
    """grad_W (STE) = the derivative of W' -> sum(g * (Q_act(x) @ W'.T)) at W' = scale * Wq, by finite differences."""
    x, w, b = _inputs((7, 60), 9, torch.float32)
    g = torch.randn(7, 9)
    (gw,) = torch.autograd.grad(quant.bit_linear(x, w, b, kind, act_bits), (w,), g)
    if act_bits == 8:
        xq, s = ref.quantize_activations(x.detach())
        x_used = xq.float() / s[:, None]
    elif act_bits == 1:
        x_used = torch.where(x.detach() >= 0, 1.0, -1.0)
    else:
        x_used = x.detach()
    w_dq = quant.quantize_weight(w, kind).dequantize()
    surrogate = lambda ww: (g * (x_used @ ww.T)).sum()  # noqa: E731
    for seed in range(3):
        v = torch.randn(w.shape, generator=torch.Generator().manual_seed(seed))
        numeric = _directional_fd(surrogate, w_dq, v, eps=1e-2)
        torch.testing.assert_close(numeric, (gw * v).sum(), rtol=2e-3, atol=2e-3)


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "kind,act_bits,match",
    [("ternary", 1, "needs binary weights"), ("int4", 8, "'ternary' or 'binary'"), ("binary", 4, "8, 1 or None")],
)
def test_bad_configurations_raise_clearly(kind, act_bits, match):
    with pytest.raises(ValueError, match=match):
        quant.bit_linear(torch.randn(2, 8), torch.randn(4, 8), None, kind, act_bits)


def test_quantized_weight_packs_with_the_public_ops():
    w = torch.randn(6, 130)
    qw = quant.quantize_weight(w, "ternary")
    wq, gamma = bitops.ternary_quantize(w)
    assert isinstance(qw, bitops.PackedWeight) and qw.shape == (6, 130) and qw.qdata.dtype == torch.uint8
    assert torch.equal(qw.unpack(), wq) and torch.equal(qw.scale, gamma)
    qb = quant.quantize_weight(w, "binary")
    assert torch.equal(bitops.unpack_binary(qb), torch.where(w >= 0, 1, -1).to(torch.int8))
    torch.testing.assert_close(qb.dequantize(), torch.where(w >= 0, 1.0, -1.0) * w.abs().mean())
