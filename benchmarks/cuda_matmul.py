"""CUDA benchmark: packed ternary / binary linear vs torch bf16 F.linear (cuBLAS).

Same process, same inputs. Weights are "cold": each timed sequence rotates through
enough distinct weight matrices that their bytes are >= 4x the GPU's L2 cache, as
in a real model (one "hot" row repeats a single matrix). Times are CUDA-event
medians: "graph" = the sequence captured in a CUDA graph and replayed (GPU time,
no Python/launch overhead, what a graph-captured decoder sees); "eager" = plain
calls from Python. The HBM floor is measured in the same run with a
device-to-device copy. Shapes are N x K (out x in features, F.linear's weight).

    python benchmarks/cuda_matmul.py --out benchmarks/results   # writes cuda_bench.json / .md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics

import torch
import torch.nn.functional as F

import bitops
from bitops._native import cuda_tuning

M1_SHAPES = [(4096, 4096), (2560, 6912), (6912, 2560), (20480, 3200)]


def events_median(fn, reps, calls):
    """Median over reps of (time of fn()) / calls, in microseconds."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / calls)
    return statistics.median(times)


def hbm_bandwidth():
    """Device-to-device copy of 1 GiB: bytes read + written per second."""
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda").random_(0, 255)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    us = events_median(lambda: b.copy_(a), 20, 1)
    return 2 * n / (us * 1e-6)


def timed(fns, min_calls, reps, graph=True):
    """Per-call time of cycling through fns (one call per weight matrix)."""
    passes = max(1, math.ceil(min_calls / len(fns)))
    calls = passes * len(fns)

    def run():
        for _ in range(passes):
            for f in fns:
                f()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up (and allocator pools) off the capture
        for f in fns:
            f()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    if not graph:
        run()
        return events_median(run, reps, calls)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        run()
    g.replay()
    torch.cuda.synchronize()
    return events_median(g.replay, reps, calls)


class Env:
    """Forces bitops' choice between the fused small-M kernel and the tensor-core path."""

    def __init__(self, max_m, gemv=None):
        self.tuning = cuda_tuning(gemv_max_m=max_m, gemv_fused={None: None, "fused": True, "prequant": False}[gemv])

    def __enter__(self):
        self.tuning.__enter__()

    def __exit__(self, *exc):
        self.tuning.__exit__(*exc)


def copies_for(nbytes, l2, hot):
    return 1 if hot else max(2, math.ceil(4 * l2 / nbytes))


def bench_case(n, k, m, weight, act_bits, l2, bw, hot=False, path=None, min_calls=200, reps=15, modes=("graph", "eager"),
               gemv=None):
    gen = torch.Generator(device="cuda").manual_seed(n * 31 + k)
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=gen)
    bf16_bytes = n * k * 2
    wf = torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=gen)
    if weight == "ternary":
        wq, scale = bitops.ternary_quantize(wf)
        packed = bitops.pack_ternary(wq).qdata  # raw bytes (rows permuted for the cold rotation)
        op = bitops.ternary_linear
    else:
        wq, scale = bitops.binary_quantize(wf)
        packed = bitops.pack_binary(wq).qdata
        op = bitops.binary_linear
    del wq
    packed_bytes = packed.numel()
    # distinct matrices (random contents, never zeros) for the cold rotation
    ws = [wf] + [torch.randn_like(wf) for _ in range(copies_for(bf16_bytes, l2, hot) - 1)]
    ps = [packed] + [packed[torch.randperm(n, device="cuda")].contiguous() for _ in range(copies_for(packed_bytes, l2, hot) - 1)]
    row = dict(weight=weight, act_bits=act_bits, n=n, k=k, m=m, cold=not hot, path=("auto" if path is None else path) if not gemv else f"{'auto' if path is None else path} {gemv}",
               packed_bytes=packed_bytes, bf16_bytes=bf16_bytes, bf16_copies=len(ws), packed_copies=len(ps))
    calls = min_calls if m <= 64 else 20
    for mode in modes:
        g = mode == "graph"
        t_bf16 = timed([lambda w=w: F.linear(x, w) for w in ws], calls, reps, graph=g)
        with Env(path, gemv):
            t_pk = timed([lambda p=p: op(x, p, scale, act_bits=act_bits, in_features=k) for p in ps], calls, reps, graph=g)
        row[f"bf16_us_{mode}"] = t_bf16
        row[f"packed_us_{mode}"] = t_pk
        row[f"speedup_{mode}"] = t_bf16 / t_pk
        row[f"packed_GBps_{mode}"] = packed_bytes / (t_pk * 1e-6) / 1e9
        row[f"pct_hbm_{mode}"] = 100 * packed_bytes / (t_pk * 1e-6) / bw
        row[f"bf16_pct_hbm_{mode}"] = 100 * bf16_bytes / (t_bf16 * 1e-6) / bw
        row[f"tops_{mode}"] = 2 * m * n * k / (t_pk * 1e-6) / 1e12
        row[f"bf16_tflops_{mode}"] = 2 * m * n * k / (t_bf16 * 1e-6) / 1e12
    row["floor_us"] = packed_bytes / bw * 1e6
    del ws, ps
    torch.cuda.empty_cache()
    return row


def check_exact():
    """One sanity check in the benchmark's own process: CUDA output == CPU output, bit for bit."""
    x = torch.randn(1, 2560, dtype=torch.bfloat16)
    wq, gamma = bitops.ternary_quantize(torch.randn(6912, 2560))
    packed = bitops.pack_ternary(wq)
    cpu = bitops.ternary_linear(x, packed, gamma)
    gpu = bitops.ternary_linear(x.cuda(), packed.cuda(), gamma.cuda()).cpu()
    return bool(torch.equal(cpu, gpu))


