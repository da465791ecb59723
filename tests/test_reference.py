"""The oracle against hand-computed expectations: the formulas of DESIGN.md section 1."""

import math

import pytest
import torch

from bitops import reference as ref

I8 = torch.int8


def t(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


# ------------------------------------------------------------------ ternary_quantize


def test_ternary_quantize_by_hand():
    w = t([[0.5, -1.5, 0.0, 2.0]])  # mean |w| = 1.0
    wq, gamma = ref.ternary_quantize(w)
    assert gamma.item() == 1.0
    assert wq.dtype == I8
    assert wq.tolist() == [[0, -1, 0, 1]]  # 0.5 -> 0 (half to even), -1.5 -> -2 -> clamp -1


def test_ternary_quantize_half_ties_round_to_even():
    w = t([[0.5, 1.5, -0.5, 2.5, -2.5, 0.5, 0.0, 0.0]])  # mean |w| = 1.0
    wq, gamma = ref.ternary_quantize(w)
    assert gamma.item() == 1.0
    assert wq.tolist() == [[0, 1, 0, 1, -1, 0, 0, 0]]  # +-0.5 -> 0, not +-1


def test_ternary_quantize_all_zero_has_no_nan():
    wq, gamma = ref.ternary_quantize(torch.zeros(3, 5))
    assert gamma.item() == 0.0
    assert torch.equal(wq, torch.zeros(3, 5, dtype=I8))


def test_ternary_quantize_single_element_and_all_equal():
    wq, gamma = ref.ternary_quantize(t([[-3.0]]))
    assert (wq.item(), gamma.item()) == (-1, 3.0)
    wq, gamma = ref.ternary_quantize(torch.full((2, 3), 0.25))
    assert gamma.item() == 0.25 and torch.equal(wq, torch.ones(2, 3, dtype=I8))


def test_ternary_quantize_negative_zero():
    wq, gamma = ref.ternary_quantize(t([[-0.0, 0.0, 1.0, -1.0]]))
    assert wq.tolist() == [[0, 0, 1, -1]] and gamma.item() == 0.5


def test_ternary_quantize_per_channel():
    w = t([[1.0, -1.0], [0.1, 0.4]])
    wq, gamma = ref.ternary_quantize(w, per_channel=True)
    assert torch.allclose(gamma, t([1.0, 0.25]))
    assert wq.tolist() == [[1, -1], [0, 1]]  # 0.1 / 0.25 = 0.4 -> 0, 0.4 / 0.25 = 1.6 -> 2 -> 1


def test_ternary_quantize_tiny_gamma_uses_eps():
    # mean |w| = 1e-7 < eps: divide by eps = 1e-5, so 2e-7 / 1e-5 = 0.02 -> 0
    wq, gamma = ref.ternary_quantize(t([[2e-7, 0.0]]))
    assert wq.tolist() == [[0, 0]] and math.isclose(gamma.item(), 1e-7, rel_tol=1e-6)


# ------------------------------------------------------------------ binary_quantize


def test_binary_quantize_by_hand():
    wq, beta = ref.binary_quantize(t([[0.5, -1.5, 0.0, -0.0, 2.0]]))
    assert wq.tolist() == [[1, -1, 1, 1, 1]]  # 0 and -0.0 are >= 0: +1
    assert beta.item() == pytest.approx(0.8)


def test_binary_quantize_all_zero():
    wq, beta = ref.binary_quantize(torch.zeros(2, 2))
    assert beta.item() == 0.0 and torch.equal(wq, torch.ones(2, 2, dtype=I8))


# ------------------------------------------------------------------ quantize_activations


def test_quantize_activations_by_hand():
    xq, s = ref.quantize_activations(t([[1.0, -0.5, 0.25, 0.0]]))
    assert s.item() == 127.0
    assert xq.tolist() == [[127, -64, 32, 0]]  # -63.5 -> -64 and 31.75 -> 32 (nearest), ties to even


def test_quantize_activations_ties_to_even():
    # amax = 127 -> s = 1 exactly, so x * s = x: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0
    xq, s = ref.quantize_activations(t([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5]]))
    assert s.item() == 1.0
    assert xq.tolist() == [[127, 0, 2, 2, 0, -2]]


