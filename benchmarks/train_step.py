"""A layer's training step: bitops BitLinear (exact and int8 backward) against nn.Linear.

One step = forward, backward (grad of x, the weight and, for nn.Linear, nothing else: no bias, as
in BitNet) and an AdamW step, on the CPU at the machine's threads. Shapes: the 2B4T projections
(q/o 2560x2560, k/v 2560->640, gate/up 2560->6912, down 6912->2560) and 4096x4096, for
M = 512 and 2048 rows, in float32 and bfloat16 (module and input cast alike). Variants run
interleaved, a round at a time, in one process; the figure is the median over rounds.

    python benchmarks/train_step.py            # the full grid; results in benchmarks/results/
    python benchmarks/train_step.py --quick    # a CI-sized smoke run (small shapes)

Also reported, per float32 shape: the time of each of nn.Linear's three GEMMs and of the optimizer
alone, which bound what the exact backward can gain: it runs the same two float32 GEMMs as
nn.Linear's backward (the straight-through gradient in float32), so its step is at least those
plus the optimizer plus its own forward. And one profile split of a BitLinear step per mode.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bitops  # noqa: E402
from bitops.nn import BitLinear  # noqa: E402
from matmul import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = [("q/o", 2560, 2560), ("k/v", 2560, 640), ("gate/up", 2560, 6912), ("down", 6912, 2560),
          ("4096x4096", 4096, 4096)]
QUICK_SHAPES = [("small", 256, 384), ("odd", 130, 70)]
VARIANTS = ("nn.Linear", "exact", "int8")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def make_layer(variant: str, k: int, n: int, dtype: torch.dtype, seed: int):
    torch.manual_seed(seed)
    if variant == "nn.Linear":
        layer = nn.Linear(k, n, bias=False)
    else:
        layer = BitLinear(k, n, bias=False, backward=variant)
    layer = layer.to(dtype)
    return layer, torch.optim.AdamW(layer.parameters(), lr=1e-4)


class Case:
    """One variant at one shape: the layer, its optimizer and its own input (x needs grad,
    as inside a network)."""

    def __init__(self, variant, k, n, m, dtype, seed=0):
        self.layer, self.opt = make_layer(variant, k, n, dtype, seed)
        g = torch.Generator().manual_seed(seed + 1)
        self.x = torch.randn(m, k, generator=g).to(dtype).requires_grad_()
        self.grad_y = torch.randn(m, n, generator=g).to(dtype)

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        self.x.grad = None
        self.layer(self.x).backward(self.grad_y)
        self.opt.step()


def time_rounds(cases: dict, rounds: int, steps: int) -> dict:
    """{variant: per-round median step seconds}, variants interleaved round by round."""
    for case in cases.values():
        case.step()  # warm up: allocations, packing, the first call
    per_round = {v: [] for v in cases}
    for _ in range(rounds):
        for v, case in cases.items():
            times = []
            for _ in range(steps):
                t0 = time.perf_counter()
                case.step()
                times.append(time.perf_counter() - t0)
            per_round[v].append(statistics.median(times))
    return per_round


def median_time(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bound_parts(k: int, n: int, m: int, reps: int) -> dict:
    """nn.Linear's three float32 GEMMs and the optimizer step alone, and BitLinear's forward."""
    g = torch.Generator().manual_seed(7)
    x, w, gy = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(m, n, generator=g)
    p = nn.Parameter(torch.randn(n, k, generator=g))
    p.grad = torch.randn(n, k, generator=g)
    opt = torch.optim.AdamW([p], lr=1e-4)
    layer = BitLinear(k, n, bias=False)
    parts = {
        "forward_gemm_s": median_time(lambda: x @ w.T, reps),
        "grad_x_gemm_s": median_time(lambda: gy @ w, reps),
        "grad_w_gemm_s": median_time(lambda: gy.T @ x, reps),
        "adamw_s": median_time(opt.step, reps),
        "bitlinear_forward_s": median_time(lambda: layer(x), reps),
    }
    parts["sgemm_gflops"] = 2 * m * n * k / parts["grad_x_gemm_s"] / 1e9
    return parts


PROFILE_GROUPS = [  # (label, op name predicate), first match wins; self CPU times
    ("float32 GEMMs (torch)", lambda s: s in ("aten::mm", "aten::addmm_", "aten::addmm")),
    ("forward kernel (norm, int8 quantize, GEMM)", lambda s: s.endswith("linear_i8_and_act")),
    ("int8 grad_x kernel", lambda s: s == "bitops::ternary_linear_i8"),
    ("weight quantize + pack", lambda s: "quantize_pack" in s or s in ("aten::abs", "aten::mean", "aten::sum")),
    ("decode W for grad_x", lambda s: "dequantize" in s),
    ("optimizer", lambda s: "adamw" in s.lower() or s.startswith("aten::_foreach") or s in (
        "aten::lerp_", "aten::addcdiv_", "aten::addcmul_", "aten::sqrt", "aten::mul_", "aten::add_", "aten::div_")),
]


def profile_split(variant: str, k: int, n: int, m: int, steps: int = 3) -> dict:
    from torch.profiler import profile

    case = Case(variant, k, n, m, torch.float32)
    case.step()
    t0 = time.perf_counter()
    with profile() as prof:
        for _ in range(steps):
            case.step()
    wall = (time.perf_counter() - t0) / steps
    split = {label: 0.0 for label, _ in PROFILE_GROUPS}
    for ev in prof.key_averages():
        for label, match in PROFILE_GROUPS:
            if match(ev.key):
                split[label] += ev.self_cpu_time_total / 1e6 / steps
                break
    split["rest (autograd, Python, copies)"] = max(0.0, wall - sum(split.values()))
    return {"wall_s": wall, "split_s": split}


def run(args) -> dict:
    shapes = QUICK_SHAPES if args.quick else SHAPES
    ms = [64, 33] if args.quick else [512, 2048]
    dtypes = ["fp32", "bf16"]
    rows = []
    for name, k, n in shapes:
        for m in ms:
            for dname in dtypes:
                cases = {v: Case(v, k, n, m, DTYPES[dname]) for v in VARIANTS}
                per_round = time_rounds(cases, args.rounds, args.steps)
                del cases
                med = {v: statistics.median(t) for v, t in per_round.items()}
                row = {"shape": name, "k": k, "n": n, "m": m, "dtype": dname,
                       "step_s": med, "round_medians_s": per_round,
                       "speedup_exact": med["nn.Linear"] / med["exact"], "speedup_int8": med["nn.Linear"] / med["int8"]}
                if dname == "fp32":
                    parts = bound_parts(k, n, m, args.reps)
                    row["parts"] = parts
                    floor = parts["grad_x_gemm_s"] + parts["grad_w_gemm_s"] + parts["adamw_s"] + parts["bitlinear_forward_s"]
                    row["exact_floor_s"] = floor
                    row["exact_best_speedup"] = med["nn.Linear"] / floor
                rows.append(row)
                print(f"{name:10s} K={k:5d} N={n:5d} M={m:5d} {dname}: nn.Linear {1e3 * med['nn.Linear']:8.1f} ms, "
                      f"exact {1e3 * med['exact']:8.1f} ms ({row['speedup_exact']:.2f}x), "
                      f"int8 {1e3 * med['int8']:8.1f} ms ({row['speedup_int8']:.2f}x)", flush=True)
    name, k, n = shapes[-1] if not args.quick else shapes[0]
    profiles = {v: profile_split(v, k, n, ms[0]) for v in ("exact", "int8")}
    return {"machine": machine_info(), "quick": args.quick, "rounds": args.rounds, "steps_per_round": args.steps,
            "rows": rows, "profile": {"shape": name, "k": k, "n": n, "m": ms[0], **profiles}}


def markdown(res: dict) -> str:
    mach = res["machine"]
    lines = [
        "# Training step on the CPU: BitLinear vs nn.Linear",
        "",
        f"Machine: {mach['cpu']}, kernels `{mach['isa']}`, {mach['torch_threads']} threads, torch {mach['torch']}. "
        f"One step = forward + backward (x and the weight) + AdamW, no bias; median over {res['rounds']} "
        f"interleaved rounds of {res['steps_per_round']} steps each, all variants in one process. "
        "`exact`: the straight-through gradient in float32 (the default); `int8`: `backward=\"int8\"` "
        "(grad_x on the int8 kernels from int8 grad_y; grad_W exact).",
        "",
        "| layer | K -> N | M | dtype | nn.Linear ms | exact ms | int8 ms | exact speedup | int8 speedup | exact bound |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        s = r["step_s"]
        bound = f"{r['exact_best_speedup']:.2f}x" if "exact_best_speedup" in r else ""
        lines.append(f"| {r['shape']} | {r['k']} -> {r['n']} | {r['m']} | {r['dtype']} | {1e3 * s['nn.Linear']:.1f} | "
                     f"{1e3 * s['exact']:.1f} | {1e3 * s['int8']:.1f} | {r['speedup_exact']:.2f}x | "
                     f"{r['speedup_int8']:.2f}x | {bound} |")
    fp32 = [r for r in res["rows"] if r["dtype"] == "fp32"]
    if fp32:
        rate = statistics.median(r["parts"]["sgemm_gflops"] for r in fp32)
        lines += [
            "",
            f"**Exact bound**: nn.Linear's step over (its own grad_x and grad_W GEMMs + the AdamW step + "
            f"BitLinear's forward), each timed alone in the same run: the exact backward runs those same two "
            f"float32 GEMMs, so this is the most it can gain if everything else it does were free. torch's "
            f"float32 GEMM measured {rate:.0f} GFLOP/s (median over the shapes).",
        ]
    prof = res["profile"]
    lines += ["", f"Where a BitLinear float32 step goes ({prof['shape']}, K={prof['k']}, N={prof['n']}, "
              f"M={prof['m']}; torch.profiler self times, ms per step):", "",
              "| part | exact | int8 |", "|---|---:|---:|"]
    for label in prof["exact"]["split_s"]:
        lines.append(f"| {label} | {1e3 * prof['exact']['split_s'][label]:.1f} | {1e3 * prof['int8']['split_s'][label]:.1f} |")
    lines.append(f"| **step (profiled)** | {1e3 * prof['exact']['wall_s']:.1f} | {1e3 * prof['int8']['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return False
    rows = res["rows"]
    labels = [f"{r['shape']}\nM={r['m']} {r['dtype']}" for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows)), 4))
    width = 0.4
    ax.bar([x - width / 2 for x in xs], [r["speedup_exact"] for r in rows], width, label="exact backward")
    ax.bar([x + width / 2 for x in xs], [r["speedup_int8"] for r in rows], width, label="int8 backward")
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=6)
    ax.set_ylabel("step speedup vs nn.Linear")
    ax.set_title(f"BitLinear training step, {res['machine']['isa']}, {res['machine']['torch_threads']} threads")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small shapes, one round (CI)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="steps per variant per round")
    parser.add_argument("--reps", type=int, default=None, help="repetitions of each part timed alone")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--rerender", metavar="JSON", help="write the markdown and plot again from a saved run")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.steps = args.steps or (1 if args.quick else 2)
    args.reps = args.reps or (2 if args.quick else 5)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "train_step_cpu_quick" if args.quick else "train_step_cpu"
    if args.rerender:
        res = json.loads(Path(args.rerender).read_text())
    else:
        res = run(args)
        (out / f"{stem}.json").write_text(json.dumps(res, indent=1))
    (out / f"{stem}.md").write_text(markdown(res))
    plot(res, out / f"{stem}.png")
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
