"""How fast can a cold M = 1 ternary GEMV read its weights here? (benchmark only)

    python benchmarks/gemv_read_patterns.py [--rounds 24] [--out benchmarks/results]

Compiles benchmarks/gemv_read_patterns.cpp with the library's VNNI GEMV (g++ or $CXX,
OpenMP, no torch) and runs it on all of torch's default threads for the two GEMV shapes of
matmul.py. Each round reads the same cold packed-weight buffers in several orders (loads
only), runs the library kernel on them, and reads a 512 MiB buffer front to back as
matmul.py's bandwidth probe does; the orders' bandwidths are compared within a round.
Writes gemv_read_patterns.{json,md}: the context for matmul.py's "% of the memory floor".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "csrc" / "kernels" / "cpu"
SHAPES = [("4096x4096", 4096, 4096), ("2560x6912", 2560, 6912)]  # (name, K, N) as in matmul.py
MEANING = {
    "stream_512MiB": "512 MiB read front to back, in halves (matmul.py's bandwidth probe)",
    "seq_halves": "the weights read front to back, in halves",
    "seq_tiles": "the same in 256-row tiles handed out dynamically (as the library splits N)",
    "rows4_tiles": "4 rows at a time, 32 bytes of each per step (4 interleaved streams), no prefetch",
    "rows4_tiles_pf": "the same plus a software prefetch of the next 4 rows: the kernel's loads",
    "rows4_contig_pf": "the loads of the same 4-row kernel on a layout storing each 4-row tile's blocks side by side "
                       "(front to back), same prefetch",
    "kernel": "the library's M = 1 kernel (vnni::ternary_gemv_codes), same tiles",
}


def build(out_dir: Path) -> Path:
    exe = out_dir / "gemv_read_patterns"
    sources = [ROOT / "benchmarks" / "gemv_read_patterns.cpp", KERNELS / "avx512_ternary_gemv.cpp",
               KERNELS / "avx512_vnni.cpp"]
    cmd = [os.environ.get("CXX", "g++"), "-O3", "-std=c++17", "-fopenmp", f"-I{ROOT / 'csrc'}",
           *map(str, sources), "-o", str(exe)]
    subprocess.run(cmd, check=True)
    return exe


def summarize(raw: dict) -> dict:
    names, rounds = raw["patterns"], raw["rounds_gbps"]
    col = {name: [r[i] for r in rounds] for i, name in enumerate(names)}
    stream = col["stream_512MiB"]
    fast = sorted(stream)[len(stream) * 3 // 4]  # the top quarter of the probe's rounds

    def share(name, of, sel):
        ratios = [a / b for a, b, s in zip(col[name], col[of], stream) if a is not None and sel(s)]
        return round(100 * statistics.median(ratios)) if ratios else None

    out = {"median_gbps": {n: (round(statistics.median(v), 1) if None not in v else None) for n, v in col.items()},
           "fast_round_threshold_gbps": fast}
    for n in names[1:]:
        out.setdefault("pct_of_stream", {})[n] = share(n, "stream_512MiB", lambda s: True)
        out.setdefault("pct_of_stream_fast_rounds", {})[n] = share(n, "stream_512MiB", lambda s: s >= fast)
    return out


def markdown(res: dict) -> str:
    lines = [
        f"# Cold M = 1 GEMV: the kernel's reads vs other read orders ({res['threads']} threads, same process)",
        "",
        f"Machine: {res['cpu']}. {res['rounds']} rounds per shape; each figure is the median over rounds of the "
        "round's median call. Loads only except `kernel`; the weights rotate through >= 128 MiB of copies "
        "(cold, as in matmul.py). \"% of stream\" is the median over rounds of the same round's ratio; "
        "\"fast rounds\" are the top quarter of rounds by the 512 MiB stream (this shared machine's bandwidth "
        "swings between minutes).",
        "",
        "| shape (K x N) | pattern | GB/s | % of stream | % of stream, fast rounds |",
        "|---|---|---:|---:|---:|",
    ]
    for case in res["cases"]:
        s = case["summary"]
        for name, gbps in s["median_gbps"].items():
            pct = s.get("pct_of_stream", {}).get(name)
            fast = s.get("pct_of_stream_fast_rounds", {}).get(name)
            lines.append(f"| {case['shape']} | `{name}` | {gbps if gbps is not None else 'n/a'} | "
                         f"{'' if pct is None else f'{pct}%'} | {'' if fast is None else f'{fast}%'} |")
        lines.append(f"| {case['shape']} | (fast rounds: stream >= {s['fast_round_threshold_gbps']:.1f} GB/s) | | | |")
    lines += ["", "Patterns:", ""] + [f"- `{k}`: {v}" for k, v in MEANING.items()] + ["", res["reading"], ""]
    return "\n".join(lines)


def reading(cases: list) -> str:
    """The figures of the first shape in words; a conclusion only where the rounds show it."""
    s = cases[0]["summary"]
    all_, fast = s["pct_of_stream"], s["pct_of_stream_fast_rounds"]

    def both(name):
        return f"{all_[name]}% / {fast[name]}%"

    text = (f"Reading ({cases[0]['shape']}, % of the long stream, all rounds / fast rounds): the weights front to "
            f"back {both('seq_tiles')}; four interleaved row streams {both('rows4_tiles')} without software "
            f"prefetch and {both('rows4_tiles_pf')} with the kernel's; the same loads on a contiguous-tile layout "
            f"{both('rows4_contig_pf')}")
    if all_["kernel"] is None:
        return text + "; no AVX-512 VNNI here, so no kernel column."
    text += f"; the kernel {both('kernel')}."
    if fast["seq_tiles"] - fast["kernel"] >= 15:
        text += (" In the fast rounds only loads that run front to back with nothing else to do (the hardware "
                 "prefetcher then keeps far more lines in flight than software prefetch can) come near the stream; "
                 "the kernel keeps up with its own load order.")
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=24)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch  # noqa: E402  (only for the default thread count, as the library uses)
    from matmul import cpu_model  # noqa: E402

    threads = torch.get_num_threads()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(Path(tmp))
        raws = {name: None for name, _, _ in SHAPES}
        for _ in range(2):  # two passes, so each shape sees more than one stretch of minutes
            for name, k, n in SHAPES:
                out = subprocess.run([str(exe), str(n), str(k), str(args.rounds // 2)], check=True,
                                     capture_output=True, text=True, env=env).stdout
                raw = json.loads(out)
                if raws[name] is None:
                    raws[name] = raw
                else:
                    raws[name]["rounds_gbps"] += raw["rounds_gbps"]
    cases = [{"shape": name, "k": k, "n": n, "rounds_gbps": raws[name]["rounds_gbps"],
              "summary": summarize(raws[name])} for name, k, n in SHAPES]
    res = {"cpu": cpu_model(), "threads": threads, "rounds": args.rounds, "patterns": MEANING, "cases": cases,
           "load_average": [round(v, 2) for v in os.getloadavg()]}
    res["reading"] = reading(cases)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gemv_read_patterns.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    (args.out / "gemv_read_patterns.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
