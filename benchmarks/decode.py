"""A BitNet model end to end on the CPU: decode and prefill, bitops vs transformers vs dense.

    python benchmarks/decode.py            # the 2B4T shape (about 6 minutes on 2 cores)
    python benchmarks/decode.py --quick    # CI-sized smoke run (a small model, seconds)

Builds a transformers ``BitNetForCausalLM`` of the ``microsoft/bitnet-b1.58-2B-4T`` shape in the
checkpoint's own format (offline-packed BitLinear layers, bf16 embeddings tied with the head) with
seeded random weights (benchmarks/bitnet_model.py; no downloads), then measures at the machine's
threads, in one process:

* ``bitops.hf.convert``: its time and the peak RSS while it runs;
* decode: per-token latency, the median over >= 64 greedy tokens after a prompt of 32, for bitops
  with the head as stored (bf16) and with the int8 head, in interleaved rounds;
* prefill of 128 and 512 tokens, the logits of the last position only (as ``generate`` needs),
  and "before": every position's logits (a plain ``model(ids)``) without the AMX panels;
* transformers' own BitLinear path (a few tokens: it unpacks every weight on every call), and
  the dense bf16 ``nn.Linear`` model of the same architecture;
* the per-token memory floor: the bytes a decoded token reads as stored (every linear weight and
  scale, the norms, one embedding row) over the read bandwidth probed in the same run
  (matmul.py's probe), and each variant's % of it;
* where a bitops token's time goes: the packed linear layers, the head, attention, the norms that
  stay outside the kernels, and the rest (transformers' Python, rotary embedding, residuals);
* the same decode with a StaticCache and ``torch.compile(model.forward)`` (one graph per head;
  its compile time is reported);
* thread placement: bitops decode in child processes without and with
  ``OMP_PROC_BIND=close OMP_PLACES=cores``.

Writes benchmarks/results/decode_cpu.{json,md,png} (decode_quick.* with --quick).
``--llama-bench PATH --gguf PATH`` adds a row from llama.cpp's / bitnet.cpp's llama-bench.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import bitops  # noqa: E402
from bitnet_model import BITNET_2B4T, BITNET_QUICK, build, stored_bytes  # noqa: E402
from matmul import machine_info, read_bandwidth, release_probe_buffer  # noqa: E402

from bitops._native import cpu_tuning  # noqa: E402

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


# --------------------------------------------------------------------------- memory


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def peak_rss(record: dict):
    """Samples the RSS every 2 ms while the block runs: record['start'], record['peak']."""
    record["start"] = record["peak"] = rss_bytes()
    done = threading.Event()

    def sample():
        while not done.wait(0.002):
            record["peak"] = max(record["peak"], rss_bytes())

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield record
    finally:
        done.set()
        t.join()
        record["peak"] = max(record["peak"], rss_bytes())


# --------------------------------------------------------------------------- bytes a token reads


def bytes_per_token(model) -> int:
    """What one decoded token reads as stored: every parameter and buffer once, except the input
    embedding, of which one row (a tied head reads the whole matrix, counted once as the head)."""
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    total, seen = 0, set()
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    head_reads_emb = getattr(head, "weight", None) is not None and head.weight.data_ptr() == emb.data_ptr()
    if not head_reads_emb:  # the embedding is only looked up
        total -= emb.numel() * emb.element_size() - emb.shape[1] * emb.element_size()
    rotary = [b for n, b in model.named_buffers() if "inv_freq" in n]
    return total - sum(b.numel() * b.element_size() for b in rotary)


# --------------------------------------------------------------------------- running the model


def new_cache(model):
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def prompt_ids(model, n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, model.config.vocab_size, (1, n), generator=torch.Generator().manual_seed(seed))


# A StaticCache as long as the run needs (prompt + decoded tokens), one length for every compiled
# run so its graph is reused: its attention runs over every slot, masked, so a longer cache costs
# per token (256 slots took ~0.66 ms per SDPA call here against 0.11 ms for the dynamic cache).


class CompiledDecode:
    """``torch.compile(model.forward)`` over a StaticCache (fixed shapes: one graph per head)."""

    def __init__(self, model, max_cache_len: int):
        from transformers import StaticCache

        self.forward = torch.compile(model.forward, dynamic=False)
        self.cache_len = max_cache_len
        self.cache = StaticCache(config=model.config, max_cache_len=max_cache_len)


def decode_steps(model, prompt: torch.Tensor, tokens: int, compiled: CompiledDecode | None = None) -> tuple[list, list]:
    """Greedy decode after ``prompt``: (per-token seconds, token ids). The prompt runs eagerly;
    with ``compiled`` the tokens run through its compiled forward and StaticCache."""
    times, ids = [], []
    with torch.inference_mode():
        if compiled is None:
            cache = new_cache(model)
        else:
            cache = compiled.cache
            cache.reset()
            assert prompt.shape[1] + tokens <= compiled.cache_len
        out = model(input_ids=prompt, cache=cache, use_cache=True, logits_to_keep=1)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        for i in range(tokens):
            t0 = time.perf_counter()
            if compiled is None:
                out = model(input_ids=nxt, cache=cache, use_cache=True, logits_to_keep=1)
            else:
                pos = torch.tensor([prompt.shape[1] + i])
                out = compiled.forward(input_ids=nxt, cache=cache, use_cache=True, logits_to_keep=1, cache_position=pos)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            times.append(time.perf_counter() - t0)
            ids.append(int(nxt))
    return times, ids


def prefill_s(model, ids: torch.Tensor, last_only: bool = True) -> float:
    with torch.inference_mode():
        t0 = time.perf_counter()
        model(input_ids=ids, use_cache=True, logits_to_keep=1 if last_only else 0)
        return time.perf_counter() - t0


def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()


# --------------------------------------------------------------------------- where the time goes


class Split:
    """Exclusive wall time per category of module (wrapped forwards), over the steps run inside."""

    def __init__(self, model):
        from transformers.models.bitnet import modeling_bitnet as mb

        self.totals: dict[str, float] = {}
        self.stack: list[list] = []
        self.restore = []
        head = model.get_output_embeddings()
        for module in model.modules():
            if module is head:
                cat = "head"
            elif isinstance(module, bitops.nn.PackedBitLinear):
                cat = "packed linear layers"
            elif isinstance(module, mb.BitNetRMSNorm):
                cat = "norms outside the kernels"
            elif isinstance(module, mb.BitNetAttention):
                cat = "attention (rotary, KV cache, SDPA)"
            else:
                continue
            self._wrap(module, cat)

    def _wrap(self, module, cat):
        inner = module.forward

        def timed(*args, **kwargs):
            frame = [0.0]
            self.stack.append(frame)
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                self.stack.pop()
                self.totals[cat] = self.totals.get(cat, 0.0) + dt - frame[0]
                if self.stack:
                    self.stack[-1][0] += dt

        module.forward = timed
        self.restore.append(module)

    def remove(self):
        for module in self.restore:
            del module.forward  # back to the class's forward


def profile_split(model, prompt, tokens: int) -> dict:
    split = Split(model)
    try:
        t0 = time.perf_counter()
        decode_steps(model, prompt, tokens)
        wall = time.perf_counter() - t0
    finally:
        split.remove()
    # decode_steps also ran the prompt once: measure it alone and take it off
    split2 = Split(model)
    try:
        t0 = time.perf_counter()
        decode_steps(model, prompt, 0)
        wall0 = time.perf_counter() - t0
    finally:
        split2.remove()
    per_token = (wall - wall0) / tokens
    shares = {c: (split.totals.get(c, 0.0) - split2.totals.get(c, 0.0)) / tokens for c in split.totals}
    shares["the rest (transformers' Python, embedding, rotary, residuals, MLP activation)"] = \
        per_token - sum(shares.values())
    return {"per_token_s": per_token, "split_s": shares}


# --------------------------------------------------------------------------- variants


def median(xs):
    return statistics.median(xs) if xs else None


TORCH_HEAD = "bitops, bf16 head on torch's nn.Linear"


def measure_decode_interleaved(model, variants: dict, prompt, tokens: int, rounds: int) -> dict:
    """Decode with each (head, compiled) variant in turn, ``rounds`` times; all per-token times."""
    per = {name: [] for name in variants}
    tokens_seen = {}
    for _ in range(rounds):
        for name, (head, compiled) in variants.items():
            model.set_output_embeddings(head)
            times, ids = decode_steps(model, prompt, tokens, compiled)
            per[name].append(times)
            tokens_seen[name] = ids
    return {"rounds": per, "tokens": tokens_seen}


def measure_prefill(model, heads: dict, lengths, rounds: int, before_head: str) -> dict:
    """Prefill seconds per (variant, length): the medians over interleaved rounds."""
    out: dict = {}
    for _ in range(rounds):
        for p in lengths:
            ids = prompt_ids(model, p, seed=p)
            for name, head in heads.items():
                model.set_output_embeddings(head)
                out.setdefault(name, {}).setdefault(p, []).append(prefill_s(model, ids))
            model.set_output_embeddings(heads[before_head])
            with cpu_tuning(amx=False):  # bitops before this change: VNNI panels, every position's logits
                out.setdefault("before", {}).setdefault(p, []).append(prefill_s(model, ids, last_only=False))
    return {name: {p: median(v) for p, v in d.items()} for name, d in out.items()}


def gemm_check(model, m: int, rounds: int) -> dict:
    """One packed FFN layer at M rows alone (matmul.py's measurement) vs inside the prefill."""
    ffn = model.config.intermediate_size  # gate/up: one layer of 2 x FFN rows when convert fused them
    layer = next(mod for mod in model.modules() if isinstance(mod, bitops.nn.PackedBitLinear)
                 and mod.out_features in (ffn, 2 * ffn) and mod.in_features == model.config.hidden_size)
    x = torch.randn(1, m, layer.in_features, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    times = []
    with torch.inference_mode():
        layer(x)
        for _ in range(rounds):
            t0 = time.perf_counter()
            layer(x)
            times.append(time.perf_counter() - t0)
    t = median(times)
    return {"m": m, "n": layer.out_features, "k": layer.in_features, "s": t,
            "gops": 2 * m * layer.out_features * layer.in_features / t / 1e9}


def prefill_split(model, m: int) -> dict:
    split = Split(model)
    ids = prompt_ids(model, m, seed=m)
    try:
        wall = prefill_s(model, ids)
    finally:
        split.remove()
    linear = split.totals.get("packed linear layers", 0.0)
    cfg = model.config
    h, f, kv = cfg.hidden_size, cfg.intermediate_size, cfg.hidden_size * cfg.num_key_value_heads // cfg.num_attention_heads
    macs = m * cfg.num_hidden_layers * (h * h * 2 + 2 * h * kv + 3 * h * f)
    return {"wall_s": wall, "packed_linear_s": linear, "packed_linear_gops": 2 * macs / linear / 1e9 if linear else None}


def llama_bench_row(args) -> dict | None:
    if not (args.llama_bench and args.gguf):
        return None
    cmd = [args.llama_bench, "-m", args.gguf, "-t", str(args.threads), "-p", "512", "-n", "64", "-o", "json"]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=True)
        rows = json.loads(run.stdout)
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError) as exc:
        return {"error": str(exc)}
    out = {"command": " ".join(cmd)}
    for r in rows:
        key = "prefill_tokens_per_s" if r.get("n_prompt") else "tokens_per_s"
        out[key] = r.get("avg_ts")
    return out


