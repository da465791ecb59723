"""Packing, unpacking and validating packed weights, next to one fp32 GEMV of the same matrix.

    python benchmarks/pack.py            # both thread-placement configs, a few minutes on 2 cores
    python benchmarks/pack.py --quick    # fewer rounds
    python benchmarks/pack.py --smoke    # seconds: tiny shapes, for a quick check

Is loading (packing or validating) a layer as cheap as running it once? For each matrix
N x K (square 4096 and the BitNet b1.58 2B4T layers), in one process and on the same
non-zero inputs, this times ``torch.ops.bitops.{pack,unpack,validate}_{ternary,binary}``
against ``F.linear(x[1, K], W[N, K])`` in fp32: the cost of one decode step through that layer.
Goal: every pack op <= 1.0x one GEMV at 2 threads.

Each op is timed in several rounds of back-to-back calls (method order rotating per round);
a cell reports the median over all calls, and its ratio to the GEMV is the median of the
per-round ratios, so a burst of load from other processes spoils one round's pair rather
than one op's whole figure. Inputs are cold: every op rotates through enough copies of its
input that the working set is at least 4x the last-level cache (32 MiB by the house
convention of benchmarks/matmul.py; --llc-mib changes it). Effective GB/s counts the bytes
each op must read plus write (its input and output tensors).

The run is done twice, each in a fresh subprocess (OpenMP reads its placement variables once,
at start): with the default placement, and with OMP_PROC_BIND=close OMP_PLACES=cores.
A last section measures the per-call overhead of a tiny packed layer: bitops' ternary
int8 linear (1 x 128 @ 128 x 128) against F.linear on the same shape.

Writes pack_cpu.json and pack_cpu.md to --out (default benchmarks/results; --quick and
--smoke write to a subfolder, so they never overwrite the committed results).
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
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import bitops  # noqa: E402
from bitops import reference as ref  # noqa: E402
from matmul import LLC_BYTES, machine_info, measure_undisturbed, read_bandwidth, release_probe_buffer, summarize  # noqa: E402

RESULTS = HERE / "results"
MIB = 1 << 20
ops = torch.ops.bitops

# (name, N = out_features, K = in_features)
SHAPES = [
    ("4096x4096", 4096, 4096),
    ("2560x2560", 2560, 2560),  # 2B4T attention q / o
    ("640x2560", 640, 2560),  # 2B4T attention k / v
    ("6912x2560", 6912, 2560),  # 2B4T FFN gate / up
    ("2560x6912", 2560, 6912),  # 2B4T FFN down
]
SMOKE_SHAPES = [("256x384", 256, 384), ("64x1000", 64, 1000)]
OPS = ["pack_ternary", "unpack_ternary", "validate_ternary", "pack_binary", "unpack_binary", "validate_binary"]
METHODS = ["gemv_fp32"] + OPS
CONFIGS = [("default", {}), ("bind_close_cores", {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"})]


# --------------------------------------------------------------------------- inputs


class Matrix:
    """One N x K matrix in every form the ops take, and the cold copies of each."""

    def __init__(self, n: int, k: int, llc_bytes: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.n, self.k, self.llc = n, k, llc_bytes
        w = torch.randn(n, k, generator=g)
        wq, _ = ref.ternary_quantize(w)  # realistic mix of -1, 0, +1
        wb = torch.where(w >= 0, 1, -1).to(torch.int8)
        self.rb_t, self.rb_b = ref.ternary_row_bytes(k), ref.binary_row_bytes(k)
        self.base = {"fp32": w, "wq": wq, "wb": wb, "pt": ops.pack_ternary(wq), "pb": ops.pack_binary(wb)}
        self.copies: dict = {}

    def rotation(self, form: str) -> list:
        """Copies of one input: enough that a full cycle touches >= 4x the LLC (at least 2)."""
        if form not in self.copies:
            t = self.base[form]
            count = max(2, -(-4 * self.llc // (t.numel() * t.element_size())))
            self.copies[form] = [t.clone() for _ in range(count)]
        return self.copies[form]

    def bytes_moved(self, method: str) -> int:
        """Bytes an op must read plus write (its input and output tensors)."""
        n, k = self.n, self.k
        return {
            "gemv_fp32": 4 * n * k + 4 * k + 4 * n,
            "pack_ternary": n * k + n * self.rb_t,
            "unpack_ternary": n * self.rb_t + n * k,
            "validate_ternary": n * self.rb_t,
            "pack_binary": n * k + n * self.rb_b,
            "unpack_binary": n * self.rb_b + n * k,
            # only each row's last 32-byte block holds padding, and none when K % 256 == 0
            "validate_binary": 0 if k % 256 == 0 else n * 32,
        }[method]

    def call(self, method: str, x: torch.Tensor):
        k = self.k
        if method == "gemv_fp32":
            src = self.rotation("fp32")
            return lambda i: F.linear(x, src[i % len(src)])
        form = {"pack_ternary": "wq", "pack_binary": "wb"}.get(method, "pt" if "ternary" in method else "pb")
        src = self.rotation(form)
        fn = getattr(ops, method)
        if method.startswith("pack"):
            return lambda i: fn(src[i % len(src)])
        return lambda i: fn(src[i % len(src)], k)


# --------------------------------------------------------------------------- timing


def time_calls(fn, budget_s: float, min_reps: int, max_reps: int, start: int, warmup: int = 2) -> list:
    """Per-call wall times of fn(i), i counting on from `start` (the rotation keeps advancing)."""
    for j in range(warmup):
        fn(start + j)
    times, i, t_start = [], 0, time.perf_counter()
    while i < min_reps or (i < max_reps and time.perf_counter() - t_start < budget_s):
        t0 = time.perf_counter()
        fn(start + warmup + i)
        times.append(time.perf_counter() - t0)
        i += 1
    return times


def measure_shape(name: str, n: int, k: int, args) -> dict:
    m = Matrix(n, k, args.llc_mib * MIB)
    x = torch.randn(1, k)
    calls = {meth: m.call(meth, x) for meth in METHODS}
    # every op checked against the oracle once, on the data it is timed on
    assert torch.equal(ops.unpack_ternary(m.base["pt"], k), m.base["wq"])
    assert torch.equal(ops.unpack_binary(m.base["pb"], k), m.base["wb"])
    assert ops.validate_ternary(m.base["pt"], k) == -1 and ops.validate_binary(m.base["pb"], k) == -1

    def measure():
        per_round = {meth: [] for meth in METHODS}
        counters = {meth: 0 for meth in METHODS}
        for r in range(args.rounds):
            order = METHODS[r % len(METHODS):] + METHODS[: r % len(METHODS)]
            for meth in order:
                t = time_calls(calls[meth], args.budget, args.min_reps, args.max_reps, counters[meth])
                counters[meth] += len(t) + 2
                per_round[meth].append(t)
        return per_round

    per_round, attempts = measure_undisturbed(measure, args.retries)
    gemv_rounds = [statistics.median(t) for t in per_round["gemv_fp32"]]
    row = {"shape": name, "n": n, "k": k, "attempts": attempts,
           "copies": {form: len(c) for form, c in m.copies.items()}, "methods": {}}
    for meth in METHODS:
        st = summarize([t for ts in per_round[meth] for t in ts])
        st.pop("times_s")
        rounds = [statistics.median(t) for t in per_round[meth]]
        st["round_medians_s"] = rounds
        st["bytes"] = m.bytes_moved(meth)
        st["gb_per_s"] = st["bytes"] / st["median_s"] / 1e9
        st["ratio_to_gemv"] = statistics.median(a / b for a, b in zip(rounds, gemv_rounds))
        row["methods"][meth] = st
    m.copies.clear()
    return row


def measure_overhead(args) -> dict:
    """Per-call cost of a tiny layer, where fixed overheads dominate: 1 x 128 @ 128 x 128."""
    k = n = 128
    w = torch.randn(n, k)
    wq, gamma = ref.ternary_quantize(w)
    packed = ops.pack_ternary(wq)
    x = torch.randn(1, k)
    packed_weight = bitops.pack_ternary(wq, gamma)
    fns = {
        "bitops.ternary_linear": lambda: bitops.ternary_linear(x, packed_weight),
        "ternary_linear_i8": lambda: ops.ternary_linear_i8(x, packed, gamma, None),
        "F.linear fp32": lambda: F.linear(x, w),
    }
    out = {}
    per_round = {name: [] for name in fns}
    for r in range(args.rounds):
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            fn = fns[name]
            for _ in range(50):
                fn()
            times = []
            for _ in range(args.overhead_calls):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            per_round[name].append(times)
    for name, rounds in per_round.items():
        st = summarize([t for ts in rounds for t in ts])
        st.pop("times_s")
        st["round_medians_s"] = [statistics.median(t) for t in rounds]
        out[name] = st
    return out


def child(args) -> int:
    torch.set_num_threads(args.threads)
    shapes = SMOKE_SHAPES if args.smoke else SHAPES
    bw = read_bandwidth(args.threads, 0.3)
    release_probe_buffer()
    rows = []
    for name, n, k in shapes:
        rows.append(measure_shape(name, n, k, args))
        print(f"  {name}: " + ", ".join(f"{meth} {fmt_time(rows[-1]['methods'][meth]['median_s'])}" for meth in METHODS),
              file=sys.stderr, flush=True)
    res = {
        "machine": machine_info(),
        "env": {v: os.environ.get(v) for v in ("OMP_PROC_BIND", "OMP_PLACES", "OMP_NUM_THREADS", "BITOPS_ISA")},
        "threads": args.threads,
        "read_bandwidth_gb_s": bw / 1e9,
        "rows": rows,
        "overhead": measure_overhead(args),
    }
    Path(args.child_json).write_text(json.dumps(res, indent=1))
    return 0


# --------------------------------------------------------------------------- report


def fmt_time(s: float) -> str:
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    if s >= 1e-6:
        return f"{s * 1e6:.1f} µs"
    return f"{s * 1e9:.0f} ns"


def markdown(res: dict) -> str:
    lines = [
        "# Packing, unpacking and validation vs one fp32 GEMV (CPU)",
        "",
        f"Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores, kernels `{res['machine']['isa']}` "
        f"(pack kernels: AVX2 unless `cpu-scalar`), torch {res['machine']['torch']}, {res['threads']} threads.",
        "",
        "Each cell: median over all calls of several interleaved rounds, effective GB/s "
        "(bytes read + written), and the ratio to one fp32 GEMV `F.linear(x[1,K], W[N,K])` of the same matrix "
        "(median of per-round ratios). Inputs cold: each op rotates through copies of its input filling "
        f">= 4x the LLC ({res['llc_mib']} MiB, the house convention of benchmarks/matmul.py; sysfs reports "
        f"{res['sysfs_l3']} of host L3). Goal: every op <= 1.0x the GEMV at 2 threads.",
        "`validate_binary` reads only each row's last 32-byte block, and nothing when K % 256 == 0 "
        "(no padding bits: every buffer is canonical), which is the case for all of these shapes.",
        "",
    ]
    for cfg in res["configs"]:
        r = cfg["result"]
        env = ", ".join(f"{k}={v}" for k, v in cfg["env"].items()) or "default placement (no OMP_PROC_BIND)"
        lines += [f"## {cfg['name']}: {env}", "",
                  f"Read bandwidth probe (512 MiB sum, {r['threads']} threads): {r['read_bandwidth_gb_s']:.1f} GB/s.", ""]
        lines.append("| N x K | fp32 GEMV | " + " | ".join(OPS) + " |")
        lines.append("|---|---|" + "---|" * len(OPS))
        for row in r["rows"]:
            g = row["methods"]["gemv_fp32"]
            cells = [f"{fmt_time(g['median_s'])}<br>{g['gb_per_s']:.1f} GB/s"]
            for op in OPS:
                c = row["methods"][op]
                gbs = f"{c['gb_per_s']:.1f} GB/s" if c["bytes"] else "reads nothing"
                mark = "" if c["ratio_to_gemv"] <= 1.0 else " (over)"
                cells.append(f"{fmt_time(c['median_s'])} **{c['ratio_to_gemv']:.3f}x**{mark}<br>{gbs}")
            lines.append(f"| {row['shape']} | " + " | ".join(cells) + " |")
        worst = max((row["methods"][op]["ratio_to_gemv"], row["shape"], op) for row in r["rows"] for op in OPS)
        disturbed = [row["shape"] for row in r["rows"]
                     if (row["attempts"][-1]["other_core_share"] or 0) > 0.10]
        lines += ["", f"Worst ratio: {worst[0]:.3f}x ({worst[2]}, {worst[1]}): "
                  f"{'goal met' if worst[0] <= 1.0 else 'GOAL MISSED'}."
                  + (f" Shapes measured under load from other processes (>10% of a core, after retries): "
                     f"{', '.join(disturbed)}." if disturbed else ""), ""]
        ov = r["overhead"]
        lines += ["Per-call overhead, 1 x 128 @ 128 x 128 (median of "
                  f"{ov['F.linear fp32']['reps']} calls):", ""]
        lines += ["| call | median | p10 | p90 |", "|---|---|---|---|"]
        for name, st in ov.items():
            lines.append(f"| `{name}` | {fmt_time(st['median_s'])} | {fmt_time(st['p10_s'])} | {fmt_time(st['p90_s'])} |")
        ratio = ov["bitops.ternary_linear"]["median_s"] / ov["F.linear fp32"]["median_s"]
        lines += ["", f"`bitops.ternary_linear` / `F.linear`: {ratio:.2f}x (goal <= 3x: "
                  f"{'met' if ratio <= 3 else 'MISSED'}). The raw op goes through the autograd layer "
                  "(a Python kernel from register_autograd); the public function skips it when no input "
                  "needs a gradient.", ""]
        lines.append("")
    return "\n".join(lines)


def sysfs_l3() -> str:
    try:
        return Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
    except OSError:
        return "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--budget", type=float, default=None, help="seconds per op per round")
    p.add_argument("--llc-mib", type=int, default=LLC_BYTES // MIB)
    p.add_argument("--configs", default=",".join(c[0] for c in CONFIGS))
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--child-json", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.rounds = args.rounds or (2 if args.smoke else 3 if args.quick else 5)
    args.budget = args.budget or (0.02 if args.smoke else 0.1 if args.quick else 0.25)
    args.min_reps, args.max_reps = (3, 50) if args.smoke else (5, 200)
    args.retries = 0 if args.smoke else 2
    args.overhead_calls = 200 if args.smoke else 2000
    if args.child_json:
        return child(args)

    out = args.out or (RESULTS / "smoke" if args.smoke else RESULTS / "quick" if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    configs = []
    for name, env in CONFIGS:
        if name not in args.configs.split(","):
            continue
        print(f"{name}: {env or 'default placement'}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            js = Path(tmp) / "child.json"
            cmd = [sys.executable, __file__, "--child-json", str(js), "--threads", str(args.threads),
                   "--rounds", str(args.rounds), "--budget", str(args.budget), "--llc-mib", str(args.llc_mib)]
            if args.smoke:
                cmd.append("--smoke")
            subprocess.run(cmd, env={**os.environ, **env}, check=True)
            configs.append({"name": name, "env": env, "result": json.loads(js.read_text())})
    res = {"benchmark": "pack", "llc_mib": args.llc_mib, "sysfs_l3": sysfs_l3(), "machine": configs[0]["result"]["machine"],
           "threads": args.threads, "configs": configs}
    (out / "pack_cpu.json").write_text(json.dumps(res, indent=1))
    (out / "pack_cpu.md").write_text(markdown(res))
    print(markdown(res))
    print(f"wrote {out / 'pack_cpu.json'} and {out / 'pack_cpu.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
