"""The packed ternary int8 GEMM against the machine's int8 peak, measured in the same run.

    python benchmarks/int8_gemm.py                     # the active kernel set (default ISA)
    BITOPS_ISA=avx2 python benchmarks/int8_gemm.py     # the AVX2 set on a CPU that has more
    python benchmarks/int8_gemm.py --quick             # seconds: one small shape, for the tests

Times ``bitops.ternary_matmul_int`` (int8 activations x packed 2-bit weights -> exact int32:
the kernel, its thread split and the output, no quantization around it) at M = 512 for the
BitNet b1.58 2B4T projections and 4096x4096, on 1 thread and on all of torch's threads. Each
cell is the median of its calls in a round; rounds interleave every shape and thread count,
and the figure is the median over rounds (this machine is shared). The peak is the rate of
the kernel set's multiply instruction (vpmaddubsw + vpaddw, 32 MACs; or vpdpbusd zmm, 64 MACs)
measured by benchmarks/int8_peak.cpp on one core once per round, times the threads; each
cell's % of peak is the median over rounds of its rate over that round's peak (the core's
clock drifts over a run here: the probe moved from 164 to 204 GMAC/s within one run).

Writes int8_gemm_<isa>.{json,md} to --out (default benchmarks/results; --quick: a subfolder).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import bitops  # noqa: E402
from matmul import cpu_model  # noqa: E402

# (name, N = out_features, K = in_features)
SHAPES = [("4096x4096", 4096, 4096), ("q/o 2560x2560", 2560, 2560), ("k/v 640x2560", 640, 2560),
          ("gate/up 6912x2560", 6912, 2560), ("down 2560x6912", 2560, 6912)]
QUICK_SHAPES = [("512x384", 512, 384)]


def probe_peak(exe: Path) -> dict:
    return json.loads(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout)


def build_probe(out_dir: Path) -> Path:
    exe = out_dir / "int8_peak"
    subprocess.run([os.environ.get("CXX", "g++"), "-O3", "-std=c++17", str(ROOT / "benchmarks" / "int8_peak.cpp"),
                    "-o", str(exe)], check=True)
    return exe


def median_call_s(fn, calls: int) -> float:
    fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(args) -> dict:
    shapes = QUICK_SHAPES if args.quick else SHAPES
    m = 16 if args.quick else args.m
    threads_all = torch.get_num_threads()
    thread_counts = sorted({1, threads_all})
    g = torch.Generator().manual_seed(0)
    cases = []
    for name, n, k in shapes:
        w = torch.randint(-1, 2, (n, k), generator=g, dtype=torch.int8)
        xq = torch.randint(-128, 128, (m, k), generator=g, dtype=torch.int8)
        packed = bitops.pack_ternary(w)
        out = bitops.ternary_matmul_int(xq, packed)
        if args.quick:  # the smoke run also checks the kernel against the oracle
            assert torch.equal(out, bitops.reference.ternary_matmul_int(xq, packed.qdata, k)), name
        cases.append((name, n, k, xq, packed))
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_probe(Path(tmp))
        probes = []
        times = {(c[0], t): [] for c in cases for t in thread_counts}
        for r in range(args.rounds):
            probes.append(probe_peak(exe))
            for t in thread_counts[r % 2:] + thread_counts[:r % 2]:  # thread order alternates per round
                torch.set_num_threads(t)
                for name, n, k, xq, packed in cases:
                    times[(name, t)].append(median_call_s(lambda: bitops.ternary_matmul_int(xq, packed), args.calls))
        torch.set_num_threads(threads_all)
    vnni = bitops.backend() == "cpu-avx512vnni"
    key = "vnni_peak_gmacs_per_core" if vnni else "int8_peak_gmacs_per_core"
    per_core = [p[key] for p in probes]
    rows = []
    for name, n, k, _, _ in cases:
        for t in thread_counts:
            s = statistics.median(times[(name, t)])
            pct = [100 * m * n * k / v / 1e9 / (pk * t) for v, pk in zip(times[(name, t)], per_core)]
            rows.append({"shape": name, "n": n, "k": k, "m": m, "threads": t, "ms": s * 1e3,
                         "round_ms": [v * 1e3 for v in times[(name, t)]], "gmacs": m * n * k / s / 1e9,
                         "pct_peak": statistics.median(pct), "round_pct_peak": pct})
    return {
        "cpu": cpu_model(), "isa": bitops.backend(), "torch_threads": threads_all,
        "omp": {v: os.environ.get(v) for v in ("OMP_PROC_BIND", "OMP_PLACES", "OMP_NUM_THREADS")},
        "peak_instruction": "vpdpbusd zmm (64 MACs)" if vnni else "vpmaddubsw + vpaddw (32 MACs)",
        "peak_gmacs_per_core": statistics.median(per_core), "probes": probes, "rounds": args.rounds, "calls_per_round": args.calls,
        "load_average": [round(v, 2) for v in os.getloadavg()], "rows": rows,
    }


def markdown(res: dict) -> str:
    threads = sorted({r["threads"] for r in res["rows"]})
    lines = [
        f"# Packed ternary int8 GEMM vs the int8 peak ({res['isa']}, M = {res['rows'][0]['m']})",
        "",
        f"Machine: {res['cpu']}; peak {res['peak_gmacs_per_core']:.0f} GMAC/s per core, the median of the run's "
        f"probes ({res['peak_instruction']}; per round: "
        + ", ".join(f"{p['int8_peak_gmacs_per_core']:.0f}" for p in res["probes"]) + " GMAC/s vpmaddubsw, "
        + ", ".join(f"{p['vnni_peak_gmacs_per_core']:.0f}" for p in res["probes"]) + " vpdpbusd). "
        "Each % of peak is the median over rounds of the round's rate over the round's peak. "
        f"Median over {res['rounds']} interleaved rounds of the per-round median of {res['calls_per_round']} calls; "
        f"OMP settings {res['omp']}; load average {res['load_average']}.",
        "",
        "| shape (N x K) | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in threads) + " |",
        "|---|" + "---:|" * len(threads),
    ]
    for name in dict.fromkeys(r["shape"] for r in res["rows"]):
        cells = []
        for t in threads:
            r = next(r for r in res["rows"] if r["shape"] == name and r["threads"] == t)
            cells.append(f"{r['ms']:.2f} ms, {r['gmacs']:.0f} GMAC/s, {r['pct_peak']:.0f}% of peak")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--m", type=int, default=512, help="rows of x (default 512)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=5, help="timed calls per cell and round")
    p.add_argument("--quick", action="store_true", help="one small shape, 2 rounds: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.calls = 2, 2
    out = args.out or (ROOT / "benchmarks" / "results" / ("quick" if args.quick else ""))
    res = run(args)
    isa = res["isa"].removeprefix("cpu-")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"int8_gemm_{isa}.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    (out / f"int8_gemm_{isa}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
