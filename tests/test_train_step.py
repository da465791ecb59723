"""The training step's pieces: the fused quantize-and-pack (and its W^T), the forward that hands
back its int8 activations, and BitLinear's two backward modes against their oracles.

The integer paths are compared bit for bit: quantize_pack against ``pack(quantize(w))`` of
bitops.reference, the int8 backward's grad_x against the reference int8 linear over the packed
``W^T``. The exact backward is covered against the fake-quant oracle in tests/test_quant.py.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitops
from bitops import ops, quant
from bitops import reference as ref
from bitops.bit_linear import transpose_packed
from bitops.nn import BitLinear

NATIVE = bitops.backend() != "reference"
fuzz = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COMBOS = [("ternary", 8), ("ternary", None), ("binary", 8), ("binary", 1), ("binary", None)]

# N around the 256-row chunks (each owns a block of the transposed rows) and the 128-weight block
rows = st.one_of(st.sampled_from([0, 1, 2, 127, 128, 129, 255, 256, 257, 300, 511, 513]), st.integers(0, 600))
cols = st.one_of(st.sampled_from([1, 2, 7, 31, 32, 33, 127, 128, 129, 255, 257, 1000]), st.integers(1, 700))
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def hazardous_weights(n, k, seed, dtype):
    """Weights with exact ties at +-0.5 and +-1.5 gamma, signed zeros and NaN/Inf sprinkled in."""
    g = torch.Generator().manual_seed(seed)
    w = 0.05 * torch.randn(n, k, generator=g)
    if n * k:
        gamma = w.abs().mean()
        flat = w.view(-1)
        pick = torch.randint(0, 12, (n * k,), generator=g)
        flat[pick == 0] = 0.5 * gamma
        flat[pick == 1] = -0.5 * gamma
        flat[pick == 2] = 1.5 * gamma
        flat[pick == 3] = -0.0
    return w.to(dtype)


def reference_packs(kind, w):
    wq, scale = (ref.ternary_quantize if kind == "ternary" else ref.binary_quantize)(w)
    pack = ref.pack_ternary if kind == "ternary" else ref.pack_binary
    return pack(wq).qdata, pack(wq.T.contiguous()).qdata, scale


@pytest.mark.parametrize("kind", ["ternary", "binary"])
@pytest.mark.parametrize("dtype", DTYPES)
@fuzz
@given(n=rows, k=cols, seed=st.integers(0, 2**31 - 1))
def test_quantize_pack_is_pack_of_quantize_bit_for_bit(kind, dtype, n, k, seed):
    w = hazardous_weights(n, k, seed, dtype)
    if n == 0:  # W^T would have K = 0 features
        with pytest.raises(ValueError, match="w has 0 rows"):
            ops.quantize_pack(kind, w, transposed=True)
        wq, _ = (ref.ternary_quantize if kind == "ternary" else ref.binary_quantize)(w)
        pack = ref.pack_ternary if kind == "ternary" else ref.pack_binary
        assert torch.equal(ops.quantize_pack(kind, w).qdata, pack(wq).qdata)
        return
    packed, packed_t = ops.quantize_pack(kind, w, transposed=True)
    want, want_t, scale = reference_packs(kind, w)
    assert torch.equal(packed.qdata, want) and torch.equal(packed_t.qdata, want_t)
    assert (packed.out_features, packed.in_features) == (n, k)
    assert (packed_t.out_features, packed_t.in_features) == (k, n)
    assert torch.equal(packed.scale, scale) or (scale.isnan() and packed.scale.isnan())
    assert packed_t.scale is packed.scale
    assert torch.equal(ops.quantize_pack(kind, w).qdata, want)  # without the transpose


@pytest.mark.parametrize("kind", ["ternary", "binary"])
def test_quantize_pack_non_finite_weights(kind):
    w = torch.randn(300, 129)
    w[3, 5], w[200, 0], w[299, 128] = float("nan"), float("inf"), float("-inf")
    packed, packed_t = ops.quantize_pack(kind, w, transposed=True)
    want, want_t, _ = reference_packs(kind, w)
    assert torch.equal(packed.qdata, want) and torch.equal(packed_t.qdata, want_t)
    assert packed.scale.isnan() or packed.scale.isinf()  # the scale says so: outputs are not finite


@pytest.mark.skipif(not NATIVE, reason="native extension not built")
def test_quantize_pack_runs_over_threads_like_one():
    w = torch.randn(2000, 700)
    one = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = ops.quantize_pack("ternary", w, transposed=True)
    finally:
        torch.set_num_threads(one)
    multi = ops.quantize_pack("ternary", w, transposed=True)
    assert all(torch.equal(a.qdata, b.qdata) for a, b in zip(single, multi))


@pytest.mark.skipif(not NATIVE, reason="native extension not built")
@pytest.mark.parametrize(
    "w,match,exc",
    [
        (torch.randn(4), "2-D", ValueError),
        (torch.randint(0, 3, (4, 4), dtype=torch.int8), "float32, float16 or bfloat16", TypeError),
        (torch.randn(4, 0), "k must be in", ValueError),
    ],
)
def test_quantize_pack_bad_input(w, match, exc):
    with pytest.raises(exc, match=match):
        ops.quantize_pack("ternary", w)
    with pytest.raises(ValueError, match="'ternary' or 'binary'"):
        ops.quantize_pack("quaternary", torch.randn(4, 4))


@pytest.mark.skipif(not NATIVE, reason="native extension not built")
@pytest.mark.parametrize("kind", ["ternary", "binary"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_hands_back_the_activations_it_quantized(kind, dtype):
    x = (3 * torch.randn(2, 5, 130)).to(dtype)
    x[1, 2] = float("nan")  # a non-finite row: s = NaN, xq = 0
    w = torch.randn(17, 130)
    packed = ops.quantize_pack(kind, w)
    op = getattr(torch.ops.bitops, f"{kind}_linear_i8_and_act")
    y, xq, s = op(x, packed.qdata, packed.scale, None, None, 0.0)
    xq_want, s_want = ref.quantize_activations(x)
    assert torch.equal(xq, xq_want) and torch.equal(s.nan_to_num(-1), s_want.nan_to_num(-1))
    y_want = ops.linear(kind, x, packed, None, None, 8, None, "scale")
    assert torch.equal(y.nan_to_num(-7), y_want.nan_to_num(-7)) and y.dtype == dtype


# --------------------------------------------------------------------------- the int8 backward


def _int8_grads(kind, act_bits, dtype, shape, n, quantized=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (1.5 * torch.randn(shape, generator=g)).to(dtype).requires_grad_()
    w = (0.1 * torch.randn(n, shape[-1], generator=g)).requires_grad_()
    b = torch.randn(n, generator=g).requires_grad_()
    gy = torch.randn(*shape[:-1], n, generator=g).to(dtype)
    q = quant.quantize_weight(w, kind) if quantized else None
    y = quant.bit_linear(x, w, b, kind, act_bits, q, backward="int8")
    grads = torch.autograd.grad(y, (x, w, b), gy)
    return x, w, b, gy, y, grads


@pytest.mark.parametrize("kind,act_bits", COMBOS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(5, 70), (2, 3, 130), (1, 257), (0, 33)])
def test_int8_backward_grad_x_is_the_int8_product_over_w_transposed(kind, act_bits, dtype, shape):
    x, w, b, gy, y, (gx, gw, gb) = _int8_grads(kind, act_bits, dtype, shape, 24)
    wq, scale = (ref.ternary_quantize if kind == "ternary" else ref.binary_quantize)(w.detach())
    pack = ref.pack_ternary if kind == "ternary" else ref.pack_binary
    linear = ref.ternary_linear if kind == "ternary" else ref.binary_linear
    want = linear(gy.reshape(-1, 24), pack(wq.T.contiguous()).qdata, scale, None, 8, in_features=24)
    want = want.reshape(x.shape)
    if act_bits == 1:
        want = want * (x.detach().abs() <= 1)
    assert gx.dtype == dtype and gx.shape == x.shape
    assert torch.equal(gx, want.to(dtype))  # integer path: bit for bit
    # grad_W, grad_b and the output are the exact mode's, bit for bit
    y_e = quant.bit_linear(x, w, b, kind, act_bits)
    _, gw_e, gb_e = torch.autograd.grad(y_e, (x, w, b), gy)
    assert torch.equal(y, y_e) and torch.equal(gw, gw_e) and torch.equal(gb, gb_e)


def test_int8_backward_is_close_to_the_exact_gradient():
    """A different estimator, but an unbiased-looking one: within int8 rounding of the exact grad_x."""
    x, w, b, gy, _, (gx, _, _) = _int8_grads("ternary", 8, torch.float32, (64, 512), 256)
    gx_e = torch.autograd.grad(quant.bit_linear(x, w, b, "ternary", 8), x, gy)[0]
    rel = (gx - gx_e).norm() / gx_e.norm()
    assert 0 < rel < 0.01  # per-row int8 grad_y: ~1/254 of the row max per element (0.7% measured)


@pytest.mark.parametrize("kind", ["ternary", "binary"])
def test_int8_backward_with_a_prepacked_weight(kind):
    """quantized= without its transpose: the transpose is made from the packed bytes."""
    *_, grads = _int8_grads(kind, 8, torch.float32, (6, 100), 40)
    *_, grads_q = _int8_grads(kind, 8, torch.float32, (6, 100), 40, quantized=True)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_q))
    per_row = ops.pack_ternary(torch.zeros(3, 5, dtype=torch.int8), torch.ones(3))
    with pytest.raises(ValueError, match="one scale"):
        transpose_packed(per_row)


def test_backward_mode_is_checked():
    with pytest.raises(ValueError, match="'exact' or 'int8'"):
        BitLinear(4, 4, backward="fast")
    with pytest.raises(ValueError, match="'exact' or 'int8'"):
        quant.bit_linear(torch.randn(2, 4), torch.randn(3, 4), backward="Int8")


def test_bitlinear_int8_backward_trains_and_keeps_its_outputs():
    torch.manual_seed(0)
    exact = BitLinear(64, 32)
    fast = BitLinear(64, 32, backward="int8")
    fast.load_state_dict(exact.state_dict())
    assert "backward=int8" in repr(fast) and "backward" not in repr(exact)
    x = torch.randn(128, 64)
    target = x @ torch.randn(64, 32) * 0.1
    assert torch.equal(exact(x), fast(x))  # the forward is the same computation
    final = []
    for layer in (exact, fast):
        opt = torch.optim.Adam(layer.parameters(), lr=0.01)
        first = None
        for _ in range(40):
            xi = x.clone().requires_grad_()  # grad_x is computed (as inside a network)
            loss = torch.nn.functional.mse_loss(layer(xi), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            first = loss.item() if first is None else first
        assert loss.item() < 0.5 * first
        final.append(loss.item())
    assert final[1] == final[0]  # grad_W is exact in both modes, and grad_x reaches no weight here
    converted = bitops.nn.convert(torch.nn.Sequential(torch.nn.Linear(8, 8)), backward="int8")
    assert converted[0].backward_mode == "int8"


# --------------------------------------------------------------------------- the fused norm


def _norm_case(kind, act_bits, dtype, shape=(3, 5, 130), n=24, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = (1.5 * torch.randn(shape, generator=g)).to(dtype).requires_grad_()
    w = (0.1 * torch.randn(n, shape[-1], generator=g)).requires_grad_()
    b = torch.randn(n, generator=g).requires_grad_()
    nw = (1 + 0.3 * torch.randn(shape[-1], generator=g)).requires_grad_()
    gy = torch.randn(*shape[:-1], n, generator=g).to(dtype)
    return x, w, b, nw, gy


TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2)}


@pytest.mark.parametrize("kind,act_bits", COMBOS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_norm_gradients_equal_the_fake_quant_oracle(kind, act_bits, dtype):
    """bit_linear(norm_weight=...) = fake_quant_linear(rms_norm(x)) in value and in all four
    gradients (x, weight, bias, norm weight), with the norm's backward written out by hand."""
    x, w, b, nw, gy = _norm_case(kind, act_bits, dtype)
    y = quant.bit_linear(x, w, b, kind, act_bits, norm_weight=nw, norm_eps=1e-6)
    grads = torch.autograd.grad(y, (x, w, b, nw), gy)
    # the norm stays float32 up to the quantizer (no rounding to x's dtype in between)
    y_ref = quant.fake_quant_linear(ref.rms_norm(x, nw, 1e-6), w, b, kind, act_bits).to(dtype)
    grads_ref = torch.autograd.grad(y_ref, (x, w, b, nw), gy)
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    for name, got, want in zip(("x", "weight", "bias", "norm weight"), grads, grads_ref):
        assert got.dtype == want.dtype, name
        torch.testing.assert_close(got, want, **TOL[dtype], msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("kind,act_bits", [("ternary", 8), ("binary", 8), ("binary", 1)])
def test_norm_with_int8_backward_is_the_norm_backward_of_the_int8_product(kind, act_bits):
    x, w, b, nw, gy = _norm_case(kind, act_bits, torch.float32)
    y = quant.bit_linear(x, w, b, kind, act_bits, backward="int8", norm_weight=nw, norm_eps=1e-6)
    gx, gw, gb, gn = torch.autograd.grad(y, (x, w, b, nw), gy)
    # grad of the normalized input by the int8 product over W^T, then autograd through the norm
    wq, scale = (ref.ternary_quantize if kind == "ternary" else ref.binary_quantize)(w.detach())
    pack = ref.pack_ternary if kind == "ternary" else ref.pack_binary
    linear = ref.ternary_linear if kind == "ternary" else ref.binary_linear
    grad_h = linear(gy.reshape(-1, 24), pack(wq.T.contiguous()).qdata, scale, None, 8, in_features=24).reshape(x.shape)
    h = ref.rms_norm(x, nw, 1e-6)
    if act_bits == 1:
        grad_h = grad_h * (h.detach().abs() <= 1)
    want_x, want_n = torch.autograd.grad(h, (x, nw), grad_h)
    torch.testing.assert_close(gx, want_x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gn, want_n, rtol=1e-5, atol=1e-4)
    y_e = quant.bit_linear(x, w, b, kind, act_bits, norm_weight=nw, norm_eps=1e-6)
    _, gw_e, gb_e = torch.autograd.grad(y_e, (x, w, b), gy)
    assert torch.equal(y, y_e) and torch.equal(gw, gw_e) and torch.equal(gb, gb_e)


def test_norm_forward_is_the_packed_layer_bit_for_bit():
    """Training with the fused norm computes what the packed inference layer (fused too) computes."""
    layer = BitLinear(130, 24, norm=True)
    with torch.no_grad():
        layer.norm.weight.mul_(torch.linspace(0.5, 1.5, 130))
    x = torch.randn(7, 130, requires_grad=True)
    y_train = layer(x)
    y_packed = layer.pack()(x.detach())
    assert torch.equal(y_train, y_packed)


@pytest.mark.skipif(not NATIVE, reason="native extension not built")
@fuzz
@given(m=st.sampled_from([0, 1, 2, 7, 300]), k=cols, seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_native_norm_backward_is_autograd_of_the_reference_norm(m, k, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    x = (2 * torch.randn(m, k, generator=g)).to(dtype).requires_grad_()
    w = (1 + 0.5 * torch.randn(k, generator=g)).requires_grad_()
    grad = torch.randn(m, k, generator=g)
    gx, gw = torch.ops.bitops.rms_norm_backward(grad, x.detach(), w.detach(), 1e-6)
    # the exact gradients, in float64, of the same float32 values the kernel reads
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    r = 1 / torch.sqrt(xd.square().mean(-1, keepdim=True) + 1e-6)
    want_x, want_w = torch.autograd.grad(xd * r * wd, (xd, wd), grad.double())
    # float32 arithmetic: g - x r^2 mean(x g) cancels, so the error scales with |g| r, not |grad_x|
    scale = (grad.double().abs() * wd.abs() * r).amax(-1, keepdim=True) if m else torch.zeros(0, 1)
    assert ((gx.double() - want_x).abs() <= 1e-5 * scale + 1e-6).all()
    torch.testing.assert_close(gw.double(), want_w, rtol=1e-5, atol=1e-5 * max(1.0, m**0.5))


@pytest.mark.skipif(not NATIVE, reason="native extension not built")
def test_native_norm_backward_bad_input():
    with pytest.raises(ValueError, match="grad must have x's shape"):
        torch.ops.bitops.rms_norm_backward(torch.randn(2, 4), torch.randn(2, 5), torch.ones(5), 1e-6)
    with pytest.raises(ValueError, match=r"weight must have shape \[k=5\]"):
        torch.ops.bitops.rms_norm_backward(torch.randn(2, 5), torch.randn(2, 5), torch.ones(4), 1e-6)


@pytest.mark.parametrize("kind,act_bits", [("ternary", 8), ("binary", 8), ("binary", 1)])
def test_bf16_layer_backward_in_bf16_matches_the_oracle(kind, act_bits):
    """A bfloat16 layer's backward GEMMs run in bfloat16 (as nn.Linear's): within bf16 rounding
    of the float32 fake-quant gradients."""
    g = torch.Generator().manual_seed(5)
    x = (1.5 * torch.randn(64, 96, generator=g)).bfloat16().requires_grad_()
    w = (0.1 * torch.randn(40, 96, generator=g)).bfloat16().requires_grad_()
    gy = torch.randn(64, 40, generator=g).bfloat16()
    gx, gw = torch.autograd.grad(quant.bit_linear(x, w, None, kind, act_bits), (x, w), gy)
    assert gx.dtype == gw.dtype == torch.bfloat16
    xf, wf = x.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    want_x, want_w = torch.autograd.grad(quant.fake_quant_linear(xf, wf, None, kind, act_bits), (xf, wf), gy.float())
    for got, want in ((gx, want_x), (gw, want_w)):
        err = (got.float() - want).abs().max() / want.abs().max()
        assert err < 1e-2  # bf16 inputs to a float32-accumulated GEMM: ~2^-8 of the largest term


def test_absmean_is_accurate_and_leaves_w_alone(monkeypatch):
    monkeypatch.setattr(ref, "_ABS_SUM_CHUNK", 1000)  # many chunks, a ragged last one
    w = torch.randn(37, 301)
    w0 = w.clone()
    gamma, divisor = ref.absmean(w)
    assert torch.equal(w, w0)
    assert abs(gamma.item() - w.double().abs().mean().item()) <= 2e-7 * gamma.item()
    assert gamma.dtype == torch.float32 and torch.equal(divisor, gamma.clamp_min(ref.EPS))
    wb = w.bfloat16()
    assert abs(ref.absmean(wb)[0].item() - wb.double().abs().mean().item()) <= 2e-7 * gamma.item()


@pytest.mark.skipif(not NATIVE, reason="native extension not built")
@pytest.mark.parametrize("kind", ["ternary", "binary"])
@pytest.mark.parametrize("per_row", [False, True])
def test_grad_x_decoded_a_block_at_a_time(monkeypatch, kind, per_row):
    import bitops.autograd as autograd

    g = torch.Generator().manual_seed(9)
    wq = (ref.ternary_quantize if kind == "ternary" else ref.binary_quantize)(torch.randn(300, 70, generator=g))[0]
    scale = torch.rand(300, generator=g) + 0.5 if per_row else torch.tensor(0.7)
    packed = (ops.pack_ternary if kind == "ternary" else ops.pack_binary)(wq, scale)
    gy = torch.randn(9, 300, generator=g)
    want = gy @ (wq.float() * scale.reshape(-1, 1))
    monkeypatch.setattr(autograd, "_DECODE_BLOCK_FLOATS", 70 * 64)  # 64 rows a block: 5 blocks, ragged
    got = autograd.grad_input(gy, kind, packed.qdata, packed.scale, 70, (9, 70), torch.float32)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not NATIVE, reason="native extension not built")
@pytest.mark.parametrize("shape", [(0, 5), (1, 1), (3, 4, 130), (300, 257)])
def test_dequantized_activations_are_the_true_division(shape):
    x = 3 * torch.randn(shape)
    xq, s = bitops.quantize_activations(x)
    got = torch.ops.bitops.dequantize_activations(xq, s)
    assert got.shape == x.shape and torch.equal(got, xq.float() / s.unsqueeze(-1))
    with pytest.raises(ValueError, match="one scale per row"):
        torch.ops.bitops.dequantize_activations(xq, torch.ones(7))
    with pytest.raises(TypeError, match="xq must be int8"):
        torch.ops.bitops.dequantize_activations(xq.float(), s)


@pytest.mark.parametrize("kind,act_bits", [("binary", 1), ("ternary", 8), ("binary", None)])
def test_norm_weight_gradient_when_x_needs_none(kind, act_bits):
    """A first layer: the data needs no gradient, the norm weight does (sign activations: the
    straight-through window must still mask it)."""
    x, w, b, nw, gy = _norm_case(kind, act_bits, torch.float32)
    x = x.detach()
    y = quant.bit_linear(x, w, b, kind, act_bits, norm_weight=nw, norm_eps=1e-6)
    gw, gn = torch.autograd.grad(y, (w, nw), gy)
    y_ref = quant.fake_quant_linear(ref.rms_norm(x, nw, 1e-6), w, b, kind, act_bits)
    want_w, want_n = torch.autograd.grad(y_ref, (w, nw), gy)
    torch.testing.assert_close(gw, want_w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gn, want_n, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(not NATIVE, reason="native extension not built")
@pytest.mark.parametrize("n", [300, 5000])
def test_bf16_grad_x_rounds_once(monkeypatch, n):
    """bfloat16 grad_x: one GEMM over W decoded to bf16, or (past the bf16 size limit) float32
    blocks rounded once at the end: never a bf16 sum of blocks."""
    import bitops.autograd as autograd

    monkeypatch.setattr(autograd, "_DECODE_WHOLE_BF16", 300 * 64)  # n = 5000 takes the float32 blocks
    monkeypatch.setattr(autograd, "_DECODE_BLOCK_FLOATS", 64 * 64)
    g = torch.Generator().manual_seed(2)
    wq = ref.ternary_quantize(torch.randn(n, 64, generator=g))[0]
    packed = ops.pack_ternary(wq, torch.tensor(0.3))
    gy = torch.randn(16, n, generator=g).bfloat16()
    got = autograd.grad_input(gy, "ternary", packed.qdata, packed.scale, 64, (16, 64), torch.bfloat16)
    exact = gy.double() @ (wq.double() * 0.3)
    err = ((got.double() - exact).abs().max() / exact.abs().max()).item()
    # at most one bf16 rounding of W's values and one of the result (unit roundoff 2^-8 each): a
    # bf16 sum over the 78 blocks would add one rounding per block
    assert got.dtype == torch.bfloat16 and err <= 2**-7
    w16 = torch.ops.bitops.dequantize_ternary(packed.qdata, 64, packed.scale, torch.bfloat16)
    assert torch.equal(w16, (wq.float() * 0.3).bfloat16())
    with pytest.raises(TypeError, match="float32 or bfloat16"):
        torch.ops.bitops.dequantize_ternary(packed.qdata, 64, packed.scale, torch.float16)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # torch's, as for nn.Linear(5, 0)
@pytest.mark.parametrize("backward", ["exact", "int8"])
def test_a_layer_without_outputs_trains(backward):
    layer = BitLinear(5, 0, backward=backward)
    x = torch.randn(3, 5, requires_grad=True)
    layer(x).sum().backward()
    assert torch.equal(x.grad, torch.zeros(3, 5)) and layer.weight.grad.shape == (0, 5)
    assert layer.bias.grad.shape == (0,)
