"""Per-kernel GPU time of one bitops linear call (torch.profiler), for finding where the time goes.

    python benchmarks/cuda_breakdown.py            # M=1 and M=4096 at 4096x4096, ternary, bf16 activations

Prints, per case, each CUDA kernel's average time over the profiled calls (microseconds),
and the graph-replay time of the M=1 call under the GEMV variants selectable by
tuning (bitops._native.cuda_tuning; BITOPS_CUDA_PDL is read once per process, so run
again with BITOPS_CUDA_PDL=0 to compare).
"""

from __future__ import annotations

import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

import bitops
from bitops._native import cuda_tuning

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cuda_matmul as cm  # noqa: E402


def kernel_times(fn, calls=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if t > 0 and e.count > 0:
            rows.append((t / calls, e.count // calls, e.key[:110]))
    return sorted(rows, reverse=True)


def main():
    assert torch.cuda.is_available() and bitops.backend("cuda") == "cuda"
    print("BITOPS_CUDA_PDL =", os.environ.get("BITOPS_CUDA_PDL", "(default: on)"))
    n = k = 4096
    wq, gamma = bitops.ternary_quantize(torch.randn(n, k, device="cuda"))
    packed = bitops.pack_ternary(wq)
    for m in (1, 4096):
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        for fused in ("0", "1") if m == 1 else ("0",):
            print(f"--- ternary {n}x{k}, M={m}, gemv_fused={fused}: us per call, launches per call, kernel")
            with cuda_tuning(gemv_fused=fused == "1"):
                for t, c, name in kernel_times(lambda: bitops.ternary_linear(x, packed, gamma)):
                    print(f"  {t:9.2f}  {c:3d}  {name}")
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20)
    bw = cm.hbm_bandwidth()
    for gemv in ("prequant", "fused"):
        for nn, kk in cm.M1_SHAPES:
            r = cm.bench_case(nn, kk, 1, "ternary", 8, l2=l2, bw=bw, modes=("graph",), gemv=gemv)
            print(f"graph M=1 {nn}x{kk} {gemv}: packed {r['packed_us_graph']:.2f} us, "
                  f"bf16 {r['bf16_us_graph']:.2f} us, {r['speedup_graph']:.2f}x, {r['pct_hbm_graph']:.0f}% HBM")


if __name__ == "__main__":
    main()
