"""Extreme activations through the public API against bitops.reference (hypothesis).

Rows mix denormals, -0.0, all-equal values, magnitudes near the float32 limit,
NaN and +-Inf. The policy (README "Limits and policies"): a row holding NaN or
+-Inf gives a NaN output row on the quantised paths, and never a finite value
on the float-activation paths; everything else matches the oracle bit for bit,
or within the float32 error bound of a K-term sum for float activations.
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bitops
from bitops import reference as ref

from .strategies import SPECIAL_K, gen, random_binary, random_ternary, seeds

pytestmark = pytest.mark.skipif(bitops.backend() == "reference", reason="native extension not built")

FLT_MAX = 3.4028234663852886e38
U = 2.0**-24

SPECIALS = [0.0, -0.0, 1e-45, -1e-45, 1e-40, -2.5e-39, 1.1754944e-38, 3e38, -3e38, FLT_MAX, -FLT_MAX,
            math.inf, -math.inf, math.nan, 1.0, -1.0, 0.5, 1e-5, 9.9e-6, 127.5, 1e30]
elements = st.one_of(st.sampled_from(SPECIALS), st.floats(width=32, allow_nan=True, allow_infinity=True))
small_k = st.one_of(st.sampled_from([k for k in SPECIAL_K if k <= 300]), st.integers(1, 300))


@st.composite
def extreme_rows(draw):
    """x [m, k] whose rows are all-equal, or random with a few extreme values dropped in."""
    k = draw(small_k)
    m = draw(st.integers(0, 6))
    rows = []
    for r in range(m):
        if draw(st.booleans()):
            rows.append(torch.full((k,), draw(elements)))
            continue
        row = torch.randn(k, generator=gen(draw(seeds))) * draw(st.sampled_from([1.0, 1e-38, 1e30]))
        for _ in range(draw(st.integers(0, 4))):
            row[draw(st.integers(0, k - 1))] = draw(elements)
        rows.append(row)
    return torch.stack(rows) if rows else torch.zeros(0, k)


def same(a, b):
    """Bit-for-bit equal values, NaN where the other has NaN (any payload)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point():
        return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
    return torch.equal(a, b)


def nonfinite_rows(x):
    return ~torch.isfinite(x.float()).all(dim=-1)


def scales(n, seed, per_channel, with_bias):
    g = torch.rand(n, generator=gen(seed)) + 0.05 if per_channel else torch.tensor(0.37)
    b = torch.randn(n, generator=gen(seed + 1)) if with_bias else None
    return g, b


@given(x=extreme_rows(), dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
def test_quantizers_match_the_oracle(x, dtype):
    x = x.to(dtype)
    for got, want in zip(bitops.quantize_activations(x), ref.quantize_activations(x)):
        assert same(got, want)
    for got, want in zip(bitops.binarize_activations(x), ref.binarize_activations(x)):
        assert same(got, want)


@given(x=extreme_rows(), n=st.integers(1, 9), seed=seeds, per_channel=st.booleans(), with_bias=st.booleans(),
       weight=st.sampled_from(["ternary", "binary"]), act_bits=st.sampled_from([8, 1]))
def test_quantized_paths_match_the_oracle_exactly(x, n, seed, per_channel, with_bias, weight, act_bits):
    k = x.shape[-1]
    g, b = scales(n, seed, per_channel, with_bias)
    if weight == "ternary":
        packed = ref.pack_ternary(random_ternary(n, k, seed))
        act_bits = 8
        got, want = bitops.ternary_linear(x, packed, g, b), ref.ternary_linear(x, packed, g, b)
    else:
        packed = ref.pack_binary(random_binary(n, k, seed))
        got = bitops.binary_linear(x, packed, g, b, act_bits=act_bits)
        want = ref.binary_linear(x, packed, g, b, act_bits=act_bits)
    assert same(got, want)
    assert bool(got[nonfinite_rows(x)].isnan().all()), "a row holding NaN or Inf must give a NaN row"


@given(x=extreme_rows(), n=st.integers(1, 9), seed=seeds, with_bias=st.booleans(),
       weight=st.sampled_from(["ternary", "binary"]))
def test_float_activation_paths_follow_the_policy(x, n, seed, with_bias, weight):
    k = x.shape[-1]
    g, b = scales(n, seed, True, with_bias)
    if weight == "ternary":
        wq = random_ternary(n, k, seed)
        got = bitops.ternary_linear(x, ref.pack_ternary(wq), g, b, act_bits=None)
    else:
        wq = random_binary(n, k, seed)
        got = bitops.binary_linear(x, ref.pack_binary(wq), g, b, act_bits=None)
    bias = torch.zeros(n) if b is None else b
    # In double: the exact sum, and the sum of |x * w| that bounds float32 rounding.
    xd, wd = x.double(), wq.double()
    exact = (xd @ wd.T) * g.double() + bias.double()
    acc_mass = xd.abs() @ wd.abs().T
    mass = acc_mass * g.double() + bias.double().abs()

    bad_rows = nonfinite_rows(x)
    assert not bool(torch.isfinite(got[bad_rows]).any()), "a row holding NaN or Inf gave a finite value"
    assert bool(got[x.isnan().any(dim=-1)].isnan().all()), "a row holding NaN must give NaN"
    # where no float32 partial sum, nor its product with gamma, can overflow
    fine = ~bad_rows[:, None] & (acc_mass < FLT_MAX / 4) & (mass < FLT_MAX / 4)
    bound = 2 * k * U * mass + 4 * U * exact.abs() + 1e-43
    err = (got.double() - exact).abs()
    assert bool(torch.isfinite(got[fine]).all())
    assert bool((err[fine] <= bound[fine]).all()), f"max error {err[fine].max()} over bound"


@given(m=st.integers(1, 5), k=small_k, n=st.integers(1, 9), seed=seeds, value=st.sampled_from([-128, 127, 0, -1]))
def test_all_equal_int8_rows_are_exact(m, k, n, seed, value):
    xq = torch.full((m, k), value, dtype=torch.int8)
    packed = ref.pack_ternary(random_ternary(n, k, seed))
    assert torch.equal(bitops.ternary_matmul_int(xq, packed, k), ref.ternary_matmul_int(xq, packed, k))
    wb = ref.pack_binary(random_binary(n, k, seed))
    xbits, _ = ref.binarize_activations(xq.float())
    assert torch.equal(bitops.binary_matmul_int(xbits, wb, k), ref.binary_matmul_int(xbits, wb, k))
