"""The native CPU kernels (AVX-512 VNNI, AVX2, portable) against the pure-torch oracle, bit for bit.

This module runs once in-process (the kernels cpuid picks) and once more in a subprocess for
every lesser set this CPU runs: ``BITOPS_ISA=avx2`` (when the default is the AVX-512 VNNI set,
whose many-row int8 GEMMs differ) and ``BITOPS_ISA=scalar`` (the portable path), see
``test_avx2_path`` and ``test_portable_path``.
Shapes are fuzzed where the kernels have edges: K = 1, odd K, K around the 128-weight ternary
block and the 256-bit binary unit, M = 0 and 1 and around the 4-row micro-tile, N = 1;
values include the int8 extremes -128 and 127 (maddubs saturation), all-zero rows and
all-zero weights, and garbage in the padding that every kernel must ignore.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitops
from bitops import reference as ref

ROOT = Path(__file__).resolve().parents[1]
BACKEND = bitops.backend()
NATIVE = ("cpu-avx512vnni", "cpu-avx2", "cpu-scalar")
pytestmark = pytest.mark.skipif(BACKEND not in NATIVE, reason="native CPU kernels not built")

EXAMPLES = int(os.environ.get("BITOPS_TEST_EXAMPLES", "200"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# K values at the edges of every block: 1, odd, the 32-weight run, the 128-weight ternary
# block, the 256-bit binary unit, the 8-block int16 flush (1024) -- plus anything up to 1100.
EDGE_K = [1, 2, 3, 7, 31, 32, 33, 127, 128, 129, 255, 256, 257, 383, 1023, 1024, 1025]
ks = st.one_of(st.sampled_from(EDGE_K), st.integers(1, 1100))
# micro-tiles of 2 and 4 rows of x and 6 weight rows; AVX2 >= 8 rows and AVX-512 VNNI ternary >= 16 rows: decoded panels
ms = st.sampled_from([0, 1, 1, 2, 3, 4, 5, 7, 8, 9, 13, 15, 16, 17])
ns = st.sampled_from([1, 1, 2, 3, 4, 5, 6, 8, 13, 70])


def rng_for(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def int8_acts(g: np.random.Generator, m: int, k: int) -> torch.Tensor:
    """int8 activations where -128 and 127 are frequent, with a zero row and a row of -128."""
    kind = g.integers(0, 3)
    if kind == 0:
        x = g.integers(-128, 128, size=(m, k))
    elif kind == 1:
        x = g.choice(np.array([-128, 127]), size=(m, k))  # worst case for int16 partial sums
    else:
        x = g.choice(np.array([-128, -127, -1, 0, 1, 126, 127]), size=(m, k))
    if m >= 2:
        x[1] = 0
    if m >= 3:
        x[2] = -128
    return torch.from_numpy(x.astype(np.int8))


def float_acts(g: np.random.Generator, m: int, k: int) -> torch.Tensor:
    x = g.standard_normal((m, k)).astype(np.float32) * np.float32(g.choice([1e-3, 1.0, 50.0]))
    if m >= 2:
        x[1] = 0.0  # all-zero row: s = 127 / eps
    if m >= 3 and k >= 2:
        x[2, :2] = [2.5, -2.5]  # ties after scaling are common with exact halves
    return torch.from_numpy(x)


def ternary_weights(g: np.random.Generator, n: int, k: int) -> torch.Tensor:
    w = g.integers(-1, 2, size=(n, k)).astype(np.int8)
    if g.integers(0, 4) == 0:
        w[:] = 0  # all-zero weights
    elif n >= 2:
        w[1] = 0
    return torch.from_numpy(w)


def binary_weights(g: np.random.Generator, n: int, k: int) -> torch.Tensor:
    return torch.from_numpy(np.where(g.random((n, k)) < 0.5, 1, -1).astype(np.int8))


def garble_ternary_padding(g: np.random.Generator, packed: torch.Tensor, k: int) -> torch.Tensor:
    """Random codes (3 included) on the padding weights past K: kernels must ignore them."""
    if k % 128 == 0:
        return packed
    p = packed.clone()
    for pos in range(k, ref.ternary_row_bytes(k) * 4):
        blk, r = divmod(pos, 128)
        byte, shift = blk * 32 + r % 32, 6 - 2 * (r // 32)
        codes = torch.from_numpy(g.integers(0, 4, size=p.shape[0]).astype(np.uint8))
        p[:, byte] = (p[:, byte] & ~np.uint8(3 << shift)) | (codes << shift)
    return p


def raw_ternary(wq: torch.Tensor) -> torch.Tensor:
    """The oracle's packed bytes (these tests garble and corrupt raw buffers, passing K explicitly)."""
    return ref.pack_ternary(wq).qdata


