"""CUDA kernels against the oracle (bitops.reference, run on the CPU).

Integer results and every int8/sign-activation linear output must be bit-identical
(torch.equal, NaN where the oracle has NaN); the float-activation paths sum in
float32 in another order and are held to a rounding-error bound.

Both CUDA paths are fuzzed: the fused small-M kernel ("gemv") and the tensor-core
path ("tc": int8 activations padded, weights decoded, torch._int_mm, epilogue),
forced through BITOPS_CUDA_GEMV_MAX_M, besides the automatic choice ("auto").
"""

import contextlib
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bitops
from bitops._native import cuda_tuning
from bitops import reference as ref

from .strategies import SPECIAL_K, random_binary, random_float, random_int8, random_ternary, seeds

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

DEV = "cuda"
F32_EPS = 2.0**-24
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
PATHS = ["auto", "gemv", "tc"]

cuda_ks = st.one_of(st.sampled_from(SPECIAL_K + [1024, 2000, 4103]), st.integers(1, 1100))
cuda_ms = st.sampled_from([0, 1, 2, 3, 4, 5, 8, 9, 16, 17, 40, 300])
cuda_ns = st.one_of(st.sampled_from([1, 2, 3, 7, 17, 64, 129, 1000]), st.integers(1, 300))
# BITOPS_CUDA_EXAMPLES: fewer examples for the compute-sanitizer run of scripts/gpu_suite.sh
fuzz = settings(max_examples=int(os.environ.get("BITOPS_CUDA_EXAMPLES", "60")))


@contextlib.contextmanager
def cuda_path(path):
    """Forces the small-M kernel (gemv) or the tensor-core path (tc) for the ops inside."""
    with cuda_tuning(gemv_max_m={"gemv": 4096, "tc": 0}.get(path)):
        yield


def assert_same(got, want):
    """Bit-identical values, shape and dtype; NaN exactly where the oracle has NaN."""
    if isinstance(want, bitops.PackedWeight):  # same kind and K, same bytes
        assert (got.kind, got.in_features) == (want.kind, want.in_features)
        got, want = got.qdata, want.qdata
    got = got.cpu()
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    if got.is_floating_point():
        nan = want.isnan()
        assert torch.equal(got.isnan(), nan)
        assert torch.equal(got[~nan], want[~nan])
    else:
        assert torch.equal(got, want)


def make_x(m, k, seed, dtype, kind="normal", bad_rows=False):
    x = random_float(m, k, seed, kind)
    if bad_rows and m >= 2:
        x[1, k // 2] = float("nan")
        x[m - 1, 0] = float("inf") if m > 2 else x[m - 1, 0]
    return x.to(dtype)


def make_scale(n, per_channel, seed):
    g = torch.Generator().manual_seed(seed + 1)
    return (torch.rand(n if per_channel else (), generator=g) + 0.05).float()


def make_bias(n, kind, seed):
    if kind is None:
        return None
    g = torch.Generator().manual_seed(seed + 2)
    return torch.randn(n, generator=g).to(kind)


def on_cuda(*ts):
    return [t.to(DEV) if isinstance(t, (torch.Tensor, bitops.PackedWeight)) else t for t in ts]


def test_backend_is_cuda():
    assert bitops.backend("cuda") == "cuda"


# ---------------------------------------------------------------- activations


@fuzz
@given(m=cuda_ms, k=cuda_ks, seed=seeds, dtype=st.sampled_from(DTYPES), kind=st.sampled_from(["normal", "wide", "zero_rows"]))
def test_quantize_activations_bit_exact(m, k, seed, dtype, kind):
    x = make_x(m, k, seed, dtype, kind, bad_rows=True)
    xq, s = bitops.quantize_activations(x.to(DEV))
    xq_ref, s_ref = ref.quantize_activations(x)
    assert_same(xq, xq_ref)
    assert_same(s, s_ref)


def test_quantize_activations_ties_and_tiny_rows():
    # x * s landing exactly on .5 (round half to even), and rows below eps
    x = torch.tensor([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5], [1e-7, -1e-7, 0.0, 5e-6, 0, 0]])
    xq, s = bitops.quantize_activations(x.to(DEV))
    xq_ref, s_ref = ref.quantize_activations(x)
    assert_same(xq, xq_ref)
    assert_same(s, s_ref)


