"""Bad input raises a clear Python exception that names the problem, on the native
path and on the oracle alike. (tests/test_hostile.py runs harsher cases in subprocesses.)"""

import pytest
import torch

import bitops
from bitops import reference as ref

U8, I8 = torch.uint8, torch.int8
K = 40


def packed_t(n=3, k=K):
    return ref.pack_ternary(torch.randint(-1, 2, (n, k), dtype=I8))


def packed_b(n=3, k=K):
    return ref.pack_binary(torch.ones(n, k, dtype=I8))


def raw_t(n=3, k=K):
    """Raw packed bytes: accepted only with an explicit K (in_features= / k)."""
    return packed_t(n, k).qdata


def raw_b(n=3, k=K):
    return packed_b(n, k).qdata


G = torch.tensor(0.5)

# (description, callable, exception type, message fragment)
CASES = [
    ("x int dtype", lambda m: m.ternary_linear(torch.ones(2, K, dtype=torch.int32), packed_t(), G), TypeError, "x must be"),
    ("x float64", lambda m: m.ternary_linear(torch.ones(2, K, dtype=torch.float64), packed_t(), G), TypeError, "x must be"),
    ("x scalar", lambda m: m.quantize_activations(torch.tensor(1.0)), ValueError, "dimension"),
    ("packed dtype", lambda m: m.ternary_linear(torch.ones(2, K), raw_t().to(I8), G, in_features=K), TypeError, "packed must be"),
    ("packed rank", lambda m: m.ternary_linear(torch.ones(2, K), raw_t().reshape(-1), G, in_features=K), ValueError, "2-D"),
    ("K mismatch", lambda m: m.ternary_linear(torch.ones(2, K + 200), packed_t(), G), ValueError, "in_features=40"),
    # K within the same 128-weight block packs to the same bytes: only the recorded K can tell
    ("K mismatch in block", lambda m: m.ternary_linear(torch.ones(2, K + 1), packed_t(), G), ValueError, "41 features.*in_features=40"),
    ("K mismatch in block binary", lambda m: m.binary_linear(torch.ones(2, K - 1), packed_b(), G), ValueError, "39 features.*in_features=40"),
    ("K mismatch raw", lambda m: m.ternary_linear(torch.ones(2, K + 1), raw_t(), G, in_features=K), ValueError, "in_features=40"),
    ("raw without K", lambda m: m.ternary_linear(torch.ones(2, K), raw_t(), G), TypeError, "in_features=K"),
    ("raw binary without K", lambda m: m.binary_linear(torch.ones(2, K), raw_b(), G), TypeError, "in_features=K"),
    ("in_features disagrees", lambda m: m.ternary_linear(torch.ones(2, K), packed_t(), G, in_features=K + 1), ValueError, "in_features=41"),
    ("kind mismatch", lambda m: m.binary_linear(torch.ones(2, K), packed_t(), G), ValueError, "ternary"),
    ("no scale", lambda m: m.ternary_linear(torch.ones(2, K), packed_t()), ValueError, "no gamma"),
    ("scale twice", lambda m: m.ternary_linear(torch.ones(2, K), packed_t().with_scale(G), G.clone()), ValueError, "twice"),
    ("act_bits True", lambda m: m.binary_linear(torch.ones(2, K), packed_b(), G, act_bits=True), ValueError, "act_bits"),
    ("act_bits 8.0", lambda m: m.ternary_linear(torch.ones(2, K), packed_t(), G, act_bits=8.0), ValueError, "act_bits"),
    ("x no features", lambda m: m.quantize_activations(torch.ones(2, 0)), ValueError, "k must be in"),
    ("width does not fit k", lambda m: m.unpack_ternary(raw_t()[:, :16], K), ValueError, "needs 32 bytes"),
    ("binary width", lambda m: m.binary_linear(torch.ones(2, K), raw_b()[:, :8], G, in_features=K), ValueError, "needs 32 bytes"),
    ("gamma dtype", lambda m: m.ternary_linear(torch.ones(2, K), packed_t(), G.double()), TypeError, "gamma must be float32"),
    ("gamma shape", lambda m: m.ternary_linear(torch.ones(2, K), packed_t(), torch.ones(5)), ValueError, "gamma must hold"),
    ("beta shape", lambda m: m.binary_linear(torch.ones(2, K), packed_b(), torch.ones(2)), ValueError, "beta must hold"),
    ("bias shape", lambda m: m.ternary_linear(torch.ones(2, K), packed_t(), G, torch.ones(4)), ValueError, "bias must have shape"),
    ("bias dtype", lambda m: m.ternary_linear(torch.ones(2, K), packed_t(), G, torch.ones(3, dtype=torch.int64)), TypeError, "bias must be"),
    ("bf16 weight dtype", lambda m: m.bf16_linear(torch.ones(2, K), torch.ones(3, K)), TypeError, "weight must be bfloat16"),
    ("bf16 weight rank", lambda m: m.bf16_linear(torch.ones(2, K), torch.ones(3 * K, dtype=torch.bfloat16)), ValueError, "2-D"),
    ("bf16 K mismatch", lambda m: m.bf16_linear(torch.ones(2, K + 1), torch.ones(3, K, dtype=torch.bfloat16)), ValueError, "k=40"),
    ("bf16 x dtype", lambda m: m.bf16_linear(torch.ones(2, K, dtype=torch.float64), torch.ones(3, K, dtype=torch.bfloat16)), TypeError, "x must be"),
    ("bf16 bias shape", lambda m: m.bf16_linear(torch.ones(2, K), torch.ones(3, K, dtype=torch.bfloat16), torch.ones(4)), ValueError, "bias must have shape"),
    ("xq dtype", lambda m: m.ternary_matmul_int(torch.ones(2, K), packed_t(), K), TypeError, "xq must be int8"),
    ("xq last dim", lambda m: m.ternary_matmul_int(torch.ones(2, K + 200, dtype=I8), raw_t(), K + 200), ValueError, "bytes per row"),
    ("k disagrees", lambda m: m.ternary_matmul_int(torch.ones(2, K + 1, dtype=I8), packed_t(), K + 1), ValueError, "in_features=40"),
    ("xq k mismatch", lambda m: m.ternary_matmul_int(torch.ones(2, K - 1, dtype=I8), packed_t(), K), ValueError, "k=40"),
    ("k zero", lambda m: m.unpack_ternary(raw_t(), 0), ValueError, "k must be in"),
    ("k negative", lambda m: m.unpack_binary(raw_b(), -5), ValueError, "k must be in"),
    ("k too large", lambda m: m.ternary_matmul_int(torch.ones(1, 1, dtype=I8), raw_t(), 2**24 + 1), ValueError, "exact"),
    ("k not int", lambda m: m.unpack_ternary(raw_t(), 40.0), TypeError, "k must be an int"),
    ("pack ternary value 2", lambda m: m.pack_ternary(torch.full((2, 3), 2, dtype=I8)), ValueError, "-1, 0 and 1"),
    ("pack binary value 0", lambda m: m.pack_binary(torch.zeros(2, 3, dtype=I8)), ValueError, "-1 and \\+1"),
    ("pack dtype", lambda m: m.pack_ternary(torch.zeros(2, 3)), TypeError, "wq must be int8"),
    ("pack rank", lambda m: m.pack_ternary(torch.zeros(2, 3, 4, dtype=I8)), ValueError, "2-D"),
    ("xbits dtype", lambda m: m.binary_matmul_int(torch.zeros(2, 32, dtype=I8), packed_b(), K), TypeError, "xbits"),
    ("xbits width", lambda m: m.binary_matmul_int(torch.zeros(2, 16, dtype=U8), packed_b(), K), ValueError, "xbits"),
    ("act_bits ternary 1", lambda m: m.ternary_linear(torch.ones(2, K), packed_t(), G, act_bits=1), ValueError, "act_bits"),
    ("act_bits binary 4", lambda m: m.binary_linear(torch.ones(2, K), packed_b(), G, act_bits=4), ValueError, "act_bits"),
    ("not a tensor", lambda m: m.ternary_linear([[1.0] * K], packed_t(), G), TypeError, "must be a torch.Tensor"),
]


