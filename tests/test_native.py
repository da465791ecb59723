"""Native kernels against the oracle, bit-exactly where the math is integer.

Runs whichever CPU kernel set is active (AVX-512 VNNI, AVX2 when BITOPS_ISA=avx2,
or the portable one when BITOPS_ISA=scalar); tests/test_cpu_kernels.py covers each explicitly.
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bitops
from bitops import reference as ref

from .strategies import ks, ms, ns, random_binary, random_float, random_int8, random_ternary, seeds

pytestmark = pytest.mark.skipif(bitops.backend() == "reference", reason="native extension not built")

F32_EPS = 2.0**-24


def float_path_bound(x, w_float, scale, y_ref):
    """Both results are float32 sums of K exact products x*w (w in {-1, 0, 1}); each differs from the
    exact sum by at most (K-1) * u * sum|x*w| (u = 2^-24), then one rounding for the scale and one for
    the bias. So the two differ by at most this (K-independent slack only for exact zeros)."""
    k = x.shape[-1]
    abs_dot = x.abs().double() @ w_float.abs().double().T
    return 2 * k * F32_EPS * abs_dot * scale.abs().double().reshape(1, -1) + 4 * F32_EPS * y_ref.abs().double() + 1e-30


def test_backend_is_native():
    assert bitops.backend() in ("cpu-avx512vnni", "cpu-avx2", "cpu-scalar")


@given(m=ms, k=ks, seed=seeds, kind=st.sampled_from(["normal", "wide", "zero_rows"]))
def test_quantize_activations_bit_exact(m, k, seed, kind):
    x = random_float(m, k, seed, kind)
    xq, s = bitops.quantize_activations(x)
    xq_ref, s_ref = ref.quantize_activations(x)
    assert torch.equal(xq, xq_ref)
    assert torch.equal(s, s_ref)


@given(m=ms, k=ks, seed=seeds)
def test_binarize_activations_bit_exact(m, k, seed):
    x = random_float(m, k, seed)
    if m and k > 2:
        x[0, 1] = -0.0
        x[0, 2] = 0.0
    bits, s = bitops.binarize_activations(x)
    bits_ref, s_ref = ref.binarize_activations(x)
    assert torch.equal(bits, bits_ref) and torch.equal(s, s_ref)


@given(n=ns, k=ks, seed=seeds)
def test_pack_unpack_ternary_matches_oracle(n, k, seed):
    wq = random_ternary(n, k, seed)
    packed = bitops.pack_ternary(wq)
    assert torch.equal(packed.qdata, ref.pack_ternary(wq).qdata)
    assert torch.equal(bitops.unpack_ternary(packed, k), wq)


@given(n=ns, k=ks, seed=seeds)
def test_pack_unpack_binary_matches_oracle(n, k, seed):
    wq = random_binary(n, k, seed)
    packed = bitops.pack_binary(wq)
    assert torch.equal(packed.qdata, ref.pack_binary(wq).qdata)
    assert torch.equal(bitops.unpack_binary(packed, k), wq)


@given(m=ms, n=ns, k=ks, seed=seeds, extremes=st.booleans(), zero_w=st.booleans())
def test_ternary_matmul_int_bit_exact(m, n, k, seed, extremes, zero_w):
    xq = random_int8(m, k, seed, extremes)
    wq = random_ternary(n, k, seed + 1, zero_fraction=1.0 if zero_w else None)
    packed = ref.pack_ternary(wq)
    acc = bitops.ternary_matmul_int(xq, packed, k)
    assert acc.dtype == torch.int32 and acc.shape == (m, n)
    assert torch.equal(acc, ref.ternary_matmul_int(xq, packed, k))


@given(m=ms, n=ns, k=ks, seed=seeds)
def test_binary_matmul_int_bit_exact(m, n, k, seed):
    xbits = ref.pack_binary(random_binary(m, k, seed)) if m else torch.zeros(0, ref.binary_row_bytes(k), dtype=torch.uint8)
    wbits = ref.pack_binary(random_binary(n, k, seed + 1))
    acc = bitops.binary_matmul_int(xbits, wbits, k)
    assert torch.equal(acc, ref.binary_matmul_int(xbits, wbits, k))


@given(m=ms, n=ns, k=ks, seed=seeds, per_channel=st.booleans(), with_bias=st.booleans())
def test_ternary_linear_int8_bit_exact(m, n, k, seed, per_channel, with_bias):
    x = random_float(m, k, seed, "wide")
    wq, gamma = bitops.ternary_quantize(torch.randn(n, k, generator=torch.Generator().manual_seed(seed)), per_channel)
    bias = torch.randn(n) if with_bias else None
    packed = bitops.pack_ternary(wq)
    y = bitops.ternary_linear(x, packed, gamma, bias)
    assert torch.equal(y, ref.ternary_linear(x, packed, gamma, bias))


@given(m=ms, n=ns, k=ks, seed=seeds, act_bits=st.sampled_from([8, 1]), per_channel=st.booleans())
def test_binary_linear_bit_exact(m, n, k, seed, act_bits, per_channel):
    x = random_float(m, k, seed, "wide")
    wq, beta = bitops.binary_quantize(torch.randn(n, k, generator=torch.Generator().manual_seed(seed)), per_channel)
    bias = torch.randn(n)
    packed = bitops.pack_binary(wq)
    y = bitops.binary_linear(x, packed, beta, bias, act_bits=act_bits)
    assert torch.equal(y, ref.binary_linear(x, packed, beta, bias, act_bits=act_bits))


@given(m=ms, n=ns, k=ks, seed=seeds, weight=st.sampled_from(["ternary", "binary"]))
def test_float_activation_paths_within_rounding_bound(m, n, k, seed, weight):
    x = random_float(m, k, seed, "wide")
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(seed))
    if weight == "ternary":
        wq, scale = bitops.ternary_quantize(w)
        packed, fn = bitops.pack_ternary(wq), bitops.ternary_linear
    else:
        wq, scale = bitops.binary_quantize(w)
        packed, fn = bitops.pack_binary(wq), bitops.binary_linear
    bias = torch.randn(n)
    y = fn(x, packed, scale, bias, act_bits=None)
    ref_fn = ref.ternary_linear if weight == "ternary" else ref.binary_linear
    y_ref = ref_fn(x, packed, scale, bias, act_bits=None)
    bound = float_path_bound(x, wq.float(), scale, y_ref)
    assert ((y.double() - y_ref.double()).abs() <= bound).all()


def test_non_contiguous_and_leading_dims():
    x = torch.randn(40, 3, 2).permute(2, 1, 0)  # [2, 3, 40], non-contiguous
    assert not x.is_contiguous()
    wq, g = bitops.ternary_quantize(torch.randn(9, 40))
    packed_t = bitops.pack_ternary(wq)
    y = bitops.ternary_linear(x, packed_t, g)
    assert y.shape == (2, 3, 9)
    assert torch.equal(y, ref.ternary_linear(x.contiguous(), packed_t, g))
    # a non-contiguous packed tensor and int8 input work too
    wide = torch.zeros(9, 2 * packed_t.qdata.shape[1], dtype=torch.uint8)
    wide[:, ::2] = packed_t.qdata
    xq = torch.randint(-128, 128, (40, 5), dtype=torch.int8).T
    assert torch.equal(bitops.ternary_matmul_int(xq, wide[:, ::2], 40), ref.ternary_matmul_int(xq, packed_t, 40))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_bit_exact(dtype):
    x = torch.randn(5, 77).to(dtype)
    wq, g = bitops.ternary_quantize(torch.randn(6, 77))
    packed = bitops.pack_ternary(wq)
    bias = torch.randn(6).to(dtype)
    y = bitops.ternary_linear(x, packed, g, bias)
    assert y.dtype == dtype
    assert torch.equal(y, ref.ternary_linear(x, packed, g, bias))


def test_nan_policy_rows():
    x = torch.randn(4, 50)
    x[1, 3] = float("nan")
    x[2, 7] = float("-inf")
    wq, g = bitops.ternary_quantize(torch.randn(8, 50))
    y = bitops.ternary_linear(x, bitops.pack_ternary(wq), g)
    assert torch.isnan(y[1:3]).all() and torch.isfinite(y[[0, 3]]).all()
    yb = bitops.binary_linear(x, bitops.pack_binary(torch.where(wq >= 0, 1, -1).to(torch.int8)), g, act_bits=1)
    assert torch.isnan(yb[1:3]).all() and torch.isfinite(yb[[0, 3]]).all()


def test_large_n_gemv():
    k, n = 70, 20000
    x = torch.randn(1, k)
    wq = torch.randint(-1, 2, (n, k), dtype=torch.int8)
    packed = bitops.pack_ternary(wq)
    g = torch.tensor(0.3)
    assert torch.equal(bitops.ternary_linear(x, packed, g), ref.ternary_linear(x, packed, g))


VNNI = bitops.backend() == "cpu-avx512vnni"


@pytest.mark.skipif(not VNNI, reason="the AVX-512 VNNI set's two M = 1 read orders")
@pytest.mark.parametrize("order", ["tiles", "rows"])
@given(n=st.one_of(ns, st.integers(60, 300)), k=ks, seed=seeds, extremes=st.booleans())
def test_gemv_read_orders_bit_exact(order, n, k, seed, extremes):
    from bitops._native import cpu_tuning

    xq = random_int8(1, k, seed, extremes)
    packed = ref.pack_ternary(random_ternary(n, k, seed + 1)).qdata
    want = ref.ternary_matmul_int(xq, packed, k)
    with cpu_tuning(gemv_order=order):
        assert torch.equal(bitops.ternary_matmul_int(xq, packed, k), want)
        x = torch.randn(1, k, generator=torch.Generator().manual_seed(seed)).to(torch.bfloat16)
        gamma = torch.tensor(0.03)
        assert torch.equal(bitops.ternary_linear(x, packed, gamma, in_features=k),
                           ref.ternary_linear(x, packed, gamma, in_features=k).to(torch.bfloat16))


@pytest.mark.skipif(not VNNI, reason="the AVX-512 VNNI set's two M = 1 read orders")
@pytest.mark.parametrize("order", ["tiles", "rows"])
@pytest.mark.parametrize("k", [100, 128, 256, 1000, 2560])
def test_gemv_read_orders_refuse_code_3(order, k):
    from bitops._native import cpu_tuning

    n = 37
    packed = ref.pack_ternary(random_ternary(n, k, 5)).qdata.clone()
    packed[n - 2, (k - 1) // 4 % packed.shape[1]] |= 0xFF  # code 3 in the last weights of a row
    xq = random_int8(1, k, 6)
    with cpu_tuning(gemv_order=order), pytest.raises(ValueError, match="corrupt|code 3"):
        torch.ops.bitops.ternary_matmul_int(xq, packed, k)


def test_cpu_tuning_refuses_unknown_orders():
    from bitops._native import cpu_tuning

    with pytest.raises(ValueError, match="gemv_order"):
        cpu_tuning(gemv_order="zigzag")


AMX = VNNI and __import__("bitops._native", fromlist=["amx_usable"]).amx_usable()


@pytest.mark.skipif(not AMX, reason="needs AMX-INT8 (the ternary GEMM's AMX panels)")
@given(m=st.one_of(st.sampled_from([16, 17, 31, 32, 255, 256, 257, 300]), st.integers(16, 600)),
       n=st.one_of(ns, st.integers(60, 200)), k=ks, seed=seeds, extremes=st.booleans())
def test_amx_panels_bit_exact(m, n, k, seed, extremes):
    from bitops._native import cpu_tuning

    xq = random_int8(m, k, seed, extremes)
    packed = ref.pack_ternary(random_ternary(n, k, seed + 1)).qdata
    want = ref.ternary_matmul_int(xq, packed, k)
    with cpu_tuning(amx=True):
        assert torch.equal(bitops.ternary_matmul_int(xq, packed, k), want)
    with cpu_tuning(amx=False):
        assert torch.equal(bitops.ternary_matmul_int(xq, packed, k), want)


@pytest.mark.skipif(not AMX, reason="needs AMX-INT8 (the ternary GEMM's AMX panels)")
def test_amx_panels_linear_and_code_3():
    from bitops._native import cpu_tuning

    k, n = 1000, 70
    x = torch.randn(300, k).bfloat16()
    packed = ref.pack_ternary(random_ternary(n, k, 3)).qdata.clone()
    gamma = torch.rand(n) + 0.1
    with cpu_tuning(amx=True):
        assert torch.equal(bitops.ternary_linear(x, packed, gamma, in_features=k),
                           ref.ternary_linear(x, packed, gamma, in_features=k).to(torch.bfloat16))
        packed[n - 1, 100] |= 0x30  # code 3 in the last row
        with pytest.raises(ValueError, match="corrupt|code 3"):
            torch.ops.bitops.ternary_matmul_int(random_int8(40, k, 4), packed, k)


@pytest.mark.skipif(not AMX, reason="needs AMX-INT8 (the ternary GEMM's AMX panels)")
@pytest.mark.parametrize("per_row", [False, True])
def test_amx_tiles_of_rows_of_x(per_row):
    """From 256 rows of x a thread on, the AMX tiles split M (256 rows by all of N): ragged last
    block, one gamma (divided once per row) or one per output row, bias, bf16 out, and code 3."""
    from bitops._native import cpu_tuning

    k, n = 300, 70
    m = 256 * torch.get_num_threads() + 265  # >= 256 rows a thread: the split; a ragged last block
    g = torch.Generator().manual_seed(11)
    x = torch.randn(m, k, generator=g)
    packed = ref.pack_ternary(random_ternary(n, k, 5)).qdata.clone()
    gamma = torch.rand(n, generator=g) + 0.1 if per_row else torch.tensor(0.37)
    bias = torch.randn(n, generator=g)
    with cpu_tuning(amx=True):
        for xi in (x, x.bfloat16()):
            got = bitops.ternary_linear(xi, packed, gamma, bias, in_features=k)
            assert torch.equal(got, ref.ternary_linear(xi, packed, gamma, bias, in_features=k).to(xi.dtype))
        packed[n - 1, 10] |= 0xC0  # code 3 in the last row
        with pytest.raises(ValueError, match="corrupt|code 3"):
            bitops.ternary_linear(x, packed, gamma, in_features=k)