@fuzz
@given(m=cuda_ms, k=cuda_ks, seed=seeds, dtype=st.sampled_from(DTYPES))
def test_binarize_activations_bit_exact(m, k, seed, dtype):
    x = make_x(m, k, seed, dtype, bad_rows=True)
    if m and k > 2:
        x[0, 1] = -0.0
        x[0, 2] = 0.0
    bits, s = bitops.binarize_activations(x.to(DEV))
    bits_ref, s_ref = ref.binarize_activations(x)
    assert_same(bits, bits_ref)
    assert_same(s, s_ref)


# ---------------------------------------------------------------- formats


@fuzz
@given(n=cuda_ns, k=cuda_ks, seed=seeds)
def test_pack_unpack_ternary(n, k, seed):
    wq = random_ternary(n, k, seed)
    packed = bitops.pack_ternary(wq.to(DEV))
    assert_same(packed, ref.pack_ternary(wq))  # one layout on every device
    assert_same(bitops.unpack_ternary(packed, k), wq)


@fuzz
@given(n=cuda_ns, k=cuda_ks, seed=seeds)
def test_pack_unpack_binary(n, k, seed):
    wq = random_binary(n, k, seed)
    packed = bitops.pack_binary(wq.to(DEV))
    assert_same(packed, ref.pack_binary(wq))
    assert_same(bitops.unpack_binary(packed, k), wq)


def test_pack_rejects_values_outside_the_format():
    wq = torch.zeros(3, 40, dtype=torch.int8)
    wq[2, 7] = 2
    with pytest.raises(ValueError, match="row 2, column 7"):
        bitops.pack_ternary(wq.to(DEV))
    wb = torch.ones(3, 40, dtype=torch.int8)
    wb[1, 39] = 0
    with pytest.raises(ValueError, match="row 1, column 39"):
        bitops.pack_binary(wb.to(DEV))


def test_unpack_ternary_detects_code_3_but_ignores_padding():
    packed = ref.pack_ternary(random_ternary(4, 100, 1)).qdata  # raw bytes, K passed explicitly
    padded = packed.clone()
    padded[:, 31] |= 0x03  # weight 127 of each row: padding for k = 100
    assert_same(bitops.unpack_ternary(padded.to(DEV), 100), ref.unpack_ternary(packed, 100))
    corrupt = packed.clone()
    corrupt[2, 5] |= 0xC0  # weight 5 of row 2
    with pytest.raises(ValueError, match="row 2"):
        bitops.unpack_ternary(corrupt.to(DEV), 100)


# ---------------------------------------------------------------- integer products


@fuzz
@given(m=cuda_ms, n=cuda_ns, k=cuda_ks, seed=seeds, path=st.sampled_from(PATHS), zero_w=st.booleans())
def test_ternary_matmul_int_bit_exact(m, n, k, seed, path, zero_w):
    xq = random_int8(m, k, seed, extremes=True)
    wq = random_ternary(n, k, seed + 1, zero_fraction=1.0 if zero_w else None)
    packed = ref.pack_ternary(wq)
    with cuda_path(path):
        acc = bitops.ternary_matmul_int(xq.to(DEV), packed.to(DEV), k)
    assert_same(acc, ref.ternary_matmul_int(xq, packed, k))