# --------------------------------------------------------------------------- the child (thread placement)


def child(args) -> int:
    torch.set_num_threads(args.threads)
    model = bitops.hf.convert(build(args.shape))
    prompt = prompt_ids(model, args.prompt)
    decode_steps(model, prompt, 4)
    times, _ = decode_steps(model, prompt, args.tokens)
    print(json.dumps({"median_s": median(times)}))
    return 0


def placement_check(args) -> dict:
    out = {}
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_PROC_BIND", "OMP_PLACES")}
    envs = {"unpinned": base, "pinned": {**base, "OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}}
    for _ in range(args.placement_rounds):
        for name, env in envs.items():
            cmd = [sys.executable, __file__, "--child", "--threads", str(args.threads), "--tokens", str(args.tokens),
                   "--prompt", str(args.prompt)] + (["--quick"] if args.quick else [])
            run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
            if run.returncode != 0:
                raise RuntimeError(f"decode child ({name}) failed:\n{run.stderr[-3000:]}")
            out.setdefault(name, []).append(json.loads(run.stdout.strip().splitlines()[-1])["median_s"])
    res = {name: median(v) for name, v in out.items()}
    res["unpinned_over_pinned"] = res["unpinned"] / res["pinned"]
    res["rounds"] = out
    return res


# --------------------------------------------------------------------------- the run


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    info = machine_info()
    result: dict = {"machine": info, "threads": args.threads, "mode": "quick" if args.quick else "full",
                    "shape": {k: v for k, v in args.shape.items() if k != "rope_parameters"},
                    "torch": torch.__version__, "bitops_backend": bitops.backend()}
    import transformers

    result["transformers_version"] = transformers.__version__

    rec: dict = {}
    with peak_rss(rec):
        t0 = time.perf_counter()
        model = build(args.shape, seed=0)
        build_s = time.perf_counter() - t0
    stored = stored_bytes(model)
    result["model"] = {"stored_bytes": stored, "build_s": build_s, "rss_after_build": rss_bytes()}

    # transformers' own path first (convert works in place)
    prompt = prompt_ids(model, args.prompt)
    if args.hf_tokens:
        hf_prompt = prompt[:, : args.hf_prompt]
        times, _ = decode_steps(model, hf_prompt, args.hf_tokens)
        result["transformers"] = {"decode_s": times, "prompt": args.hf_prompt,
                                  "tokens_per_s": 1 / median(times), "bytes_per_token": bytes_per_token(model)}
        with torch.inference_mode():
            ref_logits = logits_of(model, prompt[:, :16])
    gc.collect()

    rec = {}
    with peak_rss(rec):
        t0 = time.perf_counter()
        bitops.hf.convert(model)
        convert_s = time.perf_counter() - t0
    result["convert"] = {"s": convert_s, "rss_start": rec["start"], "rss_peak": rec["peak"],
                         "peak_minus_stored": rec["peak"] - stored, "stored_bytes_after": stored_bytes(model)}
    if args.hf_tokens:
        got = logits_of(model, prompt[:, :16])
        result["convert"]["cosine_vs_transformers_bf16"] = float(
            torch.nn.functional.cosine_similarity(got, ref_logits, dim=0))

    bf16_head = model.get_output_embeddings()  # bitops.nn.Bf16Linear: the streaming GEMV
    int8_head = bitops.nn.Int8Linear.from_linear(bf16_head)
    torch_head = torch.nn.Linear(bf16_head.in_features, bf16_head.out_features, bias=False, device="meta")
    torch_head.weight = bf16_head.weight  # the same bf16 weights on torch's F.linear (lm_head="torch")
    heads = {"bitops": bf16_head, "bitops, int8 head": int8_head}
    # head accuracy: the int8 head's logits against the bf16 head's, over a few positions
    errs = []
    with torch.inference_mode():
        hidden = model.model(input_ids=prompt).last_hidden_state[0]
        a, b = bf16_head(hidden).float(), int8_head(hidden).float()
        errs = (a - b).abs().amax(-1) / a.abs().amax(-1)
        result["int8_head"] = {"max_abs_logit_error": float((a - b).abs().max()),
                               "max_logit": float(a.abs().max()),
                               "max_rel_error_per_position": float(errs.max()),
                               "argmax_agree": float((a.argmax(-1) == b.argmax(-1)).float().mean())}

    bandwidth = [read_bandwidth(args.threads, 0.3)]  # its 512 MiB buffer lives from here to the end
    bpt = {"bitops": bytes_per_token(model)}
    model.set_output_embeddings(int8_head)
    bpt["bitops, int8 head"] = bytes_per_token(model)
    model.set_output_embeddings(bf16_head)

    decode_variants = {name: (head, None) for name, head in heads.items()}
    decode_variants[TORCH_HEAD] = (torch_head, None)
    if args.compile:
        compiled = CompiledDecode(model, args.prompt + max(args.tokens, 3))
        result["static_cache_len"] = compiled.cache_len
        for name, head in heads.items():
            decode_variants[f"{name}, compiled"] = (head, compiled)
    result["compile_s"] = {}
    for name, (head, compiled) in decode_variants.items():  # warm up all (and compile: one graph per head)
        model.set_output_embeddings(head)
        t0 = time.perf_counter()
        decode_steps(model, prompt, 3, compiled)
        if compiled is not None:
            result["compile_s"][name] = time.perf_counter() - t0
    bandwidth.append(read_bandwidth(args.threads, 0.3))
    dec = measure_decode_interleaved(model, decode_variants, prompt, args.tokens, args.rounds)
    bandwidth.append(read_bandwidth(args.threads, 0.3))
    pre = measure_prefill(model, heads, args.prefill, args.prefill_rounds, "bitops")
    model.set_output_embeddings(bf16_head)
    result["profile"] = profile_split(model, prompt, min(16, args.tokens))
    big = max(args.prefill)
    result["prefill_gemm"] = {"in_model": prefill_split(model, big), "alone": gemm_check(model, big, 3)}
    bw = max(bandwidth)
    result["read_bandwidth_bps"] = {"probes": bandwidth, "used": bw}

    variants = {}
    for name, (head, _) in decode_variants.items():
        base = "bitops, int8 head" if head is int8_head else "bitops"  # the torch head reads what bitops' does
        per_round = [median(r) for r in dec["rounds"][name]]
        all_times = [t for r in dec["rounds"][name] for t in r]
        step = median(all_times)
        floor = bpt[base] / bw
        variants[name] = {"tokens_per_s": 1 / step, "decode_step_s": step, "per_round_median_s": per_round,
                          "bytes_per_token": bpt[base], "floor_s": floor, "pct_floor": 100 * floor / step,
                          "prefill_s": pre[name] if name in pre else None, "tokens": dec["tokens"][name][:16]}
    for suffix in ("", ", compiled"):
        if f"bitops{suffix}" not in dec["rounds"]:
            continue
        rb = [median(r) for r in dec["rounds"][f"bitops{suffix}"]]
        ri = [median(r) for r in dec["rounds"][f"bitops, int8 head{suffix}"]]
        key = "speedup" + suffix.replace(", ", "_")
        result["int8_head"][key + "_per_round"] = [a / b for a, b in zip(rb, ri)]
        result["int8_head"][key] = median(result["int8_head"][key + "_per_round"])
    rs = [median(r) for r in dec["rounds"][TORCH_HEAD]]
    rb = [median(r) for r in dec["rounds"]["bitops"]]
    result["bf16_head"] = {"speedup_vs_torch_per_round": [a / b for a, b in zip(rs, rb)]}
    result["bf16_head"]["speedup_vs_torch"] = median(result["bf16_head"]["speedup_vs_torch_per_round"])
    variants["before (every position's logits, no AMX)"] = {"prefill_s": pre["before"]}
    if args.hf_tokens:
        t = result["transformers"]
        variants["transformers BitLinear"] = {"tokens_per_s": t["tokens_per_s"], "decode_step_s": 1 / t["tokens_per_s"],
                                              "bytes_per_token": t["bytes_per_token"],
                                              "floor_s": t["bytes_per_token"] / bw,
                                              "pct_floor": 100 * t["bytes_per_token"] / bw * t["tokens_per_s"],
                                              "prefill_s": None, "tokens_measured": len(t["decode_s"])}
    del model, heads, bf16_head, int8_head, torch_head, hidden, decode_variants
    torch._dynamo.reset()
    gc.collect()

    if args.dense:
        dense = build(args.shape, seed=0, packed=False)
        dprompt = prompt_ids(dense, args.prompt)
        decode_steps(dense, dprompt, 2)
        times, _ = decode_steps(dense, dprompt, args.dense_tokens)
        step = median(times)
        dbpt = bytes_per_token(dense)
        dpre = {}
        for p in args.prefill:
            dpre[p] = prefill_s(dense, prompt_ids(dense, p, seed=p))
        variants["dense bf16 nn.Linear"] = {"tokens_per_s": 1 / step, "decode_step_s": step, "bytes_per_token": dbpt,
                                            "floor_s": dbpt / bw, "pct_floor": 100 * dbpt / bw / step,
                                            "prefill_s": dpre, "tokens_measured": len(times)}
        del dense
        gc.collect()
    release_probe_buffer()

    row = llama_bench_row(args)
    if row:
        result["llama_bench"] = row
    if args.placement_rounds:
        result["placement"] = placement_check(args)
    result["variants"] = variants
    return result


# --------------------------------------------------------------------------- report


def fmt_s(s):
    if s is None:
        return "—"
    return f"{s * 1e3:.0f} ms" if s < 10 else f"{s:.1f} s"


def report(res: dict) -> str:
    v = res["variants"]
    bw = res["read_bandwidth_bps"]["used"]
    shape = res["shape"]
    lines = [
        "# A BitNet model end to end on the CPU: decode and prefill",
        "",
        f"Machine: {res['machine'].get('cpu', '?')}, {res['threads']} threads, ISA `{res['bitops_backend']}`, "
        f"torch {res['torch']}, transformers {res['transformers_version']}. "
        f"Mode: {res['mode']}. Model: transformers `BitNetForCausalLM`, hidden {shape['hidden_size']}, FFN "
        f"{shape['intermediate_size']}, {shape['num_hidden_layers']} layers, {shape['num_attention_heads']} heads / "
        f"{shape['num_key_value_heads']} KV heads, vocab {shape['vocab_size']}, in the checkpoint's packed format "
        f"with seeded random weights ({res['model']['stored_bytes'] / 1e9:.2f} GB as stored).",
        "",
        f"Read bandwidth (matmul.py's probe, best of {len(res['read_bandwidth_bps']['probes'])} in this run): "
        f"{bw / 1e9:.1f} GB/s. Floor = bytes a decoded token reads as stored / that bandwidth. Decode: median "
        f"per-token latency over {res['decode_tokens']} greedy tokens after a prompt of {res['prompt']}, "
        f"{res['rounds']} interleaved rounds. Prefill: the logits of the last position only, medians of "
        f"interleaved rounds; \"before\" is bitops as it was before this benchmark existed: every position's "
        f"logits (a plain `model(ids)` call) and the ternary GEMM without its AMX panels.",
        "",
        "| variant | tokens/s | ms/token | bytes/token | floor | % floor | " +
        " | ".join(f"prefill {p}" for p in res["prefill_lengths"]) + " |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(res["prefill_lengths"]),
    ]
    for name, r in v.items():
        pre = r.get("prefill_s") or {}
        cells = [f"{fmt_s(pre.get(p) if p in pre else pre.get(str(p)))}" for p in res["prefill_lengths"]]
        if "tokens_per_s" in r:
            lines.append(f"| {name} | {r['tokens_per_s']:.2f} | {r['decode_step_s'] * 1e3:.1f} | "
                         f"{r['bytes_per_token'] / 1e9:.3f} GB | {r['floor_s'] * 1e3:.1f} ms | "
                         f"{r['pct_floor']:.0f}% | " + " | ".join(cells) + " |")
        else:
            lines.append(f"| {name} | | | | | | " + " | ".join(cells) + " |")
    if "llama_bench" in res:
        lb = res["llama_bench"]
        lines.append(f"| llama-bench ({lb.get('command', '')}) | {lb.get('tokens_per_s', '—')} | | | | | "
                     f"{lb.get('prefill_tokens_per_s', '—')} tokens/s (512) |")
    before = next((r for n, r in v.items() if n.startswith("before")), None)
    if before and "bitops" in v:
        get = lambda d, p: d.get(p, d.get(str(p)))  # noqa: E731  (JSON keys are strings)
        lines += ["", "Prefill, before / now (bitops, bf16 head): " + ", ".join(
            f"{p} tokens {get(before['prefill_s'], p) / get(v['bitops']['prefill_s'], p):.2f}x"
            for p in res["prefill_lengths"]) + "."]
    c = res["convert"]
    lines += [
        "",
        f"`bitops.hf.convert`: {c['s']:.2f} s; RSS {c['rss_start'] / 1e9:.2f} GB before, peak "
        f"{c['rss_peak'] / 1e9:.2f} GB while converting (model as stored {res['model']['stored_bytes'] / 1e9:.2f} GB: "
        f"peak = stored + {c['peak_minus_stored'] / 1e9:.2f} GB, the process's torch/transformers included).",
    ]
    if "cosine_vs_transformers_bf16" in c:
        lines.append(f"Last-position logits after conversion vs transformers' own bf16 run: cosine "
                     f"{c['cosine_vs_transformers_bf16']:.5f}.")
    ih = res["int8_head"]
    bh = res.get("bf16_head")
    if bh:
        lines += ["", f"bf16 head as stored, on bitops' streaming GEMV (`bitops.nn.Bf16Linear`, what `convert` does "
                  f"by default) vs the same weights on torch's nn.Linear (`lm_head=\"torch\"`): {bh['speedup_vs_torch']:.2f}x "
                  "tokens/s (median of per-round ratios "
                  f"{', '.join(f'{x:.2f}' for x in bh['speedup_vs_torch_per_round'])})."]
    lines += [
        "",
        f"int8 head: {ih['speedup']:.2f}x the bf16 head's tokens/s (median of per-round ratios "
        f"{', '.join(f'{x:.2f}' for x in ih['speedup_per_round'])})" +
        (f", compiled {ih['speedup_compiled']:.2f}x" if "speedup_compiled" in ih else "") + "; its logits differ from the bf16 head's by at "
        f"most {ih['max_abs_logit_error']:.3f} (largest |logit| {ih['max_logit']:.2f}; per position at most "
        f"{100 * ih['max_rel_error_per_position']:.2f}% of the largest), argmax agrees at "
        f"{100 * ih['argmax_agree']:.0f}% of the prompt's positions.",
        "",
    ]
    if res.get("compile_s"):
        lines += [", ".join(f"{name}: compiled in {t:.0f} s" for name, t in res["compile_s"].items()) +
                  f" (StaticCache of {res.get('static_cache_len', 256)} positions, the prompt and the decoded tokens; "
                  "`torch.compile(model.forward, dynamic=False)`, the first "
                  "tokens included).", ""]
    pr = res["profile"]
    lines += [f"Where a bitops token's {pr['per_token_s'] * 1e3:.1f} ms go (bf16 head; wrapped module forwards, "
              "exclusive time; the wrappers add a little):", "", "| part | ms/token | share |", "|---|---:|---:|"]
    for name, s in sorted(pr["split_s"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {s * 1e3:.1f} | {100 * s / pr['per_token_s']:.0f}% |")
    pg = res["prefill_gemm"]
    if pg["in_model"]["packed_linear_gops"]:
        lines += ["", f"Prefill of {pg['alone']['m']} tokens: the packed linear layers take "
                  f"{pg['in_model']['packed_linear_s']:.2f} s of {pg['in_model']['wall_s']:.2f} s, "
                  f"{pg['in_model']['packed_linear_gops']:.0f} GOP/s; the FFN gate/up layer alone at the same M "
                  f"({pg['alone']['k']}x{pg['alone']['n']}, as matmul.py measures) {pg['alone']['gops']:.0f} GOP/s."]
    if "placement" in res:
        p = res["placement"]
        lines += ["", f"Thread placement (bitops decode in fresh processes, medians): unpinned "
                  f"{p['unpinned'] * 1e3:.1f} ms/token, `OMP_PROC_BIND=close OMP_PLACES=cores` "
                  f"{p['pinned'] * 1e3:.1f} ms/token: unpinned / pinned = {p['unpinned_over_pinned']:.2f}."]
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    v = {k: r for k, r in res["variants"].items() if "tokens_per_s" in r}
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    names = list(v)
    ax[0].barh(names, [r["tokens_per_s"] for r in v.values()], color="tab:blue")
    ax[0].set_xlabel("decode tokens/s (higher is better)")
    ax[0].set_xscale("log")
    for i, r in enumerate(v.values()):
        ax[0].text(r["tokens_per_s"], i, f" {r['tokens_per_s']:.2f} ({r['pct_floor']:.0f}% floor)", va="center",
                   fontsize=8)
    pr = res["profile"]["split_s"]
    ax[1].pie(list(pr.values()), labels=[k.split(" (")[0] for k in pr], autopct="%1.0f%%", textprops={"fontsize": 8})
    ax[1].set_title("bitops decode: where a token's time goes", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def rerender(json_path: str) -> None:
    """Rewrites the .md (and .png) next to a results JSON with this file's report (no measuring)."""
    path = Path(json_path)
    res = json.loads(path.read_text())
    path.with_suffix(".md").write_text(report(res))
    plot(res, path.with_suffix(".png"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI-sized: a small model, few tokens")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--tokens", type=int, default=None, help="decoded tokens per round (default 64; quick 8)")
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--rounds", type=int, default=None, help="interleaved decode rounds (default 3; quick 1)")
    p.add_argument("--hf-tokens", type=int, default=None, help="tokens through transformers' own path (default 2)")
    p.add_argument("--hf-prompt", type=int, default=8)
    p.add_argument("--no-dense", dest="dense", action="store_false")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="skip the StaticCache + torch.compile decode variants (about a minute of compiling each)")
    p.add_argument("--dense-tokens", type=int, default=16)
    p.add_argument("--placement-rounds", type=int, default=None, help="child-process rounds (default 1; quick 0)")
    p.add_argument("--llama-bench", default=None)
    p.add_argument("--gguf", default=None)
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.shape = BITNET_QUICK if args.quick else BITNET_2B4T
    args.tokens = args.tokens or (8 if args.quick else 64)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.prefill_rounds = 1 if args.quick else 2
    args.prefill = [16, 64] if args.quick else [128, 512]
    args.hf_tokens = (2 if args.hf_tokens is None else args.hf_tokens)
    args.placement_rounds = (0 if args.quick else 1) if args.placement_rounds is None else args.placement_rounds
    if args.child:
        return child(args)
    res = run(args)
    res.update(decode_tokens=args.tokens, prompt=args.prompt, rounds=args.rounds, prefill_lengths=args.prefill)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "decode_quick" if args.quick else "decode_cpu"
    (out / f"{stem}.json").write_text(json.dumps(res, indent=1, default=str))
    text = report(res)
    (out / f"{stem}.md").write_text(text)
    plot(res, out / f"{stem}.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