def raw_binary(wq: torch.Tensor) -> torch.Tensor:
    return ref.pack_binary(wq).qdata


def garble_binary_padding(g: np.random.Generator, packed: torch.Tensor, k: int) -> torch.Tensor:
    p = packed.clone()
    nbits = p.shape[1] * 8
    if nbits == k:
        return p
    noise = torch.from_numpy(g.integers(0, 256, size=p.shape, dtype=np.uint8))
    keep = raw_binary(torch.ones(1, k, dtype=torch.int8))  # bits set exactly on the first K
    return (p & keep) | (noise & ~keep)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality of float tensors (NaN == NaN, -0.0 != 0.0)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype == torch.float32:
        return torch.equal(a.view(torch.int32), b.view(torch.int32))
    return torch.equal(a, b)


def assert_close_sum(got, want, x, scale, k):
    """Float sums in another order: within the worst-case bound k * eps * sum|x| * |scale|
    (a single wrong weight moves a sum by 2|x_k|, far more for these inputs)."""
    bound = x.abs().sum(dim=1, keepdim=True) * scale.reshape(1, -1).abs() * (k * 1.2e-7)
    assert ((got - want).abs() <= bound.expand_as(want) + 1e-5).all()


def scale_and_bias(g: np.random.Generator, n: int):
    gamma = torch.tensor(float(g.uniform(0.01, 2.0)), dtype=torch.float32)
    if g.integers(0, 2):
        gamma = torch.from_numpy(g.uniform(0.01, 2.0, size=n).astype(np.float32))
    bias = torch.from_numpy(g.standard_normal(n).astype(np.float32)) if g.integers(0, 2) else None
    return gamma, bias


# --------------------------------------------------------------------------- quantizers


@fuzz
@given(m=ms, k=ks, seed=st.integers(0, 2**32 - 1))
def test_quantize_activations(m, k, seed):
    g = rng_for(seed)
    x = float_acts(g, m, k)
    if m >= 4:
        x[3, g.integers(0, k)] = float(g.choice([np.nan, np.inf, -np.inf]))  # non-finite row -> s = NaN, xq = 0
    xq, s = bitops.quantize_activations(x)
    xq_ref, s_ref = ref.quantize_activations(x)
    assert torch.equal(xq, xq_ref)
    assert same_bits(s, s_ref)


@fuzz
@given(m=st.sampled_from([1, 2, 3, 5]), k=ks, seed=st.integers(0, 2**32 - 1))
def test_binarize_activations(m, k, seed):
    g = rng_for(seed)
    x = float_acts(g, m, k)
    x[0, g.integers(0, k)] = -0.0  # sign(-0.0) is +1
    if m >= 2:
        x[1, g.integers(0, k)] = np.nan
    bits, s = bitops.binarize_activations(x)
    bits_ref, s_ref = ref.binarize_activations(x)
    assert torch.equal(bits, bits_ref)
    assert same_bits(s, s_ref)


# --------------------------------------------------------------------------- ternary


@fuzz
@given(m=ms, n=ns, k=ks, seed=st.integers(0, 2**32 - 1))
def test_ternary_matmul_int(m, n, k, seed):
    g = rng_for(seed)
    xq = int8_acts(g, m, k)
    packed = garble_ternary_padding(g, raw_ternary(ternary_weights(g, n, k)), k)
    out = bitops.ternary_matmul_int(xq, packed, k)
    assert out.dtype == torch.int32
    assert torch.equal(out, ref.ternary_matmul_int(xq, packed, k))


@fuzz
@given(m=ms, n=ns, k=ks, seed=st.integers(0, 2**32 - 1))
def test_ternary_linear_int8(m, n, k, seed):
    g = rng_for(seed)
    x = float_acts(g, m, k)
    packed = garble_ternary_padding(g, raw_ternary(ternary_weights(g, n, k)), k)
    gamma, bias = scale_and_bias(g, n)
    assert same_bits(bitops.ternary_linear(x, packed, gamma, bias, in_features=k), ref.ternary_linear(x, packed, gamma, bias, in_features=k))


