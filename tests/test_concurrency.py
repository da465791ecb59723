"""The same packed weights used from 8 Python threads at once give exactly the serial results.

torch.ops calls release the GIL, so the threads really overlap in the kernels
(and each op also spreads its tiles over torch's intra-op pool). The kernels
keep no mutable global state: the only statics in csrc/ are the constant
KernelTables and the ISA choice, both initialised once (C++ magic statics).
"""

import threading

import pytest
import torch

import bitops

from .strategies import gen, random_binary, random_ternary

pytestmark = pytest.mark.skipif(bitops.backend() == "reference", reason="native extension not built")

THREADS = 8
ROUNDS = 20
M, K, N = 9, 777, 96  # ragged K, odd M: every kernel tail runs

WT = bitops.pack_ternary(random_ternary(N, K, 11))
WB = bitops.pack_binary(random_binary(N, K, 12))
GAMMA = torch.rand(N, generator=gen(13)) + 0.1
BIAS = torch.randn(N, generator=gen(14))


def workloads(x, xq, xbits):
    """Every op that reads the shared weights, on one thread's own activations."""
    return {
        "ternary_linear int8": lambda: bitops.ternary_linear(x, WT, GAMMA, BIAS),
        "ternary_linear float": lambda: bitops.ternary_linear(x, WT, GAMMA, BIAS, act_bits=None),
        "binary_linear int8": lambda: bitops.binary_linear(x, WB, GAMMA, BIAS, act_bits=8),
        "binary_linear xnor": lambda: bitops.binary_linear(x, WB, GAMMA, BIAS, act_bits=1),
        "binary_linear float": lambda: bitops.binary_linear(x, WB, GAMMA, act_bits=None),
        "ternary_matmul_int": lambda: bitops.ternary_matmul_int(xq, WT, K),
        "binary_matmul_int": lambda: bitops.binary_matmul_int(xbits, WB, K),
        "quantize_activations": lambda: bitops.quantize_activations(x)[0],
    }


def thread_inputs(i):
    x = torch.randn(M, K, generator=gen(100 + i)) * (i + 1)
    xq = torch.randint(-128, 128, (M, K), generator=gen(200 + i), dtype=torch.int8)
    xbits, _ = bitops.binarize_activations(x)
    return workloads(x, xq, xbits)


def test_eight_threads_match_a_serial_run():
    jobs = [thread_inputs(i) for i in range(THREADS)]
    expected = [{name: fn() for name, fn in job.items()} for job in jobs]
    start = threading.Barrier(THREADS)
    mismatches, errors = [], []

    def worker(i):
        try:
            start.wait()
            for r in range(ROUNDS):
                for name, fn in jobs[i].items():
                    if not torch.equal(fn(), expected[i][name]):
                        mismatches.append((i, r, name))
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    assert not mismatches, f"{len(mismatches)} results differ from the serial run, first: {mismatches[:5]}"


def test_threads_do_not_share_corruption_errors():
    """A corrupt buffer in one thread raises there only; the other threads' results stay right."""
    bad = WT.qdata.clone()  # a raw buffer: wrapping it in a PackedWeight would refuse it up front
    bad[3, 5] = 0xFF
    x = torch.randn(M, K, generator=gen(300))
    want = bitops.ternary_linear(x, WT, GAMMA)
    start = threading.Barrier(THREADS)
    outcomes = [None] * THREADS

    def worker(i):
        start.wait()
        try:
            y = bitops.ternary_linear(x, bad, GAMMA, in_features=K) if i % 2 else bitops.ternary_linear(x, WT, GAMMA)
            outcomes[i] = "ok" if torch.equal(y, want) else "wrong"
        except ValueError as e:
            outcomes[i] = "corrupt" if "corrupt" in str(e) else repr(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcomes == ["ok", "corrupt"] * (THREADS // 2)
