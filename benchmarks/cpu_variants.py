"""Compare the AVX2 ternary x int8 approaches of DESIGN.md section 7 (benchmark only).

    python benchmarks/cpu_variants.py [--out benchmarks/results]

Compiles benchmarks/cpu_variants.cpp with the library's kernel sources (g++ or $CXX, no
torch involved), runs it on one thread for hot and cold weights, M = 1 (GEMV) and M = 64
(GEMM), and writes cpu_variants.json and cpu_variants.md. Times are the thread's CPU time
(the machine is shared: time slices lost to other processes do not count), best of 30
calls (5 or 3 for the slow GEMM variants): other processes only ever slow a call down.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "csrc" / "kernels" / "cpu"

DESCRIPTIONS = {
    "maddubs": "library's AVX2 set: vpmaddubsw on offset codes (w+1) x int8, minus sum(x) once per row "
               "(GEMV: decode on the fly, 4 rows, software prefetch; M >= 8: each weight panel decoded once, "
               "2x6 register-blocked u8 x s8 GEMM, x held in registers)",
    "sign": "true add/sub: w = code-1, vpsignb(w, x), vpmaddubsw with |x| (|x| precomputed; -128 safe); "
            "one weight row at a time",
    "lut": "T-MAC-style lookup: per activation pair, the 9 sums (a-1)x0 + (b-1)x1 as int16 split into two "
           "vpshufb byte tables; 32 output rows per shuffle, so it needs its own row-interleaved layout; "
           "tables rebuilt per row of x",
    "vnni": "AVX-512 VNNI set (the library's default on a CPU that has it): M = 1, the ternary GEMV that masks "
            "each run's 2-bit code in place (4 AND + 4 vpdpbusd per 128 weights into 4 accumulators per row, no "
            "decode shifts, 4 rows, software prefetch); M >= 8: each weight panel decoded once, 4x3 zmm vpdpbusd GEMM",
}


def build(out_dir: Path) -> Path:
    exe = out_dir / "cpu_variants"
    sources = [ROOT / "benchmarks" / "cpu_variants.cpp", *sorted(KERNELS.glob("*.cpp"))]
    cmd = [os.environ.get("CXX", "g++"), "-O3", "-std=c++17", "-ffp-contract=off", "-fno-math-errno",
           f"-I{ROOT / 'csrc'}", *map(str, sources), "-o", str(exe)]
    subprocess.run(cmd, check=True)
    return exe


def run(exe: Path, n: int, k: int, layers: int, m_gemm: int) -> dict:
    out = subprocess.run([str(exe), str(n), str(k), str(layers), str(m_gemm)], check=True, capture_output=True,
                         text=True).stdout
    if "MISMATCH" in out:
        raise SystemExit(f"a variant disagrees with the portable kernel:\n{out}")
    return json.loads(out)


def conclusion(cases: list) -> str:
    def us(case, m, v):
        return next(r["us"] for r in case["results"] if r["m"] == m and r["variant"] == v)

    def ratio(case, m, v):  # time of v / time of maddubs: < 1 means v is faster
        return us(case, m, v) / us(case, m, "maddubs")

    hot, cold = cases[0], cases[1]  # 4096 x 4096
    g = max(r["m"] for r in hot["results"])
    text = (
        f"Kept in the library for AVX2 CPUs: `maddubs`. At M = {g} `lut` takes {ratio(hot, g, 'lut'):.2f}x and "
        f"`sign` {ratio(hot, g, 'sign'):.2f}x the time of `maddubs` (one vpmaddubsw + one vpaddw per 32 MACs once "
        "the decode is amortised; `sign` needs one more instruction, vpsignb). At M = 1 `lut` takes "
        f"{ratio(hot, 1, 'lut'):.2f}x the time of `maddubs` with hot weights (it has the fewest instructions per "
        f"weight; runs vary) and {ratio(cold, 1, 'lut'):.2f}x with cold weights (the real case: a model's layers "
        "stream from memory). `lut` also needs a row-interleaved layout of its own (a second format, converted "
        "once by the module) and rebuilds its tables for every row of x, so it is not worth a second layout here."
    )
    if any(r["variant"] == "vnni" for r in hot["results"]):
        text += (
            f" Kept for CPUs with AVX-512 VNNI (the default here): `vnni`. It takes {ratio(hot, 1, 'vnni'):.2f}x the "
            f"time of `maddubs` at M = 1 hot, {ratio(cold, 1, 'vnni'):.2f}x cold (no decode shifts, and vpdpbusd "
            f"adds straight into int32), and {ratio(hot, g, 'vnni'):.2f}x at M = {g}."
        )
    return text


def markdown(res: dict) -> str:
    lines = [
        "# CPU ternary x int8 kernels compared (one thread, CPU time, best of repeated calls)",
        "",
        f"Machine: {res['cpu']}; core clock measured {res['clock_ghz']:.2f} GHz; vpmaddubsw issue rate "
        f"{res['maddubs_per_cycle']:.2f}/cycle = int8 peak {res['int8_peak_gmacs_per_core']:.0f} GMAC/s per core"
        + (f"; AVX-512 VNNI (vpdpbusd zmm) peak {res['vnni_peak_gmacs_per_core']:.0f} GMAC/s per core"
           if res.get("vnni_peak_gmacs_per_core") else "") + ". "
        f"Load average during the run: {res['load_average']}.",
        "",
        "| shape (N x K) | weights | M | " + " | ".join(DESCRIPTIONS) + " |",
        "|---|---|---:|" + "---:|" * len(DESCRIPTIONS),
    ]
    for case in res["cases"]:
        for m in sorted({r["m"] for r in case["results"]}):
            cells = []
            for v in DESCRIPTIONS:
                r = next((r for r in case["results"] if r["m"] == m and r["variant"] == v), None)
                cells.append(f"{r['us']:.0f} µs ({r['gmacs']:.0f} GMAC/s)" if r else "n/a (no VNNI)")
            lines.append(f"| {case['n']}x{case['k']} | {case['weights']} | {m} | " + " | ".join(cells) + " |")
    lines += ["", "Variants:", ""] + [f"- `{k}`: {v}" for k, v in DESCRIPTIONS.items()]
    lines += ["", res["conclusion"], ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(Path(tmp))
        cases = []
        for n, k in [(4096, 4096), (6912, 2560)]:
            for weights, layers in [("hot", 1), ("cold", 40)]:
                r = run(exe, n, k, layers, 64)
                cases.append({"n": n, "k": k, "weights": weights, "results": r["results"]})
                head = r
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from matmul import cpu_model  # noqa: E402

    res = {
        "cpu": cpu_model(),
        "clock_ghz": head["clock_ghz"],
        "maddubs_per_cycle": head["maddubs_per_cycle"],
        "int8_peak_gmacs_per_core": head["int8_peak_gmacs_per_core"],
        "vnni_peak_gmacs_per_core": head["vnni_peak_gmacs_per_core"],
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "cases": cases,
        "conclusion": conclusion(cases),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_variants.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    (args.out / "cpu_variants.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