@fuzz
@given(m=ms, n=ns, k=ks, seed=st.integers(0, 2**32 - 1))
def test_ternary_linear_float(m, n, k, seed):
    g = rng_for(seed)
    x = float_acts(g, m, k)
    packed = garble_ternary_padding(g, raw_ternary(ternary_weights(g, n, k)), k)
    gamma, bias = scale_and_bias(g, n)
    got = bitops.ternary_linear(x, packed, gamma, bias, act_bits=None, in_features=k)
    want = ref.ternary_linear(x, packed, gamma, bias, act_bits=None, in_features=k)
    assert_close_sum(got, want, x, gamma, k)


@pytest.mark.parametrize("op", ["matmul_int", "linear_int8", "linear_float"])
@pytest.mark.parametrize("k", [1, 100, 128, 300])
@pytest.mark.parametrize("m", [1, 6, 9])  # one row (GEMV), few rows, many rows (decoded panels)
def test_ternary_corrupt_code_raises(op, k, m):
    g = rng_for(k)
    n = 5
    packed = raw_ternary(ternary_weights(g, n, k))
    pos = int(g.integers(0, k))  # a weight inside K gets the invalid code 3
    blk, r = divmod(pos, 128)
    packed[3, blk * 32 + r % 32] |= np.uint8(3 << (6 - 2 * (r // 32)))
    x = float_acts(g, m, k)
    with pytest.raises(ValueError):
        if op == "matmul_int":
            bitops.ternary_matmul_int(int8_acts(g, m, k), packed, k)
        elif op == "linear_int8":
            bitops.ternary_linear(x, packed, torch.tensor(1.0), in_features=k)
        else:
            bitops.ternary_linear(x, packed, torch.tensor(1.0), act_bits=None, in_features=k)


@pytest.mark.parametrize("m", [1, 5, 9, 12])
@pytest.mark.parametrize("xval", [-128, 127])
@pytest.mark.parametrize("wval", [-1, 1])
def test_int16_partial_sums_never_saturate(m, xval, wval):
    """The extreme case for the int16 partial sums (code 2 or 0 times -128 or 127 over a long K).

    With x = -128 and w = +1 the AVX2 decoded GEMM's int16 lanes (m >= 8) reach exactly -32768
    before each flush: K = 48 blocks (the last one partial) runs as 3 equal chunks of 16 blocks,
    the most a chunk holds; one more vpmaddubsw per flush would wrap. (On a CPU with AVX-512 VNNI
    the in-process run checks the int32 vpdpbusd lanes; the BITOPS_ISA=avx2 rerun the int16 ones.)
    """
    k = 47 * 128 + 1
    xq = torch.full((m, k), xval, dtype=torch.int8)
    packed = raw_ternary(torch.full((3, k), wval, dtype=torch.int8))
    assert torch.equal(bitops.ternary_matmul_int(xq, packed, k), torch.full((m, 3), xval * wval * k, dtype=torch.int32))
    wbits = raw_binary(torch.full((3, k), wval, dtype=torch.int8))
    x = xq.float()
    beta = torch.tensor(1.0)
    assert same_bits(bitops.binary_linear(x, wbits, beta, in_features=k), ref.binary_linear(x, wbits, beta, in_features=k))


@pytest.mark.parametrize("m", [1, 6, 11])
def test_many_panels(m):
    """Enough weight rows for several panels (L2 panels, decoded panels), rows of x in 4s plus a remainder."""
    g = rng_for(m)
    n, k = 203, 8192 + 77
    xq = int8_acts(g, m, k)
    packed = raw_ternary(ternary_weights(g, n, k))
    assert torch.equal(bitops.ternary_matmul_int(xq, packed, k), ref.ternary_matmul_int(xq, packed, k))
    x = float_acts(g, m, k)
    wbits = raw_binary(binary_weights(g, n, k))
    beta = torch.tensor(0.5)
    assert same_bits(bitops.binary_linear(x, wbits, beta, in_features=k), ref.binary_linear(x, wbits, beta, in_features=k))
    assert same_bits(bitops.binary_linear(x, wbits, beta, act_bits=1, in_features=k), ref.binary_linear(x, wbits, beta, act_bits=1, in_features=k))


# --------------------------------------------------------------------------- binary


@fuzz
@given(m=ms, n=ns, k=ks, seed=st.integers(0, 2**32 - 1))
def test_binary_linear_int8(m, n, k, seed):
    g = rng_for(seed)
    x = float_acts(g, m, k)
    packed = garble_binary_padding(g, raw_binary(binary_weights(g, n, k)), k)
    beta, bias = scale_and_bias(g, n)
    assert same_bits(bitops.binary_linear(x, packed, beta, bias, in_features=k), ref.binary_linear(x, packed, beta, bias, in_features=k))


@fuzz
@given(m=ms, n=ns, k=ks, seed=st.integers(0, 2**32 - 1))
def test_binary_linear_float(m, n, k, seed):
    g = rng_for(seed)
    x = float_acts(g, m, k)
    packed = garble_binary_padding(g, raw_binary(binary_weights(g, n, k)), k)
    beta, bias = scale_and_bias(g, n)
    got = bitops.binary_linear(x, packed, beta, bias, act_bits=None, in_features=k)
    want = ref.binary_linear(x, packed, beta, bias, act_bits=None, in_features=k)
    assert_close_sum(got, want, x, beta, k)


@fuzz
@given(m=ms, n=ns, k=ks, seed=st.integers(0, 2**32 - 1))
def test_binary_matmul_int(m, n, k, seed):
    g = rng_for(seed)
    if m:
        xbits = garble_binary_padding(g, raw_binary(binary_weights(g, m, k)), k)
    else:  # the oracle's pack_binary cannot reshape an empty batch
        xbits = torch.empty(0, ref.binary_row_bytes(k), dtype=torch.uint8)
    wbits = garble_binary_padding(g, raw_binary(binary_weights(g, n, k)), k)
    out = bitops.binary_matmul_int(xbits, wbits, k)
    assert out.shape == (m, n)
    if m:
        assert torch.equal(out, ref.binary_matmul_int(xbits, wbits, k))


@fuzz
@given(m=ms, n=ns, k=ks, seed=st.integers(0, 2**32 - 1))
def test_binary_linear_sign(m, n, k, seed):
    g = rng_for(seed)
    x = float_acts(g, m, k)
    if m >= 4:
        x[3, 0] = np.inf  # non-finite row -> NaN outputs
    packed = garble_binary_padding(g, raw_binary(binary_weights(g, n, k)), k)
    beta, bias = scale_and_bias(g, n)
    got = bitops.binary_linear(x, packed, beta, bias, act_bits=1, in_features=k)
    assert got.shape == (m, n)
    if m:  # the oracle's binarize cannot reshape an empty batch
        assert same_bits(got, ref.binary_linear(x, packed, beta, bias, act_bits=1, in_features=k))


# --------------------------------------------------------------------------- bf16 GEMV


def bf16_sum_bound(k: int) -> float:
    """gamma_d for a float32 dot whose products each pass through at most d roundings: every
    kernel sums the whole chunks in at least 16 partial sums, then the tail (<= 31 weights) one by
    one, then the bias (bf16_gemv.h): d <= ceil(K / 16) + 34 (the product's own rounding included)."""
    u, d = 2.0 ** -24, -(-k // 16) + 35
    return d * u / (1 - d * u)


@fuzz
@given(m=st.sampled_from([0, 1, 2, 3, 4, 5, 9]), n=ns, k=ks, bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_bf16_linear_within_its_float32_bound(m, n, k, bias, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g).to(torch.bfloat16)
    x = torch.randn(m, k, generator=g)
    b = torch.randn(n, generator=g) if bias else None
    got = bitops.bf16_linear(x, w, b).double()
    exact = x.double() @ w.double().T + (b.double() if bias else 0)
    scale = x.double().abs() @ w.double().abs().T + (b.double().abs() if bias else 0)
    assert got.shape == (m, n)
    assert bool(((got - exact).abs() <= bf16_sum_bound(k) * scale).all())


@fuzz
@given(m=st.sampled_from([1, 2, 4]), n=ns, k=ks, seed=st.integers(0, 2**32 - 1))
def test_bf16_linear_exact_on_small_integers(m, n, k, seed):
    """Small integer weights and activations: every partial sum is exact in float32 (< 2^24),
    so any summation order gives the integer dot, bit for bit -- each weight counted once."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(-8, 9, (n, k), generator=g)
    x = torch.randint(-8, 9, (m, k), generator=g)
    got = bitops.bf16_linear(x.float(), w.to(torch.bfloat16))
    assert torch.equal(got, (x @ w.T).float())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_bf16_linear_rounds_once_into_x_dtype(dtype):
    """A bf16/fp16 x is widened exactly, the float32 result rounded once into x's dtype."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(70, 1100, generator=g).to(torch.bfloat16)
    x = torch.randn(2, 1100, generator=g).to(dtype)
    got = bitops.bf16_linear(x, w)
    assert got.dtype == dtype
    assert torch.equal(got, bitops.bf16_linear(x.float(), w).to(dtype))


def test_bf16_linear_large_n_and_k():
    """Many tiles over the threads, K with a tail after the last whole vector."""
    g = torch.Generator().manual_seed(4)
    n, k = 20000, 2560 + 37
    w = torch.randint(-8, 9, (n, k), generator=g)
    x = torch.randint(-8, 9, (1, k), generator=g)
    assert torch.equal(bitops.bf16_linear(x.float(), w.to(torch.bfloat16)), (x @ w.T).float())


# --------------------------------------------------------------------------- both paths, benchmark


def run_module_with_isa(isa: str) -> None:
    env = dict(os.environ, BITOPS_ISA=isa, BITOPS_TEST_EXAMPLES=str(EXAMPLES))
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_portable_path():
    """Everything above again, in a subprocess forced onto the portable kernels."""
    if os.environ.get("BITOPS_ISA") in ("scalar", "avx2"):  # a subprocess of this test or the next
        assert BACKEND == f"cpu-{os.environ['BITOPS_ISA']}"
        return
    run_module_with_isa("scalar")


def test_avx2_path():
    """On a CPU with AVX-512 VNNI: everything above again on the plain AVX2 set."""
    if os.environ.get("BITOPS_ISA") in ("scalar", "avx2"):
        assert BACKEND == f"cpu-{os.environ['BITOPS_ISA']}"
        return
    if BACKEND != "cpu-avx512vnni":
        pytest.skip(f"this CPU runs {BACKEND}: the in-process run above already is the AVX2 (or portable) path")
    run_module_with_isa("avx2")


def test_matmul_benchmark_smoke(tmp_path):
    """benchmarks/matmul.py --smoke runs end to end and writes its JSON and markdown."""
    if os.environ.get("BITOPS_ISA") in ("scalar", "avx2"):
        pytest.skip("benchmarks are checked on the default path")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "matmul.py"), "--smoke", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert (tmp_path / "matmul_cpu.json").exists()
    assert (tmp_path / "matmul_cpu.md").exists()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or shutil.which(os.environ.get("CXX", "g++")) is None,
                    reason="the int8 peak probe is x86 C++ (needs g++)")
def test_int8_gemm_benchmark_smoke(tmp_path):
    """benchmarks/int8_gemm.py --quick builds its peak probe, checks its GEMM against the oracle and
    writes a row per thread count with a positive % of the probed peak."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "int8_gemm.py"), "--quick", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    res = json.loads((tmp_path / f"int8_gemm_{BACKEND.removeprefix('cpu-')}.json").read_text())
    assert res["isa"] == BACKEND and len(res["probes"]) == res["rounds"] == 2
    assert res["rows"] and all(0 < r["pct_peak"] for r in res["rows"])


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or shutil.which(os.environ.get("CXX", "g++")) is None,
                    reason="the read-pattern benchmark is x86 C++ (needs g++)")
def test_gemv_read_patterns_benchmark_runs(tmp_path):
    """benchmarks/gemv_read_patterns.cpp builds with the library's GEMV, runs, and the kernel sees no
    corrupt code in its valid weights (exit status 1 otherwise)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gemv_read_patterns as grp

    exe = grp.build(tmp_path)
    out = subprocess.run([str(exe), "64", "384", "1"], check=True, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="2")).stdout
    raw = json.loads(out)
    assert raw["patterns"] == list(grp.MEANING)
    (row,) = raw["rounds_gbps"]
    assert all(v > 0 for v in row[:-1]) and (row[-1] is None or row[-1] > 0)
    summary = grp.summarize(raw)
    assert set(summary["pct_of_stream"]) == set(grp.MEANING) - {"stream_512MiB"}
