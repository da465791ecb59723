"""Float vs packed matmul on this machine: is 1.58-bit (and 1-bit) worth it here?

    python benchmarks/matmul.py            # full run (a few minutes on 2 cores)
    python benchmarks/matmul.py --quick    # about a minute: the README's first command
    python benchmarks/matmul.py --smoke    # seconds: tiny shapes, for the tests

Every method runs in the same process on the same (non-zero) inputs: torch fp32 and bf16
``F.linear`` against bitops' packed ternary (int8 and float activations) and binary (int8
and 1-bit activations) linear layers, over the shapes of DESIGN.md section 6. Each cell is
the median of many timed calls after warm-up, with its spread (10th-90th percentile). The full
run times each method in 5 rounds of back-to-back calls (method order rotating) and reports
each speedup as the median of the per-round ratios: on a shared machine, a burst of load then
spoils one round's pair instead of one method's whole figure.

"Cold" weights rotate through enough copies of the layer that the working set is at least
4x the last-level cache, as in a real model where each layer's weights come from memory;
"hot" reuses one matrix. The floor is what the hardware allows: for M = 1 (cold) the weight
bytes over the read bandwidth, probed with the same threads just before and just after the
cell (the better of the two); for M > 1 and the int8 kernels, the multiply-adds over the int8
peak (vpmaddubsw or vpdpbusd rate measured by benchmarks/cpu_variants.py, 32 or 64 MACs each).

This machine is shared: a cell during which other processes took more than 10% of a core
(from /proc/stat) is measured again, up to twice, and the least-disturbed attempt is kept.
--shapes and --batches pick single cells to rerun.

Writes matmul_cpu.json, matmul_cpu.md and PNG plots to --out (the full run: benchmarks/results;
--quick and --smoke: a subfolder of it, so they never overwrite the committed full results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bitops  # noqa: E402

try:
    from tqdm import tqdm
except ImportError:  # progress bars are a nicety
    def tqdm(it, **_):
        return it

RESULTS = Path(__file__).resolve().parent / "results"
LLC_BYTES = 32 << 20  # last-level cache of this machine; cold working sets are 4x this
MIB = 1 << 20

# (name, K = in_features, N = out_features): square, BitNet b1.58 2B4T FFN up and down.
SHAPES = [("4096x4096", 4096, 4096), ("2560x6912", 2560, 6912), ("6912x2560", 6912, 2560)]
METHODS = ["fp32", "bf16", "ternary_i8", "ternary_f32", "binary_i8", "binary_b1"]
LABELS = {
    "fp32": "torch fp32 F.linear",
    "bf16": "torch bf16 F.linear",
    "ternary_i8": "ternary, int8 act (W1.58A8)",
    "ternary_f32": "ternary, float act (add/sub)",
    "binary_i8": "binary, int8 act (W1A8)",
    "binary_b1": "binary, 1-bit act (XNOR-popcount)",
}


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nominal_ghz() -> float:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) / 1000
    except OSError:
        pass
    return 2.5


def int8_peak_per_core(machine: dict) -> tuple:
    """The int8 MAC/s per core of the instruction the active kernel set multiplies with:
    vpdpbusd (zmm, 64 MACs) for cpu-avx512vnni, vpmaddubsw + vpaddw (32 MACs) otherwise, as
    measured by benchmarks/cpu_variants.py on this CPU when its results are there, else
    2 vpmaddubsw per cycle at the nominal clock."""
    measured = RESULTS / "cpu_variants.json"
    try:
        v = json.loads(measured.read_text())
        if v.get("cpu") == machine["cpu"]:
            if machine["isa"] == "cpu-avx512vnni" and v.get("vnni_peak_gmacs_per_core"):
                return v["vnni_peak_gmacs_per_core"] * 1e9, f"vpdpbusd, measured ({measured.name})"
            return v["int8_peak_gmacs_per_core"] * 1e9, f"vpmaddubsw, measured ({measured.name})"
    except (OSError, ValueError, KeyError):
        pass
    return 64 * machine["nominal_ghz"] * 1e9, "2 vpmaddubsw/cycle at the nominal clock"


def machine_info() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "nominal_ghz": round(nominal_ghz(), 3),
        "isa": bitops.backend(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# --------------------------------------------------------------------------- timing


def timeit(fn, budget_s: float, min_reps: int, max_reps: int, warmup: int = 2) -> dict:
    """Median and spread of per-call wall times; fn(i) gets the call index (to rotate layers)."""
    for i in range(warmup):
        fn(i)
    times = []
    start = time.perf_counter()
    i = 0
    while i < min_reps or (i < max_reps and time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn(warmup + i)
        times.append(time.perf_counter() - t0)
        i += 1
    return summarize(times)


def merge_rounds(stats: list) -> dict:
    """One method's per-round statistics as one: all calls pooled (times kept per round)."""
    times = [t for st in stats for t in st["times_s"]]
    return {**summarize(times), "rounds": len(stats), "round_medians_s": [st["median_s"] for st in stats]}