def test_ternary_matmul_int_extremes_exact():
    # every activation -128 or 127 against all +1 / all -1 rows: the largest sums
    k = 4103
    xq = torch.tensor([[-128] * k, [127] * k, [-128, 127] * (k // 2) + [-128]], dtype=torch.int8)
    wq = torch.stack([torch.ones(k), -torch.ones(k), torch.zeros(k)]).to(torch.int8)
    packed = ref.pack_ternary(wq)
    for path in PATHS:
        with cuda_path(path):
            assert_same(bitops.ternary_matmul_int(xq.to(DEV), packed.to(DEV), k), ref.ternary_matmul_int(xq, packed, k))


@fuzz
@given(m=cuda_ms, n=cuda_ns, k=cuda_ks, seed=seeds, path=st.sampled_from(PATHS))
def test_binary_matmul_int_bit_exact_and_ignores_padding_bits(m, n, k, seed, path):
    xb = ref.pack_binary(random_binary(m, k, seed)).qdata if m else torch.zeros(0, ref.binary_row_bytes(k), dtype=torch.uint8)
    wb = ref.pack_binary(random_binary(n, k, seed + 1)).qdata
    want = ref.binary_matmul_int(xb, wb, k)
    # garbage in the padding bits of both operands must not change anything
    pad = torch.arange(ref.binary_row_bytes(k) * 8) >= k
    pad_bytes = (pad.reshape(-1, 8).to(torch.uint8) << torch.arange(8, dtype=torch.uint8)).sum(-1).to(torch.uint8)
    with cuda_path(path):
        got = bitops.binary_matmul_int((xb | pad_bytes).to(DEV), (wb | pad_bytes).to(DEV), k)
    assert_same(got, want)


# ---------------------------------------------------------------- linear layers (bit-exact)


@fuzz
@given(
    m=cuda_ms, n=cuda_ns, k=cuda_ks, seed=seeds, dtype=st.sampled_from(DTYPES), path=st.sampled_from(PATHS),
    per_channel=st.booleans(), bias=st.sampled_from([None, torch.float32, torch.bfloat16]),
)
def test_ternary_linear_i8_bit_exact(m, n, k, seed, dtype, path, per_channel, bias):
    x = make_x(m, k, seed, dtype, "wide", bad_rows=True)
    packed = ref.pack_ternary(random_ternary(n, k, seed + 3))
    gamma, b = make_scale(n, per_channel, seed), make_bias(n, bias, seed)
    want = ref.ternary_linear(x, packed, gamma, b, act_bits=8)
    with cuda_path(path):
        got = bitops.ternary_linear(*on_cuda(x, packed, gamma, b), act_bits=8)
    assert_same(got, want)


@fuzz
@given(
    m=cuda_ms, n=cuda_ns, k=cuda_ks, seed=seeds, dtype=st.sampled_from(DTYPES), path=st.sampled_from(PATHS),
    act_bits=st.sampled_from([8, 1]), per_channel=st.booleans(), bias=st.sampled_from([None, torch.float32]),
)
def test_binary_linear_bit_exact(m, n, k, seed, dtype, path, act_bits, per_channel, bias):
    x = make_x(m, k, seed, dtype, bad_rows=True)
    packed = ref.pack_binary(random_binary(n, k, seed + 3))
    beta, b = make_scale(n, per_channel, seed), make_bias(n, bias, seed)
    want = ref.binary_linear(x, packed, beta, b, act_bits=act_bits)
    with cuda_path(path):
        got = bitops.binary_linear(*on_cuda(x, packed, beta, b), act_bits=act_bits)
    assert_same(got, want)


@pytest.mark.parametrize("path", PATHS)
def test_linear_matches_cpu_native_path_at_model_shapes(path):
    # the CPU kernels and the CUDA kernels give the same bits (a model moves with .to())
    x = torch.randn(3, 5, 2560, dtype=torch.bfloat16)
    wq, gamma = bitops.ternary_quantize(torch.randn(6912, 2560))
    packed = bitops.pack_ternary(wq)
    cpu = bitops.ternary_linear(x, packed, gamma)
    with cuda_path(path):
        assert_same(bitops.ternary_linear(*on_cuda(x, packed, gamma)), cpu)


@pytest.mark.parametrize("fused", ["0", "1"])
@pytest.mark.parametrize("m", [1, 2, 3, 8])
def test_gemv_prequantised_and_fused_kernels_agree(fused, m, request):
    # BITOPS_CUDA_GEMV_FUSED=0: the activations are quantised once (own kernel, then the GEMV
    # with PDL); =1: inside every block of the single fused kernel (auto: fused for M <= 2,
    # so the fuzz tests above reach both). Both bit-exact.
    tuning = cuda_tuning(gemv_fused=fused == "1")
    tuning.__enter__()
    request.addfinalizer(lambda: tuning.__exit__(None, None, None))
    k, n = 1000, 777
    x = make_x(m, k, 11, torch.bfloat16, "wide", bad_rows=True)
    tern = ref.pack_ternary(random_ternary(n, k, 12))
    bina = ref.pack_binary(random_binary(n, k, 13))
    gamma, b = make_scale(n, True, 14), make_bias(n, torch.float32, 14)
    with cuda_path("gemv"):
        assert_same(bitops.ternary_linear(*on_cuda(x, tern, gamma, b), act_bits=8),
                    ref.ternary_linear(x, tern, gamma, b, act_bits=8))
        for bits in (8, 1):
            assert_same(bitops.binary_linear(*on_cuda(x, bina, gamma, b), act_bits=bits),
                        ref.binary_linear(x, bina, gamma, b, act_bits=bits))


def test_huge_k_falls_back_to_tensor_cores():
    # a staged row of 250k int8 activations exceeds shared memory: the tensor-core path serves it
    k, n = 250_000, 3
    x = torch.randn(2, k)
    packed = ref.pack_ternary(random_ternary(n, k, 5))
    gamma = torch.tensor(0.5)
    assert_same(bitops.ternary_linear(*on_cuda(x, packed, gamma)), ref.ternary_linear(x, packed, gamma))
    xq = random_int8(1, k, 6, extremes=True)
    assert_same(bitops.ternary_matmul_int(xq.to(DEV), packed.to(DEV), k), ref.ternary_matmul_int(xq, packed, k))


def test_batch_dims_views_and_side_stream():
    k, n = 300, 33
    base = torch.randn(k, 2, 3)
    x = base.permute(1, 2, 0)  # [2, 3, k], not contiguous
    packed = ref.pack_ternary(random_ternary(n, k, 9))
    gamma = torch.rand(n) + 0.1
    want = ref.ternary_linear(x, packed, gamma)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        got = bitops.ternary_linear(*on_cuda(x, packed, gamma))
    side.synchronize()
    assert got.shape == (2, 3, n)
    assert_same(got, want)
    # a packed view at an odd byte offset (the kernels' 16-byte loads need alignment)
    rb = ref.ternary_row_bytes(k)
    flat = torch.zeros(n * rb + 1, dtype=torch.uint8)
    flat[1:] = packed.qdata.reshape(-1)
    view = flat.to(DEV)[1:].view(n, rb)
    assert_same(bitops.ternary_linear(x.to(DEV), view, gamma.to(DEV), in_features=k), want)


def test_cuda_graph_capture():
    k, n = 512, 256
    x = torch.randn(1, k, device=DEV, dtype=torch.bfloat16)
    packed = bitops.pack_ternary(random_ternary(n, k, 3).to(DEV))
    gamma = torch.tensor(0.7, device=DEV)
    want = bitops.ternary_linear(x, packed, gamma)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = bitops.ternary_linear(x, packed, gamma)
    g.replay()
    torch.cuda.synchronize()
    assert_same(out, want.cpu())


# ---------------------------------------------------------------- float activations


def float_bound(x, wq, scale, y_ref, out_dtype):
    """Both sides are float32 sums of K exact products x*w (w in {-1, 0, 1}) in different orders:
    each is within (K-1) u sum|x*w| of the exact sum (u = 2^-24); then the scale and bias roundings,
    and, for half/bfloat16 outputs, one rounding to that dtype (which may round the other way)."""
    k = x.shape[-1]
    abs_dot = x.double().abs().reshape(-1, k) @ wq.double().abs().T
    bound = 2 * k * F32_EPS * abs_dot * scale.double().abs().reshape(1, -1) + 4 * F32_EPS * y_ref.double().abs()
    out_ulp = {torch.float32: 0.0, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}[out_dtype]
    return bound + out_ulp * y_ref.double().abs() + 1e-30


@fuzz
@given(
    m=cuda_ms, n=cuda_ns, k=cuda_ks, seed=seeds, dtype=st.sampled_from(DTYPES), weight=st.sampled_from(["ternary", "binary"]),
    per_channel=st.booleans(), bias=st.sampled_from([None, torch.float32]),
)
def test_float_activation_paths_within_rounding_bound(m, n, k, seed, dtype, weight, per_channel, bias):
    x = make_x(m, k, seed, dtype)
    if weight == "ternary":
        wq = random_ternary(n, k, seed + 3)
        packed, fn, ref_fn = ref.pack_ternary(wq), bitops.ternary_linear, ref.ternary_linear
    else:
        wq = random_binary(n, k, seed + 3)
        packed, fn, ref_fn = ref.pack_binary(wq), bitops.binary_linear, ref.binary_linear
    scale, b = make_scale(n, per_channel, seed), make_bias(n, bias, seed)
    want = ref_fn(x, packed, scale, b, act_bits=None)
    got = fn(*on_cuda(x, packed, scale, b), act_bits=None).cpu()
    assert got.dtype == want.dtype and got.shape == want.shape
    err = (got.double() - want.double()).abs().reshape(-1, n) if m else torch.zeros(0, n)
    assert bool((err <= float_bound(x.float(), wq, scale, want.reshape(-1, n), dtype)).all())


# ---------------------------------------------------------------- bad input


def test_glue_rejects_bad_arguments_naming_them():
    k, n = 64, 8
    x = torch.randn(2, k, device=DEV)
    packed = bitops.pack_ternary(random_ternary(n, k, 1).to(DEV)).qdata  # the raw ops take bytes
    gamma = torch.tensor(1.0, device=DEV)
    ops = torch.ops.bitops
    with pytest.raises(ValueError, match="packed"):
        ops.ternary_linear_i8(x, packed.cpu(), gamma, None)
    with pytest.raises(ValueError, match="gamma"):
        ops.ternary_linear_i8(x, packed, gamma.cpu(), None)
    with pytest.raises(TypeError, match="gamma"):
        ops.ternary_linear_i8(x, packed, gamma.double(), None)
    with pytest.raises(TypeError, match="x"):
        ops.ternary_linear_i8(x.double(), packed, gamma, None)
    with pytest.raises(ValueError, match="bytes per row"):
        ops.ternary_linear_i8(torch.randn(2, k + 200, device=DEV), packed, gamma, None)
    with pytest.raises(ValueError, match="bias"):
        ops.ternary_linear_i8(x, packed, gamma, torch.zeros(n + 1, device=DEV))
    with pytest.raises(TypeError, match="xq"):
        ops.ternary_matmul_int(x, packed, k)
    with pytest.raises(ValueError, match="k must be"):
        ops.ternary_matmul_int(x.to(torch.int8), packed, 0)
    with pytest.raises(ValueError, match="wbits"):
        ops.binary_matmul_int(torch.zeros(2, 32, dtype=torch.uint8, device=DEV), packed[:, :16], k)
    with pytest.raises(ValueError, match="same device|one device"):
        bitops.ternary_linear(x, packed.cpu(), gamma, in_features=k)


def test_corrupt_raw_buffer_is_refused_on_cuda_as_on_cpu():
    """The CUDA kernels do not look at codes: a raw buffer is validated before they run, and a
    PackedWeight when it is made, so a corrupt buffer fails the same way on both devices."""
    k, n = 100, 4
    raw = ref.pack_ternary(random_ternary(n, k, 2)).qdata.clone()
    raw[1, 3] |= 0xC0  # weight 3 of row 1: code 3
    x = torch.randn(2, k)
    for dev in ("cpu", DEV):
        with pytest.raises(ValueError, match="corrupt"):
            bitops.ternary_linear(x.to(dev), raw.to(dev), torch.tensor(1.0, device=dev), in_features=k)
        with pytest.raises(ValueError, match="corrupt"):
            bitops.PackedWeight("ternary", raw.to(dev), k)
