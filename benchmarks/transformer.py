"""A float Transformer and a BitLinear (ternary, BitNet b1.58) Transformer, side by side.

Both are the same byte-level decoder-only language model, built by the same code; only the
linear layers differ: ``nn.Linear`` versus ``bitops.nn.BitLinear(weight="ternary", act_bits=8,
norm=True)`` (an RMSNorm before the activation quantizer, as in BitNet b1.58) in every attention
and MLP projection. Embeddings and the output head stay float in both, as in BitNet.

Corpus: the docstrings of the Python standard library that ships with this interpreter (read with
``ast`` from the ``.py`` files under ``sysconfig.get_paths()["stdlib"]``, sorted by path), so every
machine has it without a download; the last 10% is held out for validation.

    python benchmarks/transformer.py --quick     # CI-sized smoke run
    python benchmarks/transformer.py             # the full comparison; results in benchmarks/results/

Each variant trains in its own process (same seed, steps, batch and learning rate), so peak memory
is measured per variant. Reported: train/validation loss curves (PNG), final validation loss and
perplexity per byte, time per training step, peak RSS, checkpoint sizes (float vs packed), and
greedy generation speed on the CPU with a KV cache (packed kernels vs float), with sample text.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


# --------------------------------------------------------------------------- data


def stdlib_docstrings(max_bytes: int) -> bytes:
    """Docstrings of the standard library's modules, classes and functions, in path order."""
    root = sysconfig.get_paths()["stdlib"]
    chunks, total = [], 0
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "test", "tests", "idle_test"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) > 40:
                        data = (doc.strip() + "\n\n").encode("utf-8")
                        chunks.append(data)
                        total += len(data)
                        if total >= max_bytes:
                            return b"".join(chunks)[:max_bytes]
    return b"".join(chunks)


def split_corpus(data: bytes):
    tokens = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
    cut = int(len(tokens) * 0.9)
    return tokens[:cut], tokens[cut:]


def batch(tokens: torch.Tensor, batch_size: int, context: int, gen: torch.Generator):
    starts = torch.randint(0, len(tokens) - context - 1, (batch_size,), generator=gen)
    x = torch.stack([tokens[s : s + context] for s in starts.tolist()])
    y = torch.stack([tokens[s + 1 : s + context + 1] for s in starts.tolist()])
    return x, y


# --------------------------------------------------------------------------- model


@dataclass
class Config:
    variant: str = "float"  # "float", "bitlinear" or "bitlinear-int8" (BitLinear, backward="int8")
    layers: int = 4
    width: int = 256
    heads: int = 4
    context: int = 128
    vocab: int = 256
    mlp_ratio: int = 4


def make_linear(cfg: Config, fan_in: int, fan_out: int) -> nn.Module:
    if cfg.variant == "float":
        return nn.Linear(fan_in, fan_out, bias=False)
    from bitops.nn import BitLinear

    backward = "int8" if cfg.variant == "bitlinear-int8" else "exact"
    return BitLinear(fan_in, fan_out, bias=False, weight="ternary", act_bits=8, norm=True, backward=backward)


class Attention(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.heads = cfg.heads
        self.qkv = make_linear(cfg, cfg.width, 3 * cfg.width)
        self.out = make_linear(cfg, cfg.width, cfg.width)

    def forward(self, x, cache=None):
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        if cache is not None:  # generation: append this step's keys and values
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        y = F.scaled_dot_product_attention(q, k, v, is_causal=(t > 1))
        return self.out(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.width)
        self.attn = Attention(cfg)
        self.norm2 = nn.RMSNorm(cfg.width)
        self.up = make_linear(cfg, cfg.width, cfg.mlp_ratio * cfg.width)
        self.down = make_linear(cfg, cfg.mlp_ratio * cfg.width, cfg.width)

    def forward(self, x, cache=None):
        x = x + self.attn(self.norm1(x), cache)
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class ByteLM(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.width)
        self.pos = nn.Embedding(cfg.context, cfg.width)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.RMSNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.vocab, bias=False)

    def forward(self, idx, caches=None, start=0):
        t = idx.shape[1]
        h = self.embed(idx) + self.pos(torch.arange(start, start + t))
        for i, block in enumerate(self.blocks):
            h = block(h, None if caches is None else caches[i])
        return self.head(self.norm(h))

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
        """Greedy decoding with a KV cache: after the prompt, every linear layer sees one row (M = 1)."""
        caches = [dict() for _ in self.blocks]
        logits = self(prompt[None], caches, 0)
        out = [int(logits[0, -1].argmax())]
        for i in range(new_tokens - 1):
            pos = prompt.numel() + i
            if pos >= self.cfg.context:
                break
            logits = self(torch.tensor([[out[-1]]]), caches, pos)
            out.append(int(logits[0, -1].argmax()))
        return torch.tensor(out)


