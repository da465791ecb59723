"""Why did the seed's 1-bit network fail to learn AND? A measured answer.

Seed 000 swapped ``nn.Linear`` for the PyPI ``bitnet`` package's ``BitLinear`` (kyegomez/BitNet)
in a 2-32-1 AND network and got stuck at loss 0.63 with every prediction near 0.5. That layer,
restated here in a few lines (``NaiveBitLinear``), does three things per forward:

1. normalizes each input row to a fixed length (``F.normalize(x) * in_features ** -0.5``, a
   parameter-free "RMSNorm"), then fake-quantizes it to int8;
2. binarizes the weights to ``sign(W - mean(W)) * mean(|W|)``;
3. calls ``F.linear(x, w)`` *without* the bias that its ``nn.Linear`` base class created.

This script trains it on the seed's exact task and budget next to ablations (bias used, norm
removed) and next to bitops' ``BitLinear``, over several seeds, and prints the numbers the
explanation in docs/why_1bit_failed.md rests on.

    python examples/why_1bit_failed.py [--seeds 10]
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch import nn

import bitops.nn as bnn

X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = torch.tensor([[0.0], [0.0], [0.0], [1.0]])


def _ste(x, q):
    return x + (q - x).detach()


class NaiveBitLinear(nn.Linear):
    """The seed's layer in a few lines; ``use_norm`` / ``use_bias`` switch its two flaws off."""

    def __init__(self, in_features, out_features, use_norm=True, use_bias=False):
        super().__init__(in_features, out_features)
        self.use_norm, self.use_bias = use_norm, use_bias

    def forward(self, x):
        if self.use_norm:
            x = F.normalize(x, dim=-1) * self.in_features**-0.5
        scale = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
        x = _ste(x, (x * scale).round().clamp(-128, 127) / scale)
        w = self.weight
        w = _ste(w, (w - w.mean()).sign() * w.abs().mean())
        return F.linear(x, w, self.bias if self.use_bias else None)


VARIANTS = {
    "nn.Linear (float)": lambda i, o: nn.Linear(i, o),
    "naive 1-bit, as in seed 000": lambda i, o: NaiveBitLinear(i, o),
    "naive, bias used": lambda i, o: NaiveBitLinear(i, o, use_bias=True),
    "naive, norm removed": lambda i, o: NaiveBitLinear(i, o, use_norm=False),
    "naive, bias used, norm removed": lambda i, o: NaiveBitLinear(i, o, use_norm=False, use_bias=True),
    "bitops BitLinear binary (W1A8)": lambda i, o: bnn.BitLinear(i, o, weight="binary"),
    "bitops BitLinear ternary (W1.58A8)": lambda i, o: bnn.BitLinear(i, o, weight="ternary"),
}


def train_and(make_linear, seed, steps=1000):
    """Seed 000's setting: 2-32-1, ReLU, sigmoid, BCELoss, AdamW lr 1e-3."""
    torch.manual_seed(seed)
    model = nn.Sequential(make_linear(2, 32), nn.ReLU(), make_linear(32, 1), nn.Sigmoid())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy(model(X), Y)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        p = model(X).flatten()
        loss = F.binary_cross_entropy(p, Y.flatten()).item()
    out = model[2]
    cap = out.weight.abs().mean().item()  # |logit| <= mean|W2| for the normalized, bias-free layer
    decided = bool((p != 0.5).all())  # exactly 0.5 is a coin toss, not a prediction
    correct = decided and bool(((p > 0.5) == Y.flatten().bool()).all())
    return {"loss": loss, "p": p, "correct": correct, "cap": cap}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"AND, 2-32-1, AdamW lr 1e-3, 1000 steps, seeds 0..{args.seeds - 1}; mean p over the seeds; a run")
    print("counts as 100% when every p is on the right side of 0.5 (p = 0.5 exactly counts as wrong)\n")
    header = f"| {'layer':34} | final loss | 100% runs | p(0,0) | p(0,1) | p(1,0) | p(1,1) |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    details = {}
    for name, make in VARIANTS.items():
        runs = [train_and(make, s) for s in range(args.seeds)]
        details[name] = runs
        p = torch.stack([r["p"] for r in runs]).mean(0)
        loss = sum(r["loss"] for r in runs) / len(runs)
        wins = sum(r["correct"] for r in runs)
        print(f"| {name:34} | {loss:10.4f} | {wins:4d}/{len(runs):<4d} | " + " | ".join(f"{v:6.3f}" for v in p) + " |")

    naive = details["naive 1-bit, as in seed 000"]
    p00 = torch.stack([r["p"][0] for r in naive])
    logits = torch.logit(torch.stack([r["p"] for r in naive]))
    caps = torch.tensor([r["cap"] for r in naive])
    print()
    print(f"naive layer, input (0, 0): p = {p00.min().item():.6f} .. {p00.max().item():.6f} in every seed "
          "(normalize(0) = 0 and no bias: the logit is exactly 0)")
    print(f"naive layer, largest |logit| reached: {logits.abs().max().item():.3f}; "
          f"its cap mean|W2| after training: {caps.min().item():.3f} .. {caps.max().item():.3f} "
          f"(at initialisation about {1 / math.sqrt(32) / 2:.3f})")
    c = caps.max().item()
    floor = (math.log(2) + 3 * math.log1p(math.exp(-c))) / 4
    print(f"naive layer, lowest loss reachable with p(0,0) pinned at 0.5 and |logit| <= {c:.3f}: {floor:.3f} "
          f"(observed: {sum(r['loss'] for r in naive) / len(naive):.3f})")


if __name__ == "__main__":
    main()