@pytest.mark.parametrize("module", [bitops, ref], ids=["native", "reference"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_clearly(module, case):
    _, call, exc, fragment = case
    with pytest.raises(exc, match=fragment):
        call(module)


@pytest.mark.parametrize("module", [bitops, ref], ids=["native", "reference"])
def test_corrupt_ternary_buffer_raises(module):
    packed = raw_t(k=300)
    packed[2, 38] |= 0x0C  # weight 198 of row 2 gets code 3
    with pytest.raises(ValueError, match="corrupt"):
        module.unpack_ternary(packed, 300)
    with pytest.raises(ValueError, match="corrupt"):
        module.ternary_linear(torch.randn(3, 300), packed, G, in_features=300)
    with pytest.raises(ValueError, match="corrupt"):
        module.ternary_matmul_int(torch.ones(1, 300, dtype=I8), packed, 300)


@pytest.mark.parametrize("kind", ["ternary", "binary"])
def test_wrapping_a_corrupt_buffer_raises_once(kind):
    """A PackedWeight checks a foreign buffer completely when it is made: invalid codes and
    dirty padding (which a raw buffer's kernels would ignore) fail there, on every device."""
    k = 300
    raw = (raw_t if kind == "ternary" else raw_b)(k=k).clone()
    assert bitops.PackedWeight(kind, raw.clone(), k).shape == (3, k)
    raw[1, -1] ^= 0x03 if kind == "ternary" else 0x80  # a padding weight / bit
    with pytest.raises(ValueError, match="row 1 .*corrupt|corrupt: row 1"):
        bitops.PackedWeight(kind, raw, k)
    with pytest.raises(ValueError, match="bytes per row"):
        bitops.PackedWeight(kind, raw[:, :-32], k)
    with pytest.raises(TypeError, match="uint8"):
        bitops.PackedWeight(kind, raw.to(torch.int8), k)


def test_code_3_in_padding_is_ignored():
    packed = raw_t(k=5)
    clean = packed.clone()
    packed[:, 20] = 0xFF  # byte 20 holds only padding weights (20, 52, 84, 116 >= k)
    x = torch.randn(2, 5)
    assert torch.equal(bitops.ternary_linear(x, packed, G, in_features=5), ref.ternary_linear(x, clean, G, in_features=5))


def test_binary_padding_bits_do_not_change_results():
    k = 10
    w = torch.randint(0, 2, (3, k), dtype=I8) * 2 - 1
    clean = ref.pack_binary(w).qdata
    dirty = clean.clone()
    dirty[:, 1] |= 0xFC  # bits 10..15: padding
    dirty[:, 2:] = 0xFF
    x = torch.randn(4, k)
    xbits, _ = bitops.binarize_activations(x)
    for act_bits in (8, 1, None):
        assert torch.equal(bitops.binary_linear(x, dirty, G, act_bits=act_bits, in_features=k),
                           bitops.binary_linear(x, clean, G, act_bits=act_bits, in_features=k))
    assert torch.equal(bitops.binary_matmul_int(xbits, dirty, k), ref.binary_matmul_int(xbits, clean, k))
    assert torch.equal(bitops.unpack_binary(dirty, k), w)


def test_cuda_tensor_on_cpu_only_build_is_refused():
    if bitops.backend("cuda") == "cuda":
        pytest.skip("this build has CUDA kernels")
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        x = torch.empty(2, K, device="cuda")
    with pytest.raises(ValueError, match="no CUDA kernels"):  # a device problem: ValueError, as everywhere
        bitops.quantize_activations(x)
    with pytest.raises(ValueError, match="no CUDA kernels"):
        bitops.ternary_linear(x, packed_t(), G)


def test_mixed_devices_are_refused():
    with pytest.raises(ValueError, match="one device"):
        bitops.ternary_linear(torch.ones(2, K), packed_t().to("meta"), G)