def markdown(meta, rows):
    lines = [
        "# CUDA benchmark: packed weights vs torch bf16 F.linear (cuBLAS)",
        "",
        f"Device: **{meta['device']}** ({meta['sms']} SMs, L2 {meta['l2_MB']:.0f} MB); torch {meta['torch']}, "
        f"CUDA {meta['cuda']}; measured HBM bandwidth (1 GiB D2D copy, read+write): **{meta['hbm_GBps']:.0f} GB/s**.",
        f"CUDA output == CPU output (bit-exact, 1x2560 @ 6912x2560): {meta['exact_vs_cpu']}.",
        "",
        "Shapes are N x K (out x in). Cold = rotating through distinct matrices >= 4x L2 in total. "
        "graph = CUDA-graph replay (GPU time), eager = Python calls. path \"fused\" / \"prequant\": BITOPS_CUDA_GEMV_FUSED=1 / 0 forces the GEMV kernel that quantises the activations in every block / the small quantising kernel + GEMV (auto: fused for M <= 2). Times are medians in microseconds; "
        "%HBM = packed bytes / time / measured bandwidth; floor = packed bytes / measured bandwidth.",
        "",
        "| weight | act | N x K | M | path | cold | bf16 us (graph) | packed us (graph) | speedup (graph) | packed %HBM (graph) | floor us | bf16 us (eager) | packed us (eager) | speedup (eager) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        def f(key, fmt="{:.1f}"):
            return fmt.format(r[key]) if key in r else "-"
        lines.append(
            f"| {r['weight']} | {r['act_bits']} | {r['n']}x{r['k']} | {r['m']} | {r['path']} | {'cold' if r['cold'] else 'hot'} | "
            f"{f('bf16_us_graph')} | {f('packed_us_graph')} | {f('speedup_graph', '{:.2f}x')} | {f('pct_hbm_graph', '{:.0f}%')} | "
            f"{f('floor_us')} | {f('bf16_us_eager')} | {f('packed_us_eager')} | {f('speedup_eager', '{:.2f}x')} |"
        )
    lines += ["", "## Targets (issue 5)", ""]
    for t in meta["targets"]:
        lines.append(f"- {t}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--quick", action="store_true", help="fewer cases (smoke run)")
    args = ap.parse_args()
    assert torch.cuda.is_available() and bitops.backend("cuda") == "cuda", "needs a GPU and bitops' CUDA kernels"
    torch.backends.cuda.matmul.allow_tf32 = False
    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", 50 << 20)
    bw = hbm_bandwidth()
    meta = dict(device=props.name, sms=props.multi_processor_count, l2_MB=l2 / 2**20, torch=torch.__version__,
                cuda=torch.version.cuda, python=platform.python_version(), hbm_GBps=bw / 1e9, exact_vs_cpu=check_exact())
    print(json.dumps(meta), flush=True)
    rows = []

    def add(**kw):
        r = bench_case(l2=l2, bw=bw, **kw)
        rows.append(r)
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
        return r

    targets = []
    for n, k in M1_SHAPES:
        r = add(n=n, k=k, m=1, weight="ternary", act_bits=8)
        targets.append(
            f"M=1 {n}x{k}: {r['speedup_graph']:.2f}x vs bf16 (target >= 4x: {'met' if r['speedup_graph'] >= 4 else 'MISSED'}), "
            f"{r['pct_hbm_graph']:.0f}% of HBM bandwidth (target >= 60%: {'met' if r['pct_hbm_graph'] >= 60 else 'MISSED'}); "
            f"eager {r['speedup_eager']:.2f}x"
        )
    r = add(n=4096, k=4096, m=4096, weight="ternary", act_bits=8, modes=("eager",), reps=10)
    targets.append(f"M=4096 4096x4096: {r['speedup_eager']:.2f}x vs bf16 (target >= 1.3x: "
                   f"{'met' if r['speedup_eager'] >= 1.3 else 'MISSED'}); {r['tops_eager']:.0f} int TOPS vs bf16 {r['bf16_tflops_eager']:.0f} TFLOPS")
    meta["targets"] = targets
    if not args.quick:
        add(n=4096, k=4096, m=1, weight="ternary", act_bits=8, hot=True)
        # the two GEMV variants for float activations forced, for comparison with "auto"
        add(n=4096, k=4096, m=1, weight="ternary", act_bits=8, gemv="prequant", modes=("graph",))
        add(n=4096, k=4096, m=8, weight="ternary", act_bits=8, gemv="fused", modes=("graph",))
        # where the fused kernel stops paying: both paths over M
        for m in (2, 4, 8, 16, 32, 64):
            add(n=4096, k=4096, m=m, weight="ternary", act_bits=8, path=4096, modes=("graph",))
        for m in (8, 16, 32, 128, 512):
            add(n=4096, k=4096, m=m, weight="ternary", act_bits=8, path=0, modes=("graph",))
        add(n=2560, k=6912, m=4096, weight="ternary", act_bits=8, modes=("eager",), reps=10)
        add(n=4096, k=4096, m=1, weight="binary", act_bits=8)
        add(n=4096, k=4096, m=1, weight="binary", act_bits=1)
        add(n=4096, k=4096, m=4096, weight="binary", act_bits=1, modes=("eager",), reps=10)
        add(n=4096, k=4096, m=4096, weight="ternary", act_bits=None, modes=("eager",), reps=10)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "cuda_bench.json"), "w") as fh:
        json.dump(dict(meta=meta, rows=rows), fh, indent=1)
    with open(os.path.join(args.out, "cuda_bench.md"), "w") as fh:
        fh.write(markdown(meta, rows))
    print("\n".join(targets))


if __name__ == "__main__":
    main()
