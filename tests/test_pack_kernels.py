"""Native packing, unpacking and validation (portable and AVX2) against the pure-torch oracle.

``torch.ops.bitops.{pack,unpack,validate}_{ternary,binary}`` must match ``bitops.reference``
bit for bit, on fuzzed shapes (K = 1, odd K, K around the 32-weight run, the 128-weight ternary
block and the 256-bit binary unit; N = 0, 1 and large enough to be split over threads), and
report errors exactly: the first flat index of a value outside the format (pack), the first row
with code 3 within K (unpack_ternary), the first non-canonical row (validate_*).

The module runs in-process on the kernels cpuid picks, and again in a subprocess for every
lesser set (``BITOPS_ISA=scalar``, and ``BITOPS_ISA=avx2`` on an AVX-512 VNNI CPU), as
tests/test_cpu_kernels.py does.
"""

from __future__ import annotations

import os
import re
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

EXAMPLES = int(os.environ.get("BITOPS_TEST_EXAMPLES", "150"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ops = torch.ops.bitops
EDGE_K = [1, 2, 3, 7, 8, 9, 31, 32, 33, 63, 64, 65, 95, 96, 97, 127, 128, 129, 255, 256, 257, 383, 511, 513, 1000]
ks = st.one_of(st.sampled_from(EDGE_K), st.integers(1, 1100))
ns = st.sampled_from([0, 1, 1, 2, 3, 5, 8, 17])


def _ref_bytes(x):
    """The packed buffer of a reference result (a tensor now; maybe an object with .qdata later)."""
    return x.qdata if hasattr(x, "qdata") else x


def ternary_weights(g: np.random.Generator, n: int, k: int) -> torch.Tensor:
    w = g.integers(-1, 2, size=(n, k)).astype(np.int8)
    if n >= 2:
        w[1] = g.choice([-1, 0, 1])  # a constant row
    return torch.from_numpy(w)


def binary_weights(g: np.random.Generator, n: int, k: int) -> torch.Tensor:
    w = np.where(g.random((n, k)) < 0.5, 1, -1).astype(np.int8)
    if n >= 2:
        w[1] = g.choice([-1, 1])
    return torch.from_numpy(w)


def ref_canonical_ternary(packed: torch.Tensor, k: int) -> list:
    """Row by row: pack(unpack(row)) == row, which is what validate_ternary must decide."""
    out = []
    for r in range(packed.shape[0]):
        row = packed[r : r + 1]
        try:
            out.append(torch.equal(_ref_bytes(ref.pack_ternary(ref.unpack_ternary(row, k))), row))
        except ValueError:  # code 3 within K
            out.append(False)
    return out


def ref_canonical_binary(packed: torch.Tensor, k: int) -> list:
    return [torch.equal(_ref_bytes(ref.pack_binary(ref.unpack_binary(packed[r : r + 1], k))), packed[r : r + 1])
            for r in range(packed.shape[0])]


def first_false(flags: list) -> int:
    return next((i for i, ok in enumerate(flags) if not ok), -1)


def set_code(packed: torch.Tensor, row: int, i: int, code: int) -> None:
    """Sets the 2-bit code of weight i of a ternary row (layout.h, written out independently)."""
    byte = i // 128 * 32 + i % 32
    shift = 6 - 2 * (i % 128 // 32)
    v = int(packed[row, byte])
    packed[row, byte] = (v & ~(3 << shift) & 0xFF) | (code << shift)


def set_bit(packed: torch.Tensor, row: int, i: int) -> None:
    packed[row, i // 8] = int(packed[row, i // 8]) | (1 << (i % 8))


def error_position(exc: pytest.ExceptionInfo) -> tuple:
    m = re.search(r"found (-?\d+) at row (\d+), column (\d+)", str(exc.value))
    assert m, str(exc.value)
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


# --------------------------------------------------------------------------- round trips


@fuzz
@given(k=ks, n=ns, seed=st.integers(0, 2**32 - 1))
def test_ternary_round_trip(k, n, seed):
    w = ternary_weights(np.random.default_rng(seed), n, k)
    packed = ops.pack_ternary(w)
    assert packed.dtype == torch.uint8 and tuple(packed.shape) == (n, ref.ternary_row_bytes(k))
    assert torch.equal(packed, _ref_bytes(ref.pack_ternary(w)))
    back = ops.unpack_ternary(packed, k)
    assert back.dtype == torch.int8 and torch.equal(back, w)
    assert torch.equal(back, ref.unpack_ternary(packed, k))
    assert ops.validate_ternary(packed, k) == -1 == ref.validate_ternary(packed, k)


@fuzz
@given(k=ks, n=ns, seed=st.integers(0, 2**32 - 1))
def test_binary_round_trip(k, n, seed):
    w = binary_weights(np.random.default_rng(seed), n, k)
    packed = ops.pack_binary(w)
    assert packed.dtype == torch.uint8 and tuple(packed.shape) == (n, ref.binary_row_bytes(k))
    assert torch.equal(packed, _ref_bytes(ref.pack_binary(w)))
    back = ops.unpack_binary(packed, k)
    assert back.dtype == torch.int8 and torch.equal(back, w)
    assert torch.equal(back, ref.unpack_binary(packed, k))
    assert ops.validate_binary(packed, k) == -1 == ref.validate_binary(packed, k)


def test_non_contiguous_input():
    w = ternary_weights(np.random.default_rng(1), 40, 300).t().contiguous().t()[:, :257]  # strided view
    assert not w.is_contiguous()
    assert torch.equal(ops.pack_ternary(w), _ref_bytes(ref.pack_ternary(w.contiguous())))
    packed = ops.pack_ternary(w.contiguous())
    wide = torch.cat([packed, packed], dim=1)[:, : packed.shape[1]]
    assert torch.equal(ops.unpack_ternary(wide, 257), w)


# --------------------------------------------------------------------------- validation


@fuzz
@given(k=ks, n=st.sampled_from([1, 2, 3, 6, 9]), seed=st.integers(0, 2**32 - 1), dirt=st.integers(0, 3))
def test_validate_matches_round_trip(k, n, seed, dirt):
    """validate_* == first row where pack(unpack(row)) != row, on canonical rows with a few
    bytes (anywhere: within K or in the padding) overwritten by random ones."""
    g = np.random.default_rng(seed)
    for kind in ("ternary", "binary"):
        if kind == "ternary":
            packed = ops.pack_ternary(ternary_weights(g, n, k))
        else:
            packed = ops.pack_binary(binary_weights(g, n, k))
        for _ in range(dirt):
            packed[g.integers(0, n), g.integers(0, packed.shape[1])] = int(g.integers(0, 256))
        if kind == "ternary":
            want = first_false(ref_canonical_ternary(packed, k))
            assert ref.validate_ternary(packed, k) == want
            assert ops.validate_ternary(packed, k) == want
        else:
            want = first_false(ref_canonical_binary(packed, k))
            assert ref.validate_binary(packed, k) == want
            assert ops.validate_binary(packed, k) == want


@pytest.mark.parametrize("k", [1, 5, 31, 32, 33, 96, 127, 128, 129, 200, 256, 257, 640])
def test_code3_in_last_valid_weight(k):
    packed = ops.pack_ternary(ternary_weights(np.random.default_rng(k), 6, k))
    set_code(packed, 4, k - 1, 3)
    set_code(packed, 5, 0, 3)
    with pytest.raises(ValueError, match=r"row 4 holds the invalid 2-bit code 3"):
        ops.unpack_ternary(packed, k)
    with pytest.raises(ValueError):
        ref.unpack_ternary(packed, k)
    assert ops.validate_ternary(packed, k) == 4 == ref.validate_ternary(packed, k)


@pytest.mark.parametrize("k", [1, 5, 31, 32, 33, 96, 97, 127, 129, 200, 257, 383])
@pytest.mark.parametrize("code", [0, 2, 3])
def test_bad_code_in_padding_only(k, code):
    """Outside K, any code but 1 is non-canonical; unpack ignores it (code 3 included)."""
    w = ternary_weights(np.random.default_rng(k), 5, k)
    packed = ops.pack_ternary(w)
    pad = ref.ternary_row_bytes(k) * 4
    for i in (k, pad - 1, (k + pad) // 2):
        set_code(packed, 3, i, code)
    assert torch.equal(ops.unpack_ternary(packed, k), w)
    assert torch.equal(ref.unpack_ternary(packed, k), w)
    assert ops.validate_ternary(packed, k) == 3 == ref.validate_ternary(packed, k)


@pytest.mark.parametrize("k", [1, 7, 8, 9, 31, 33, 200, 255, 257, 1000])
def test_binary_padding_bit(k):
    w = binary_weights(np.random.default_rng(k), 4, k)
    packed = ops.pack_binary(w)
    pad = ref.binary_row_bytes(k) * 8
    for bit in sorted({k, pad - 1, (k + pad) // 2}):
        p = packed.clone()
        set_bit(p, 2, bit)
        assert torch.equal(ops.unpack_binary(p, k), w)  # ignored by unpack
        assert ops.validate_binary(p, k) == 2 == ref.validate_binary(p, k)
    assert ops.validate_binary(packed, k) == -1


@pytest.mark.parametrize("k", [128, 256, 2560])
def test_no_padding_all_canonical(k):
    """Without padding every binary buffer is canonical; ternary only fails on code 3."""
    if k % 256 == 0:
        p = torch.randint(0, 256, (7, ref.binary_row_bytes(k)), dtype=torch.uint8)
        assert ops.validate_binary(p, k) == -1 == ref.validate_binary(p, k)
    pt = torch.randint(0, 256, (7, ref.ternary_row_bytes(k)), dtype=torch.uint8) & 0x55  # codes 0, 1 only
    assert ops.validate_ternary(pt, k) == -1 == ref.validate_ternary(pt, k)


# --------------------------------------------------------------------------- value errors


@pytest.mark.parametrize("kind", ["ternary", "binary"])
@pytest.mark.parametrize("k", [1, 3, 32, 127, 129, 256, 300])
def test_bad_value_at_last_element(kind, k):
    g = np.random.default_rng(k)
    n = 3
    w = ternary_weights(g, n, k) if kind == "ternary" else binary_weights(g, n, k)
    w[-1, -1] = 2 if kind == "ternary" else 0
    pack = ops.pack_ternary if kind == "ternary" else ops.pack_binary
    with pytest.raises(ValueError) as exc:
        pack(w)
    assert error_position(exc) == (int(w[-1, -1]), n - 1, k - 1)


@fuzz
@given(k=ks, n=st.sampled_from([1, 2, 5, 33]), seed=st.integers(0, 2**32 - 1), bad=st.integers(1, 4))
def test_first_bad_value_reported(k, n, seed, bad):
    g = np.random.default_rng(seed)
    for kind in ("ternary", "binary"):
        w = ternary_weights(g, n, k) if kind == "ternary" else binary_weights(g, n, k)
        flat = w.view(-1)
        wrong = [2, -2, 127, -128] if kind == "ternary" else [0, 2, -2, 127, -128]
        where = g.choice(n * k, size=min(bad, n * k), replace=False)
        for i in where:
            flat[int(i)] = int(g.choice(wrong))
        first = int(where.min())
        pack = ops.pack_ternary if kind == "ternary" else ops.pack_binary
        with pytest.raises(ValueError) as exc:
            pack(w)
        assert error_position(exc) == (int(flat[first]), first // k, first % k)


# --------------------------------------------------------------------------- threads


@pytest.fixture
def two_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(max(2, old))
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("k", [1000, 2560, 4097])
def test_many_rows_over_threads(two_threads, k):
    """Enough rows for several 1 MiB chunks: results identical, errors still the first overall."""
    g = np.random.default_rng(k)
    n = 3000 if k < 4000 else 1200
    w = ternary_weights(g, n, k)
    packed = ops.pack_ternary(w)
    assert torch.equal(packed, _ref_bytes(ref.pack_ternary(w)))
    assert torch.equal(ops.unpack_ternary(packed, k), w)
    assert ops.validate_ternary(packed, k) == -1
    wb = binary_weights(g, n, k)
    pb = ops.pack_binary(wb)
    assert torch.equal(pb, _ref_bytes(ref.pack_binary(wb)))
    assert torch.equal(ops.unpack_binary(pb, k), wb)

    # bad values in a late chunk first, then an earlier one: the earliest is reported
    late, early = (n - 2) * k + k // 2, (n // 3) * k + 7
    w.view(-1)[late] = 5
    w.view(-1)[early] = -3
    with pytest.raises(ValueError) as exc:
        ops.pack_ternary(w)
    assert error_position(exc) == (-3, early // k, early % k)
    # code 3 / non-canonical rows in two chunks: the first row is reported
    set_code(packed, n - 1, k - 1, 3)
    set_code(packed, n // 2, 0, 3)
    with pytest.raises(ValueError, match=rf"row {n // 2} holds"):
        ops.unpack_ternary(packed, k)
    assert ops.validate_ternary(packed, k) == n // 2 == ref.validate_ternary(packed, k)
    if k % 256:
        set_bit(pb, n - 1, k)
        set_bit(pb, n // 4, ref.binary_row_bytes(k) * 8 - 1)
        assert ops.validate_binary(pb, k) == n // 4 == ref.validate_binary(pb, k)


# --------------------------------------------------------------------------- argument errors


@pytest.mark.parametrize("name", ["validate_ternary", "validate_binary", "unpack_ternary", "unpack_binary"])
def test_argument_errors(name):
    row_bytes = ref.ternary_row_bytes if "ternary" in name else ref.binary_row_bytes
    fn = getattr(ops, name)
    good = torch.zeros(3, row_bytes(100), dtype=torch.uint8)
    with pytest.raises(TypeError, match="uint8"):
        fn(good.to(torch.int8), 100)
    with pytest.raises(ValueError, match="2-D"):
        fn(good.reshape(-1), 100)
    with pytest.raises(ValueError, match="bytes per row"):
        fn(good, 1000)
    with pytest.raises(ValueError, match="k must be in"):
        fn(good, 0)
    with pytest.raises(ValueError, match="k must be in"):
        fn(good, ref.MAX_K + 1)
    if name.startswith("validate"):
        ref_fn = getattr(ref, name)
        with pytest.raises(TypeError):
            ref_fn(good.to(torch.int8), 100)
        with pytest.raises(ValueError):
            ref_fn(good, 1000)
        with pytest.raises(ValueError):
            ref_fn(good, 0)


def test_empty():
    for k in (1, 129, 300):
        w = torch.empty(0, k, dtype=torch.int8)
        assert ops.pack_ternary(w).shape == (0, ref.ternary_row_bytes(k))
        assert ops.pack_binary(w).shape == (0, ref.binary_row_bytes(k))
        assert ops.unpack_ternary(torch.empty(0, ref.ternary_row_bytes(k), dtype=torch.uint8), k).shape == (0, k)
        assert ops.unpack_binary(torch.empty(0, ref.binary_row_bytes(k), dtype=torch.uint8), k).shape == (0, k)
        assert ops.validate_ternary(torch.empty(0, ref.ternary_row_bytes(k), dtype=torch.uint8), k) == -1
        assert ops.validate_binary(torch.empty(0, ref.binary_row_bytes(k), dtype=torch.uint8), k) == -1


# --------------------------------------------------------------------------- every kernel set


def run_module_with_isa(isa: str) -> None:
    env = dict(os.environ, BITOPS_ISA=isa, BITOPS_TEST_EXAMPLES=str(min(EXAMPLES, 60)))
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
    """On a CPU with AVX-512 VNNI: everything above again on the AVX2 set (the pack kernels of
    both are the AVX2 ones; this checks that the BITOPS_ISA cap keeps them)."""
    if os.environ.get("BITOPS_ISA") in ("scalar", "avx2"):
        assert BACKEND == f"cpu-{os.environ['BITOPS_ISA']}"
        return
    if BACKEND != "cpu-avx512vnni":
        pytest.skip(f"this CPU runs {BACKEND}: the in-process run above already is the AVX2 (or portable) path")
    run_module_with_isa("avx2")
