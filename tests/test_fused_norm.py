"""ternary_linear_i8_norm (RMSNorm + int8 quantization + ternary GEMM in one call) and the
bf16/fp16 inputs and outputs of the linear ops, against bitops.reference."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bitops
from bitops import reference as ref
from bitops.nn import PackedBitLinear

from .strategies import ks, ms, ns, random_float, random_ternary, seeds

pytestmark = pytest.mark.skipif(bitops.backend() == "reference", reason="native extension not built")
fused = torch.ops.bitops.ternary_linear_i8_norm
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _case(m, n, k, seed, dtype, per_channel=False, with_bias=False):
    g = torch.Generator().manual_seed(seed)
    x = (random_float(m, k, seed) * 3).to(dtype)
    packed = ref.pack_ternary(random_ternary(n, k, seed + 1)).qdata
    gamma = torch.rand(n if per_channel else (), generator=g) + 0.01
    bias = torch.randn(n, generator=g) if with_bias else None
    weight = (torch.rand(k, generator=g) + 0.5).to(dtype)
    return x, packed, gamma, bias, weight


def _reference(x, packed, gamma, bias, weight, eps):
    xn = ref.rms_norm(x, weight, eps)
    return ref.ternary_linear(xn, packed, gamma, bias, in_features=x.shape[-1]).to(x.dtype)


@given(m=ms, n=ns, k=ks, seed=seeds, dtype=st.sampled_from(DTYPES), per_channel=st.booleans(),
       with_bias=st.booleans(), eps=st.sampled_from([1e-5, 1e-6, 0.0]))
def test_fused_norm_matches_the_reference(m, n, k, seed, dtype, per_channel, with_bias, eps):
    x, packed, gamma, bias, weight = _case(m, n, k, seed, dtype, per_channel, with_bias)
    got = fused(x, packed, gamma, bias, weight, eps)
    want = _reference(x, packed, gamma, bias, weight, eps)
    assert got.dtype == dtype and got.shape == (m, n)
    # The norm's float64 sum of squares runs in another order than torch's, so its rounding to
    # float32 may differ by one ulp in rare rows; that moves at most one activation by one int8
    # step: |dy| <= scale * max|xn| / 127 per output (plus the output dtype's rounding).
    if m:
        xn = ref.rms_norm(x, weight, eps)
        step = xn.abs().amax(-1, keepdim=True) / 127 * gamma.reshape(1, -1)
        tol = 1.01 * step + want.float().abs() * (2.0 ** -7 if dtype != torch.float32 else 0.0)
        assert ((got.float() - want.float()).abs() <= tol).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_norm_is_bit_exact_on_seeded_cases(dtype):
    for seed in range(20):
        x, packed, gamma, bias, weight = _case(7, 33, 300 + seed, seed, dtype, seed % 2 == 0, seed % 3 == 0)
        assert torch.equal(fused(x, packed, gamma, bias, weight, 1e-5), _reference(x, packed, gamma, bias, weight, 1e-5))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("op", ["ternary_linear_i8", "ternary_linear_f", "binary_linear_i8", "binary_linear_f",
                                "binary_linear_b1"])
def test_half_inputs_give_the_float32_result_rounded_once(op, dtype):
    """bf16/fp16 x is read and written natively: exactly the float32 call on x.float(), then .to(dtype)."""
    k, n = 333, 29
    x = (random_float(6, k, 3) * 2).to(dtype)
    if op.startswith("ternary"):
        packed = ref.pack_ternary(random_ternary(n, k, 4)).qdata
    else:
        packed = ref.pack_binary(torch.where(random_ternary(n, k, 4) >= 0, 1, -1).to(torch.int8)).qdata
    scale, bias = torch.rand(n) + 0.1, torch.randn(n).to(dtype)
    fn = getattr(torch.ops.bitops, op)
    got = fn(x, packed, scale, bias)
    assert got.dtype == dtype
    assert torch.equal(got, fn(x.float(), packed, scale, bias).to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_quantize_activations_reads_half_inputs_natively(dtype):
    x = (random_float(5, 301, 9) * 4).to(dtype)
    for a, b in zip(bitops.quantize_activations(x), ref.quantize_activations(x)):
        assert torch.equal(a, b)


def test_fused_norm_refuses_bad_arguments():
    x, packed, gamma, _, weight = _case(2, 8, 64, 0, torch.float32)
    with pytest.raises(ValueError, match="norm_weight must have shape"):
        fused(x, packed, gamma, None, weight[:-1], 1e-5)
    with pytest.raises(TypeError, match="norm_weight must be float32, float16 or bfloat16"):
        fused(x, packed, gamma, None, weight.to(torch.int32), 1e-5)
    with pytest.raises(ValueError, match="eps must be finite"):
        fused(x, packed, gamma, None, weight, float("nan"))
    with pytest.raises(ValueError, match="rows of"):  # K = 200 needs 2 blocks a row, the buffer has 1
        fused(torch.randn(2, 200), packed, gamma, None, torch.ones(200), 1e-5)


def test_fused_norm_opcheck():
    x, packed, gamma, bias, weight = _case(3, 16, 200, 1, torch.bfloat16, True, True)
    torch.library.opcheck(fused, (x, packed, gamma, bias, weight, 1e-6))


@pytest.mark.parametrize("dtype", DTYPES)
def test_packed_layer_with_norm_takes_the_fused_call_and_equals_its_composite_path(dtype):
    layer = bitops.nn.BitLinear(200, 24, bias=True, norm=True).eval()
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5)
    packed = layer.pack().to(dtype)
    x = torch.randn(4, 200).to(dtype)
    with torch.inference_mode():
        fast = packed(x)
    slow = packed(x.requires_grad_())  # a graph is wanted: the composite, differentiable path
    assert fast.dtype == dtype and torch.equal(fast, slow.detach())
    assert isinstance(packed, PackedBitLinear)