def linear_weight_bytes(model: nn.Module) -> int:
    """State-dict bytes of the projections that BitLinear replaces (attention and MLP layers)."""
    keep = (".attn.", ".up.", ".down.")
    return sum(
        t.numel() * t.element_size()
        for name, t in model.state_dict().items()
        if torch.is_tensor(t) and any(k in f".{name}" for k in keep)
    )


def checkpoint_bytes(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


# --------------------------------------------------------------------------- one variant


@dataclass
class RunArgs:
    steps: int
    batch_size: int
    lr: float
    eval_every: int
    eval_batches: int
    corpus_bytes: int
    gen_tokens: int
    seed: int = 0


@torch.no_grad()
def evaluate(model, tokens, cfg, args, seed):
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(args.eval_batches):
        x, y = batch(tokens, args.batch_size, cfg.context, gen)
        losses.append(F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item())
    model.train()
    return sum(losses) / len(losses)


def generation_speed(model, prompt, new_tokens):
    model.eval()
    model.generate(prompt, 4)  # warm-up (packs the weights in eval mode)
    t0 = time.perf_counter()
    out = model.generate(prompt, new_tokens)
    seconds = time.perf_counter() - t0
    return out.numel() / seconds, bytes(out.to(torch.uint8).tolist()).decode("utf-8", errors="replace")


def run_variant(variant: str, cfg_dict: dict, args_dict: dict, queue) -> None:
    torch.set_num_threads(int(os.environ.get("BITOPS_BENCH_THREADS", torch.get_num_threads())))
    cfg = Config(**{**cfg_dict, "variant": variant})
    args = RunArgs(**args_dict)
    train_tokens, val_tokens = split_corpus(stdlib_docstrings(args.corpus_bytes))
    torch.manual_seed(args.seed)
    model = ByteLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))
    )
    gen = torch.Generator().manual_seed(args.seed)
    curve, val_curve, step_times = [], [], []
    progress = _progress(args.steps, variant)
    for step in range(1, args.steps + 1):
        x, y = batch(train_tokens, args.batch_size, cfg.context, gen)
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        step_times.append(time.perf_counter() - t0)
        curve.append((step, loss.item()))
        if step % args.eval_every == 0 or step == args.steps:
            val_curve.append((step, evaluate(model, val_tokens, cfg, args, seed=1234)))
        progress(step, loss.item())
    model.eval()
    prompt = val_tokens[: cfg.context // 4]
    tokens_per_s, sample = generation_speed(model, prompt, min(args.gen_tokens, cfg.context - prompt.numel()))
    result = dict(
        variant=variant,
        final_val_loss=val_curve[-1][1],
        val_ppl_per_byte=math.exp(val_curve[-1][1]),
        train_curve=curve,
        val_curve=val_curve,
        step_ms_median=1e3 * sorted(step_times)[len(step_times) // 2],
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        gen_tokens_per_s=tokens_per_s,
        prompt=bytes(prompt.to(torch.uint8).tolist()).decode("utf-8", errors="replace"),
        sample=sample,
        corpus_train_bytes=len(train_tokens),
        corpus_val_bytes=len(val_tokens),
    )
    if variant == "float":
        result["checkpoint_bytes"] = checkpoint_bytes(model)
        result["linear_weight_bytes"] = linear_weight_bytes(model)
    else:
        from bitops.nn import pack_model

        packed = pack_model(model)
        result["checkpoint_bytes"] = checkpoint_bytes(packed)
        result["linear_weight_bytes"] = linear_weight_bytes(packed)
    queue.put(result)


def _progress(total, label):
    try:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"train {label}", leave=False, file=sys.stderr)

        def update(step, loss):
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            if step == total:
                bar.close()

        return update
    except ImportError:
        return lambda step, loss: None


# --------------------------------------------------------------------------- report


def machine_info() -> dict:
    import bitops

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return dict(cpu=cpu, backend=bitops.backend(), threads=torch.get_num_threads(), torch=torch.__version__,
                python=platform.python_version())


VARIANTS = ("float", "bitlinear", "bitlinear-int8")
HEADERS = {
    "float": "float `nn.Linear`",
    "bitlinear": "bitops `BitLinear` (ternary, int8 act)",
    "bitlinear-int8": "`BitLinear`, `backward=\"int8\"`",
}


def write_report(results: dict, cfg: Config, args: RunArgs, out_dir: str, tag: str, machine: dict | None = None) -> str:
    machine = machine or machine_info()
    variants = [v for v in VARIANTS if v in results]
    f, b = results["float"], results["bitlinear"]
    fields = [
        ("final validation loss (nats/byte)", lambda r: f"{r['final_val_loss']:.4f}"),
        ("validation perplexity per byte", lambda r: f"{r['val_ppl_per_byte']:.3f}"),
        ("time per training step (ms, median)", lambda r: f"{r['step_ms_median']:.1f}"),
        ("step time / float", lambda r: f"{r['step_ms_median'] / f['step_ms_median']:.2f}x"),
        ("peak RSS of the run (MB)", lambda r: f"{r['peak_rss_mb']:.0f}"),
        ("checkpoint, whole model (KB)", lambda r: f"{r['checkpoint_bytes'] / 1024:.0f}"),
        ("checkpoint, projection weights (KB)", lambda r: f"{r['linear_weight_bytes'] / 1024:.0f}"),
        ("CPU generation, KV cache (tokens/s)", lambda r: f"{r['gen_tokens_per_s']:.0f}"),
    ]
    gap = (b["final_val_loss"] - f["final_val_loss"]) / f["final_val_loss"] * 100
    summary = (
        f"BitLinear validation loss is {gap:+.1f}% relative to float; projection weights "
        f"{f['linear_weight_bytes'] / max(1, b['linear_weight_bytes']):.1f}x smaller packed; "
        f"generation {b['gen_tokens_per_s'] / f['gen_tokens_per_s']:.2f}x the float model's speed."
    )
    if "bitlinear-int8" in results:
        i = results["bitlinear-int8"]
        summary += (
            f" The int8 backward's final validation loss is "
            f"{(i['final_val_loss'] - b['final_val_loss']) / b['final_val_loss'] * 100:+.2f}% relative to the "
            f"exact backward's, at {i['step_ms_median'] / b['step_ms_median']:.2f}x its step time."
        )
    lines = [
        f"# Float vs BitLinear Transformer ({tag})",
        "",
        f"Machine: {json.dumps(machine)}",
        f"Model: {json.dumps(asdict(cfg))}; training: {json.dumps(asdict(args))}",
        f"Corpus: Python {platform.python_version()} standard-library docstrings, "
        f"{f['corpus_train_bytes']} train / {f['corpus_val_bytes']} validation bytes.",
        "",
        "| | " + " | ".join(HEADERS[v] for v in variants) + " |",
        "|---|" + "---:|" * len(variants),
        *[f"| {name} | " + " | ".join(fmt(results[v]) for v in variants) + " |" for name, fmt in fields],
        "",
        summary,
        "",
        "Samples (greedy, from the same validation prompt):",
        "",
        f"- prompt: `{f['prompt']!r}`",
        *[f"- {v}: `{results[v]['sample']!r}`" for v in variants],
        "",
    ]
    text = "\n".join(lines)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"transformer_{tag}.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(out_dir, f"transformer_{tag}.json"), "w") as fh:
        json.dump(dict(machine=machine, config=asdict(cfg), args=asdict(args), results=results), fh, indent=1)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        colors = {"float": "tab:blue", "bitlinear": "tab:red", "bitlinear-int8": "tab:green"}
        for r, color in ((results[v], colors[v]) for v in variants):
            steps, losses = zip(*r["train_curve"])
            window = max(1, len(losses) // 50)
            smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1]) for i in range(len(losses))]
            ax.plot(steps, smooth, color=color, alpha=0.6, label=f"{r['variant']} train")
            vs, vl = zip(*r["val_curve"])
            ax.plot(vs, vl, "o-", color=color, label=f"{r['variant']} validation")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats/byte)")
        ax.set_title("Byte-level LM on stdlib docstrings: float vs BitLinear")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, f"transformer_{tag}.png"), dpi=110)
    except ImportError:
        print("matplotlib not installed: no plot")
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny run for CI (seconds)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--report-only", metavar="JSON", help="re-render the report and plot from a saved run")
    opts = parser.parse_args(argv)
    if opts.report_only:
        with open(opts.report_only) as fh:
            saved = json.load(fh)
        tag = "quick" if "quick" in os.path.basename(opts.report_only) else "full"
        print(write_report(saved["results"], Config(**saved["config"]), RunArgs(**saved["args"]), opts.out, tag,
                           saved.get("machine")))
        return saved["results"]
    if opts.quick:
        cfg = Config(layers=2, width=64, heads=2, context=32)
        args = RunArgs(steps=opts.steps or 30, batch_size=8, lr=3e-3, eval_every=15, eval_batches=2,
                       corpus_bytes=200_000, gen_tokens=16)
    else:
        cfg = Config()
        args = RunArgs(steps=opts.steps or 600, batch_size=16, lr=2e-3, eval_every=50, eval_batches=8,
                       corpus_bytes=4_000_000, gen_tokens=96)
    ctx = mp.get_context("spawn")
    results = {}
    for variant in VARIANTS:
        queue = ctx.Queue()
        proc = ctx.Process(target=run_variant, args=(variant, asdict(cfg), asdict(args), queue))
        proc.start()
        results[variant] = queue.get()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"the {variant} run failed (exit code {proc.exitcode})")
    print(write_report(results, cfg, args, opts.out, "quick" if opts.quick else "full"))
    return results


if __name__ == "__main__":
    main()