def test_quantize_activations_all_zero_row():
    xq, s = ref.quantize_activations(torch.zeros(2, 3))
    assert torch.equal(xq, torch.zeros(2, 3, dtype=I8))
    assert torch.equal(s, torch.full((2,), 127.0 / 1e-5, dtype=torch.float32))


def test_quantize_activations_single_element_negative_zero_all_equal():
    xq, s = ref.quantize_activations(t([[-2.0]]))
    assert xq.item() == -127 and s.item() == pytest.approx(63.5)
    xq, _ = ref.quantize_activations(t([[-0.0, 1.0]]))
    assert xq.tolist() == [[0, 127]]
    xq, _ = ref.quantize_activations(torch.full((1, 4), -3.0))
    assert xq.tolist() == [[-127] * 4]


def test_quantize_activations_scale_is_a_true_division():
    # 127 / a differs from a.reciprocal() * 127 in the last bit for some a: the contract is the division
    a = torch.linspace(0.1, 10.0, 10001)
    _, s = ref.quantize_activations(a[:, None])
    exact = torch.tensor([127.0 / float(v) for v in a.tolist()], dtype=torch.float64).float()
    assert torch.equal(s, exact)


def test_quantize_activations_non_finite_rows_are_nan():
    x = t([[1.0, float("nan")], [float("inf"), 0.0], [1.0, 2.0]])
    xq, s = ref.quantize_activations(x)
    assert torch.isnan(s[:2]).all() and s[2].item() == 63.5
    assert xq[:2].abs().sum() == 0


# ------------------------------------------------------------------ pack / unpack


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7, 8, 9, 127, 128, 129, 4096])
def test_pack_ternary_round_trip(k):
    wq = torch.randint(-1, 2, (3, k), dtype=I8)
    packed = ref.pack_ternary(wq)
    assert packed.kind == "ternary" and packed.shape == (3, k) and packed.scale is None
    assert packed.qdata.dtype == torch.uint8 and packed.qdata.shape == (3, ref.ternary_row_bytes(k))
    assert torch.equal(ref.unpack_ternary(packed), wq)
    assert torch.equal(ref.unpack_ternary(packed.qdata, k), wq)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7, 8, 9, 127, 128, 129, 4096])
def test_pack_binary_round_trip(k):
    wq = torch.randint(0, 2, (3, k), dtype=I8) * 2 - 1
    packed = ref.pack_binary(wq)
    assert packed.kind == "binary" and packed.shape == (3, k)
    assert packed.qdata.shape == (3, ref.binary_row_bytes(k))
    assert torch.equal(ref.unpack_binary(packed), wq)


def test_ternary_layout_by_hand():
    # weight j sits in byte j at bits 7:6, weight j+32 at 5:4, j+64 at 3:2, j+96 at 1:0; code = w + 1
    wq = torch.zeros(1, 130, dtype=I8)
    wq[0, 0], wq[0, 32], wq[0, 64], wq[0, 96], wq[0, 129] = 1, -1, 1, -1, 1
    packed = ref.pack_ternary(wq).qdata
    assert packed.shape == (1, 64)
    assert packed[0, 0].item() == (2 << 6) | (0 << 4) | (2 << 2) | 0
    assert packed[0, 1].item() == 0x55  # four zero weights
    # second block: weight 129 is at j = 1, bits 7:6; the rest is zero or padding (code 1)
    assert packed[0, 33].item() == (2 << 6) | 0x15
    assert (packed[0, 34:] == 0x55).all()


def test_binary_layout_by_hand():
    wq = -torch.ones(1, 10, dtype=I8)
    wq[0, 0], wq[0, 9] = 1, 1
    packed = ref.pack_binary(wq).qdata
    assert packed.shape == (1, 32)
    assert packed[0, :2].tolist() == [0b1, 0b10] and (packed[0, 2:] == 0).all()


def test_unpack_ternary_rejects_code_3():
    packed = ref.pack_ternary(torch.zeros(2, 5, dtype=I8)).qdata
    packed[1, 3] |= 0xC0  # weight 3 of row 1 -> code 3
    with pytest.raises(ValueError, match="corrupt"):
        ref.unpack_ternary(packed, 5)