def summarize(times: list) -> dict:
    times = sorted(times)
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))]  # noqa: E731
    return {"median_s": statistics.median(times), "p10_s": q(0.1), "p90_s": q(0.9), "min_s": times[0],
            "reps": len(times), "times_s": times}


_probe_buffer = None


def read_bandwidth(threads: int, budget_s: float) -> float:
    """Read bandwidth in bytes/s: a 512 MiB float32 sum (reads only, vectorised, threaded)."""
    global _probe_buffer
    torch.set_num_threads(threads)
    if _probe_buffer is None:
        _probe_buffer = torch.rand(128 * MIB)  # 512 MiB, 16x the LLC; kept for the run's later probes
    buf = _probe_buffer
    t = timeit(lambda i: buf.sum(), budget_s, 5, 50)
    # the best of two probes: the floor must be what the machine can do
    t2 = timeit(lambda i: buf.amax(), budget_s, 5, 50)
    return buf.numel() * buf.element_size() / min(t["median_s"], t2["median_s"])


def release_probe_buffer() -> None:
    global _probe_buffer
    _probe_buffer = None


def cpu_seconds() -> tuple | None:
    """(CPU seconds all processes of this machine were busy, incl. hypervisor steal; of this process)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return busy / os.sysconf("SC_CLK_TCK"), ru.ru_utime + ru.ru_stime


# A cell during which other processes used more than this share of one core is measured again:
# on this shared 2-core machine another process's burst can slow a cell by 30-50%, and the
# medians over rounds cannot hide a burst that outlasts the whole cell.
DISTURBED_CORE_SHARE = 0.10
MIN_JUDGED_WALL_S = 0.5


def measure_undisturbed(measure, retries: int) -> tuple:
    """measure() up to 1 + retries times, until other processes leave it alone; returns the
    least-disturbed attempt's result and every attempt's record (wall seconds, CPU share of
    one core taken by other processes)."""
    best, attempts = None, []
    for _ in range(1 + retries):
        before, t0 = cpu_seconds(), time.perf_counter()
        result = measure()
        wall, after = time.perf_counter() - t0, cpu_seconds()
        # /proc/stat counts in 10 ms ticks per core: too coarse to judge a cell shorter than this
        other = None if before is None or after is None or wall < MIN_JUDGED_WALL_S else \
            max(0.0, (after[0] - before[0]) - (after[1] - before[1])) / wall
        attempts.append({"wall_s": round(wall, 3), "other_core_share": None if other is None else round(other, 3)})
        if best is None or (other is not None and other < best[0]):
            best = (other if other is not None else 0.0, result)
        if other is None or other <= DISTURBED_CORE_SHARE:
            break
    return best[1], attempts


def bf16_check(shape, args) -> str | None:
    """Why bf16 is left out (--no-bf16, or slower than fp32 on this CPU), or None to measure it."""
    if args.no_bf16:
        return "skipped (--no-bf16)"
    _, k, n = shape
    w, x = torch.randn(n, k), torch.randn(32, k)
    wb, xb = w.bfloat16(), x.bfloat16()
    t32 = timeit(lambda i: F.linear(x, w), 0.1, 3, 20)["median_s"]
    t16 = timeit(lambda i: F.linear(xb, wb), 0.1, 3, 20)["median_s"]
    if t16 > t32:
        return f"skipped: slower than fp32 on this CPU ({fmt_time(t16)} vs {fmt_time(t32)} at M=32, {shape[0]})"
    return None


# --------------------------------------------------------------------------- layers


class Layer:
    """One weight matrix in every format, and the copies that make the weights cold."""

    def __init__(self, k: int, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(n, k, generator=g) * 0.05
        self.k, self.n = k, n
        self.w32 = w
        self.w16 = w.to(torch.bfloat16)
        wq, self.gamma = bitops.ternary_quantize(w)
        self.ternary = bitops.pack_ternary(wq).qdata  # raw bytes: copies rotate through memory
        wb, self.beta = bitops.binary_quantize(w)
        self.binary = bitops.pack_binary(wb).qdata
        self.bias = torch.randn(n, generator=g) * 0.1
        self.copies: dict[str, list] = {}

    def weight(self, method: str) -> torch.Tensor:
        return {"fp32": self.w32, "bf16": self.w16, "ternary_i8": self.ternary, "ternary_f32": self.ternary,
                "binary_i8": self.binary, "binary_b1": self.binary}[method]

    def weight_bytes(self, method: str) -> int:
        t = self.weight(method)
        return t.numel() * t.element_size()

    def rotation(self, method: str, cold: bool) -> list:
        """Copies of this method's weights: one (hot), or enough to fill 4x the LLC (cold)."""
        if not cold:
            return [self.weight(method)]
        key = "ternary" if method.startswith("ternary") else "binary" if method.startswith("binary") else method
        if key not in self.copies:
            count = max(2, -(-4 * LLC_BYTES // self.weight_bytes(method)))
            self.copies[key] = [self.weight(method).clone() for _ in range(count)]
        return self.copies[key]

    def drop_copies(self) -> None:
        self.copies.clear()


def call(method: str, layer: Layer, x: torch.Tensor, xb: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if method == "fp32":
        return F.linear(x, w, layer.bias)
    if method == "bf16":
        return F.linear(xb, w, layer.bias.to(torch.bfloat16))
    if method == "ternary_i8":
        return bitops.ternary_linear(x, w, layer.gamma, layer.bias, act_bits=8, in_features=layer.k)
    if method == "ternary_f32":
        return bitops.ternary_linear(x, w, layer.gamma, layer.bias, act_bits=None, in_features=layer.k)
    if method == "binary_i8":
        return bitops.binary_linear(x, w, layer.beta, layer.bias, act_bits=8, in_features=layer.k)
    if method == "binary_b1":
        return bitops.binary_linear(x, w, layer.beta, layer.bias, act_bits=1, in_features=layer.k)
    raise ValueError(method)


# --------------------------------------------------------------------------- the run


def apply_floors(rows: list, bandwidth: dict, int8_peak: dict) -> None:
    """The floor (DESIGN.md section 6): for GEMV (M = 1, cold) the weight bytes over the read
    bandwidth (the better of the probes just before and after the cell, else the run's best);
    for GEMM the MACs over the int8 (vpmaddubsw or vpdpbusd) peak, for the int8 kernels."""
    for row in rows:
        cell_bw = max(row.get("cell_read_bandwidth_gbps") or [0]) * 1e9
        floor_bw = row["weight_bytes"] / (cell_bw or bandwidth[row["threads"]])
        row["pct_of_run_best_floor"] = (100 * row["weight_bytes"] / bandwidth[row["threads"]] / row["median_s"]
                                        if row["m"] == 1 and row["weights"] == "cold" else None)
        floor_int = row["m"] * row["n"] * row["k"] / int8_peak[row["threads"]]
        int8 = row["method"] in ("ternary_i8", "binary_i8")
        floors = ([floor_bw] if row["m"] == 1 and row["weights"] == "cold"
                  else [floor_int] if row["m"] > 1 and int8 else [])
        row["floor_s"] = max(floors) if floors else None
        row["floor_kind"] = None if not floors else "memory" if row["floor_s"] == floor_bw else "int8 peak"
        row["pct_of_floor"] = 100 * row["floor_s"] / row["median_s"] if floors else None


def run(args) -> dict:
    if args.smoke:
        shapes, batches, thread_counts, temps = [("512x384", 512, 384)], [1, 8], [torch.get_num_threads()], ["hot"]
        budget, min_reps, max_reps, rounds = 0.02, 2, 5, 1
        retries = 0
    elif args.quick:
        shapes, batches, temps = SHAPES, [1, 32, 512], ["cold"]
        thread_counts = [torch.get_num_threads()]
        budget, min_reps, max_reps, rounds = 0.15, 3, 100, 1
        retries = 1
    else:
        shapes, batches, temps = SHAPES, [1, 8, 32, 128, 512], ["cold", "hot"]
        thread_counts = sorted({1, torch.get_num_threads()}, reverse=True)
        budget, min_reps, max_reps, rounds = 1.0, 10, 400, 5
        retries = 2
    if args.threads:
        thread_counts = [int(t) for t in args.threads.split(",")]
    if args.shapes:
        wanted = args.shapes.split(",")
        unknown = sorted(set(wanted) - {s[0] for s in SHAPES})
        if unknown:
            raise SystemExit(f"unknown shape(s) {unknown}; known: {[s[0] for s in SHAPES]}")
        shapes = [s for s in shapes if s[0] in wanted]
    if args.batches:
        batches = [int(m) for m in args.batches.split(",")]
    machine = machine_info()
    methods = list(METHODS)
    bf16_note = bf16_check(shapes[0], args)
    if bf16_note:
        methods.remove("bf16")

    probe_s = 0.15 if not args.smoke else 0.02
    bandwidth = {}
    for t in thread_counts:
        bandwidth[t] = read_bandwidth(t, 2 * probe_s)
    per_core, peak_source = int8_peak_per_core(machine)
    int8_peak = {t: per_core * t for t in thread_counts}

    rows = []
    cells = [(s, m, t, temp) for t in thread_counts for s in shapes for m in batches for temp in temps
             # the 1-thread pass is the scaling figure: M = 1 and the largest M, cold
             if t == max(thread_counts) or (temp == "cold" and m in (1, batches[-1]))]
    layers = {}
    bar = tqdm(total=len(cells) * len(methods), desc="matmul", unit="case", file=sys.stderr)
    for shape_name, k, n in shapes:
        layer = Layer(k, n, seed=0)
        gen = torch.Generator().manual_seed(1)
        for (s_name, m, threads, temp) in [c for c in cells if c[0][0] == shape_name]:
            torch.set_num_threads(threads)
            x = torch.randn(m, k, generator=gen)  # same inputs for every method
            xb = x.to(torch.bfloat16)
            bar.set_postfix_str(f"{shape_name} M={m} t={threads} {temp}")
            rotations = {meth: layer.rotation(meth, temp == "cold") for meth in methods}
            big = m * n * k >= (1 << 31)
            # Each method in its own block of back-to-back calls, as a model runs layer after layer:
            # interleaving methods call by call was tried and measured the packed kernels up to 2x
            # slow, since they then start on a memory system idled or disturbed by the other method.
            # The blocks are repeated over several rounds (the method order rotating), and each
            # speedup is the median over rounds of that round's ratio, so a burst of load from
            # another process on this shared machine lands in one round's pair, not in one method.
            def measure():
                per_round = {meth: [] for meth in methods}
                for rnd in range(rounds):
                    for meth in methods[rnd % len(methods):] + methods[:rnd % len(methods)]:
                        rot = rotations[meth]
                        per_round[meth].append(timeit(lambda i: call(meth, layer, x, xb, rot[i % len(rot)]),
                                                      budget * (3 if big else 1) / rounds,
                                                      max(1, min_reps // rounds), max_reps // rounds,
                                                      warmup=2 if rnd == 0 else 1))
                return per_round

            # The memory floor of a cold GEMV cell comes from read-bandwidth probes right before and
            # after it: on this shared machine the bandwidth a run gets swings by 1.5x over minutes
            # (other tenants), so a probe from the run's start can describe another machine.
            gemv = m == 1 and temp == "cold"
            probes = [read_bandwidth(threads, probe_s)] if gemv else []
            per_round, attempts = measure_undisturbed(measure, retries)
            probes += [read_bandwidth(threads, probe_s)] if gemv else []
            all_stats = {meth: merge_rounds(rs) for meth, rs in per_round.items()}
            paired = {meth: statistics.median(f["median_s"] / r["median_s"] for f, r in zip(per_round["fp32"], rs))
                      for meth, rs in per_round.items()}
            times = {meth: st["median_s"] for meth, st in all_stats.items()}
            for method, stats in all_stats.items():
                wbytes = layer.weight_bytes(method)
                macs = m * n * k
                row = {
                    "shape": shape_name, "k": k, "n": n, "m": m, "threads": threads, "weights": temp,
                    "method": method, **{key: v for key, v in stats.items() if key != "times_s"},
                    "weight_bytes": wbytes,
                    "weight_gbps": wbytes / stats["median_s"] / 1e9,
                    "gops": 2 * macs / stats["median_s"] / 1e9,
                }
                row["attempts"] = attempts
                row["cell_read_bandwidth_gbps"] = [round(b / 1e9, 2) for b in probes]
                rows.append(row)
                bar.update(1)
            for r in rows[-len(methods):]:
                r["speedup_vs_fp32"] = paired[r["method"]]
                r["ratio_of_medians_vs_fp32"] = times["fp32"] / r["median_s"]
        layer.drop_copies()
        del layer
    bar.close()
    # Bandwidth again at the end: a probe that ran while another process was busy would make
    # the floor too easy. The run's figure (the header, and the floor of a cell without its own
    # probes) is the best one, and never less than fewer threads got.
    for t in thread_counts:
        bandwidth[t] = max(bandwidth[t], read_bandwidth(t, 2 * probe_s))
    release_probe_buffer()
    for t in sorted(thread_counts):
        bandwidth[t] = max(bw for t2, bw in bandwidth.items() if t2 <= t)
    apply_floors(rows, bandwidth, int8_peak)
    return {
        "machine": machine,
        "mode": "smoke" if args.smoke else "quick" if args.quick else "full",
        "read_bandwidth_gbps": {str(t): bw / 1e9 for t, bw in bandwidth.items()},
        "int8_peak_gmacs": {str(t): p / 1e9 for t, p in int8_peak.items()},
        "int8_peak_source": peak_source,
        "llc_bytes": LLC_BYTES,
        "rounds": rounds,
        "retries": retries,
        "disturbed_core_share": DISTURBED_CORE_SHARE,
        "bf16": bf16_note or "measured",
        "rows": rows,
        "notes": "median of repeated calls after warm-up, pooled over rounds; p10/p90 = spread; speedup_vs_fp32 = "
                 "median over rounds of the per-round ratio of medians (ratio_of_medians_vs_fp32: of the pooled "
                 "medians); cold = weights rotated through >= 4x the LLC; floor = max(packed bytes / measured read "
                 "bandwidth, MACs / int8 peak).",
    }


# --------------------------------------------------------------------------- reports


def fmt_load(load) -> str:
    return "/".join(f"{v:.1f}" for v in load) if load else "n/a"


def fmt_time(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} µs"


def disturbance_summary(rows: list) -> str:
    cells = {(r["shape"], r["m"], r["threads"], r["weights"]): r.get("attempts") or [] for r in rows}
    retried = [c for c, a in cells.items() if len(a) > 1]
    still = [c for c, a in cells.items()
             if a and all(x["other_core_share"] is not None and x["other_core_share"] > DISTURBED_CORE_SHARE for x in a)]
    name = lambda c: f"{c[0]} M={c[1]} {c[2]}t {c[3]}"  # noqa: E731
    return (f"{len(retried)} of {len(cells)} cells were re-measured"
            + (f"; still disturbed in every attempt: {', '.join(map(name, still))}" if still else ""))


def markdown(res: dict) -> str:
    mach = res["machine"]
    out = [
        "# Float vs packed matmul (CPU)",
        "",
        f"Machine: {mach['cpu']}, {mach['cores']} cores, ISA `{mach['isa']}`, torch {mach['torch']}, "
        f"GPU: {mach['gpu'] or 'none'}. Mode: {res['mode']}. Load average (1/5/15 min) at start "
        f"{fmt_load(mach['load_average'])}, at end {fmt_load(res.get('load_average_at_end'))}: this machine is shared, "
        "so other processes may have taken CPU time during the run (medians are robust to short bursts; "
        "p10/p90 and the best call are in the JSON). A cell during which other processes used more than "
        f"{DISTURBED_CORE_SHARE:.0%} of a core is measured again (up to {res.get('retries', 0)} times; the "
        f"least-disturbed attempt is reported): {disturbance_summary(res['rows'])}.",
        "Read bandwidth (best of a probe at the start and one at the end of the run; each M = 1 cold cell's "
        "floor uses instead the better of two probes taken just before and just after it, listed in the JSON): "
        + ", ".join(f"{v:.1f} GB/s ({t} thread{'s' if t != '1' else ''})" for t, v in res["read_bandwidth_gbps"].items())
        + "; int8 peak: " + ", ".join(f"{v:.0f} GMAC/s ({t}t)" for t, v in res["int8_peak_gmacs"].items())
        + f" ({res['int8_peak_source']}).",
        "",
        f"bf16: {res['bf16']}.",
        "",
        f"Median time per call over {res.get('rounds', 1)} round(s) of back-to-back calls per method (p10-p90 "
        "spread and per-round medians in the JSON); speedup = the median over rounds of (fp32 time / method time) "
        "in the same round, same shape, M, threads and cold/hot; % floor = floor time / time (100% = at the "
        "hardware limit).",
        "",
    ]
    rows = res["rows"]
    for threads in sorted({r["threads"] for r in rows}, reverse=True):
        for temp in ("cold", "hot"):
            sel = [r for r in rows if r["threads"] == threads and r["weights"] == temp]
            if not sel:
                continue
            out += [f"## {temp} weights, {threads} thread{'s' if threads > 1 else ''}", ""]
            methods = [m for m in METHODS if any(r["method"] == m for r in sel)]
            out.append("| shape (K x N) | M | " + " | ".join(methods) + " |")
            out.append("|---|---:|" + "---:|" * len(methods))
            keys = sorted({(r["shape"], r["m"]) for r in sel}, key=lambda t: ([s[0] for s in SHAPES + [(t[0],)]].index(t[0]), t[1]))
            for shape, m in keys:
                cells = []
                for meth in methods:
                    r = next((r for r in sel if r["shape"] == shape and r["m"] == m and r["method"] == meth), None)
                    if r is None:
                        cells.append("")
                        continue
                    cell = fmt_time(r["median_s"])
                    if meth != "fp32":
                        cell += f" **{r['speedup_vs_fp32']:.1f}x**"
                    floor = f", {r['pct_of_floor']:.0f}% floor" if r["pct_of_floor"] is not None else ""
                    cell += f"<br>{r['weight_gbps']:.1f} GB/s{floor}" if m == 1 else f"<br>{r['gops']:.0f} GOP/s{floor}"
                    cells.append(cell)
                out.append(f"| {shape} | {m} | " + " | ".join(cells) + " |")
            out.append("")
    out += targets(res)
    # thread scaling
    t_all = sorted({r["threads"] for r in rows})
    if len(t_all) > 1:
        lo, hi = t_all[0], t_all[-1]
        out += [f"## Thread scaling ({lo} -> {hi} threads, cold weights)", "",
                "| shape | M | method | " + f"{lo}t | {hi}t | scaling |", "|---|---:|---|---:|---:|---:|"]
        for r1 in [r for r in rows if r["threads"] == lo and r["weights"] == "cold"]:
            r2 = next((r for r in rows if r["threads"] == hi and r["weights"] == "cold" and r["shape"] == r1["shape"]
                       and r["m"] == r1["m"] and r["method"] == r1["method"]), None)
            if r2:
                out.append(f"| {r1['shape']} | {r1['m']} | {r1['method']} | {fmt_time(r1['median_s'])} | "
                           f"{fmt_time(r2['median_s'])} | {r1['median_s'] / r2['median_s']:.2f}x |")
        out.append("")
    out += ["Methods: " + "; ".join(f"`{k}` = {v}" for k, v in LABELS.items()) + ".", ""]
    return "\n".join(out)


def targets(res: dict) -> list:
    """The acceptance figures of issue 3, computed from this run's rows."""
    rows = res["rows"]
    hi = max(r["threads"] for r in rows)

    def get(shape, m, method, threads=hi, temp="cold"):
        return next((r for r in rows if r["shape"] == shape and r["m"] == m and r["method"] == method
                     and r["threads"] == threads and r["weights"] == temp), None)

    out = [f"## Issue 3 targets ({hi} threads, cold weights; speedup as in the tables, ratio of best calls in brackets)", "",
           "| target | shape | M | measured | goal | met (median) |", "|---|---|---:|---:|---:|:---:|"]

    def speed(label, shape, m, method, goal):
        r, f = get(shape, m, method), get(shape, m, "fp32")
        if r and f:
            med, best = r["speedup_vs_fp32"], f["min_s"] / r["min_s"]
            out.append(f"| {label} | {shape} | {m} | {med:.1f}x ({best:.1f}x) | >= {goal}x | "
                       f"{'yes' if med >= goal else 'no'} |")

    for shape in [s[0] for s in SHAPES]:
        speed("ternary_linear (int8 act) vs fp32", shape, 1, "ternary_i8", 18)
        r = get(shape, 1, "ternary_i8")
        if r and r["pct_of_floor"] is not None:
            best = 100 * r["floor_s"] / r["min_s"]
            probes = "/".join(f"{b:.0f}" for b in r.get("cell_read_bandwidth_gbps") or [])
            out.append(f"| ternary_linear % of memory floor (cell probes {probes} GB/s; vs the run's best "
                       f"bandwidth: {r['pct_of_run_best_floor']:.0f}%) | {shape} | 1 | {r['pct_of_floor']:.0f}% ({best:.0f}%) | "
                       f">= 70% | {'yes' if r['pct_of_floor'] >= 70 else 'no'} |")
    for shape in [s[0] for s in SHAPES]:
        speed("ternary_linear (int8 act) vs fp32", shape, 512, "ternary_i8", 3)
    for shape in [s[0] for s in SHAPES]:
        speed("binary_linear(act_bits=1) vs fp32", shape, 1, "binary_b1", 25)
        speed("binary_linear(act_bits=1) vs fp32", shape, 512, "binary_b1", 5)
    for shape in [s[0] for s in SHAPES]:
        speed("ternary_linear (float act) vs fp32", shape, 1, "ternary_f32", 1)
    lo = min(r["threads"] for r in rows)
    if lo != hi:
        for shape in [s[0] for s in SHAPES]:
            for m in (1, max(r["m"] for r in rows)):
                a, b = get(shape, m, "ternary_i8", lo), get(shape, m, "ternary_i8", hi)
                if a and b:
                    out.append(f"| ternary_linear scaling {lo} -> {hi} threads | {shape} | {m} | "
                               f"{a['median_s'] / b['median_s']:.2f}x ({a['min_s'] / b['min_s']:.2f}x) | > 1x | "
                               f"{'yes' if a['median_s'] > b['median_s'] else 'no'} |")
    return out + [""]


def plots(res: dict, out_dir: Path) -> list:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the plots (pip install matplotlib)")
        return []
    rows = res["rows"]
    threads = max(r["threads"] for r in rows)
    temp = "cold" if any(r["weights"] == "cold" for r in rows) else "hot"
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    methods = [m for m in METHODS if m != "fp32" and any(r["method"] == m for r in rows)]
    files = []
    fig, axes = plt.subplots(1, len(shapes), figsize=(5 * len(shapes), 4), squeeze=False)
    for ax, shape in zip(axes[0], shapes):
        for meth in methods:
            sel = sorted((r for r in rows if r["shape"] == shape and r["method"] == meth and r["threads"] == threads
                          and r["weights"] == temp), key=lambda r: r["m"])
            ax.plot([r["m"] for r in sel], [r["speedup_vs_fp32"] for r in sel], marker="o", label=LABELS[meth])
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch M")
        ax.set_ylabel("speedup vs torch fp32")
        ax.set_title(f"{shape} (K x N), {temp}, {threads} threads")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "matmul_cpu_speedup.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(path)

    fig, axes = plt.subplots(1, len(shapes), figsize=(5 * len(shapes), 4), squeeze=False)
    m1 = min(r["m"] for r in rows)
    for ax, shape in zip(axes[0], shapes):
        sel = [r for r in rows if r["shape"] == shape and r["m"] == m1 and r["threads"] == threads and r["weights"] == temp]
        names = [r["method"] for r in sel]
        pos = range(len(sel))
        ax.bar([p - 0.2 for p in pos], [r["median_s"] * 1e6 for r in sel], 0.4, label="measured")
        ax.bar([p + 0.2 for p in pos], [(r["floor_s"] or float("nan")) * 1e6 for r in sel], 0.4,
               label="floor (cold: bytes / read BW)")
        ax.set_xticks(list(pos))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("µs per call")
        ax.set_title(f"{shape}, M={m1}, {temp}, {threads} threads")
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "matmul_cpu_floor.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(path)
    return files


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="about a minute: three shapes, M in {1, 32, 512}, cold")
    g.add_argument("--smoke", action="store_true", help="seconds: one tiny shape (for tests)")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write matmul_cpu.{json,md,png} (default: benchmarks/results for the full run, "
                        "benchmarks/results/quick or /smoke otherwise, so the committed full results stay)")
    p.add_argument("--threads", help="comma-separated thread counts (default: torch's, and 1 in the full run)")
    p.add_argument("--shapes", help="comma-separated shape names to run (e.g. 2560x6912; default: all)")
    p.add_argument("--batches", help="comma-separated M values to run (default: the mode's)")
    p.add_argument("--no-bf16", action="store_true", help="skip torch bf16")
    p.add_argument("--no-cuda", action="store_true", help="skip the GPU part even when a GPU and bitops' CUDA kernels are there")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = RESULTS / "quick" if args.quick else RESULTS / "smoke" if args.smoke else RESULTS
    if bitops.backend() not in ("cpu-avx512vnni", "cpu-avx2", "cpu-scalar"):
        print(f"warning: bitops runs on '{bitops.backend()}' (no native CPU kernels): packed timings are the oracle's")
    t0 = time.time()
    res = run(args)
    res["wall_s"] = time.time() - t0
    res["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "matmul_cpu.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    (args.out / "matmul_cpu.md").write_text(md)
    files = plots(res, args.out)
    print(md)
    print(f"wrote {args.out / 'matmul_cpu.json'}, {args.out / 'matmul_cpu.md'}"
          + "".join(f", {f}" for f in files) + f" in {res['wall_s']:.0f} s")
    if not args.no_cuda and torch.cuda.is_available() and bitops.backend("cuda") == "cuda":
        # The GPU comparison (packed vs bf16 cuBLAS, CUDA events and graphs) lives in its own script;
        # run it in a fresh process so its timings do not share this one's state.
        cmd = [sys.executable, str(Path(__file__).with_name("cuda_matmul.py")), "--out", str(args.out)]
        print("GPU found: running", " ".join(cmd + (["--quick"] if args.quick or args.smoke else [])), flush=True)
        return subprocess.call(cmd + (["--quick"] if args.quick or args.smoke else []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