def test_pack_rejects_values_outside_the_format():
    with pytest.raises(ValueError, match="-1, 0 and 1"):
        ref.pack_ternary(t([[2]], I8))
    with pytest.raises(ValueError, match="-1 and \\+1"):
        ref.pack_binary(t([[0]], I8))


# ------------------------------------------------------------------ matmuls and linears


@pytest.mark.parametrize("k", [1, 5, 129, 300])
def test_ternary_matmul_int_equals_float64_matmul(k):
    xq = torch.randint(-128, 128, (4, k), dtype=I8)
    wq = torch.randint(-1, 2, (6, k), dtype=I8)
    acc = ref.ternary_matmul_int(xq, ref.pack_ternary(wq), k)
    assert acc.dtype == torch.int32
    expected = xq.double() @ wq.double().T
    assert torch.equal(acc.double(), expected)


def test_ternary_matmul_int_extremes_by_hand():
    k = 300
    xq = torch.full((2, k), -128, dtype=I8)
    xq[1] = 127
    wq = torch.full((2, k), -1, dtype=I8)
    wq[1] = 1
    acc = ref.ternary_matmul_int(xq, ref.pack_ternary(wq), k)
    assert acc.tolist() == [[128 * k, -128 * k], [-127 * k, 127 * k]]


def test_binary_matmul_int_by_hand():
    x = t([[1, -1, 1, 1, -1]], I8)
    w = t([[1, 1, 1, 1, 1], [1, -1, 1, 1, -1]], I8)
    acc = ref.binary_matmul_int(ref.pack_binary(x), ref.pack_binary(w), 5)
    assert acc.tolist() == [[1, 5]]


def test_ternary_linear_by_hand():
    x = t([[1.0, -0.5, 0.25, 0.0]])  # s = 127, xq = [127, -64, 32, 0]
    wq = t([[1, 1, -1, 0], [0, -1, 0, 1]], I8)
    gamma = t(0.5)
    bias = t([1.0, -1.0])
    y = ref.ternary_linear(x, ref.pack_ternary(wq), gamma, bias)
    # acc = [127 - 64 - 32, 64] -> y = acc * (0.5 / 127) + bias
    f = 0.5 / 127
    assert y[0, 0].item() == pytest.approx(31 * f + 1.0, rel=1e-6)
    assert y[0, 1].item() == pytest.approx(64 * f - 1.0, rel=1e-6)
    y_float = ref.ternary_linear(x, ref.pack_ternary(wq), gamma, bias, act_bits=None)
    assert y_float[0].tolist() == pytest.approx([0.25 * 0.5 + 1.0, 0.5 * 0.5 - 1.0])


def test_binary_linear_by_hand():
    x = t([[0.3, -2.0, 0.0]])  # signs +1, -1, +1
    w = t([[1, 1, -1], [1, -1, 1]], I8)
    beta = t([2.0, 0.5])
    y = ref.binary_linear(x, ref.pack_binary(w), beta, act_bits=1)
    assert y.tolist() == [[-1 * 2.0, 3 * 0.5]]
    y = ref.binary_linear(x, ref.pack_binary(w), beta, act_bits=None)
    assert y[0].tolist() == pytest.approx([(0.3 - 2.0) * 2.0, (0.3 + 2.0) * 0.5])


def test_linear_keeps_dtype_and_leading_dims():
    x = torch.randn(2, 3, 40, dtype=torch.bfloat16)
    wq, g = ref.ternary_quantize(torch.randn(7, 40))
    y = ref.ternary_linear(x, ref.pack_ternary(wq), g)
    assert y.shape == (2, 3, 7) and y.dtype == torch.bfloat16


def test_linear_nan_row_gives_nan_output_row_only():
    x = torch.randn(3, 16)
    x[1, 4] = float("nan")
    wq, g = ref.ternary_quantize(torch.randn(5, 16))
    for y in (
        ref.ternary_linear(x, ref.pack_ternary(wq), g),
        ref.binary_linear(x, ref.pack_binary(torch.where(wq >= 0, 1, -1).to(I8)), g, act_bits=1),
    ):
        assert torch.isnan(y[1]).all() and torch.isfinite(y[[0, 2]]).all()
