"""XOR at the seed's exact 2-2-1 size: which quantizer and estimator choices make it learnable?

The seed setting (2-2-1 sigmoid, BCEWithLogits with reduction='sum', SGD lr 0.5, 1000 full-batch
steps, nn.Linear's initialisation) is kept fixed; only the ternary layer's definition varies.
Every variant is written as plain fake quantization in torch (no kernels: the question is about
training dynamics, and the kernels reproduce the standard variant bit for bit anyway).

Variants, combined by name:
  tensor / row   one absmean scale per weight tensor (BitNet b1.58, bitops' layer) / per output row
  thr=T          a weight becomes 0 where |w| <= T * scale (b1.58 rounding is T = 0.5)
  latent-dx      the input gradient goes through the latent float weights instead of the ternary
                 ones (quantization error treated as additive noise); the standard estimator
                 (bitops' layer) uses the ternary weights, which is the layer's true Jacobian in x

    python examples/xor_tiny_variants.py               # seeds 0..39, about 3 minutes on one core
    python examples/xor_tiny_variants.py --seeds 10
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = torch.tensor([[0.0], [1.0], [1.0], [0.0]])


def int8_fake_quant(x: torch.Tensor) -> torch.Tensor:
    """Per-row int8 absmax, straight through (as bitops' act_bits=8)."""
    s = 127 / x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-5)
    return x + ((x * s).round().clamp(-128, 127) / s - x).detach()


class TernaryVariant(nn.Linear):
    def __init__(self, i: int, o: int, per_row: bool, threshold: float, latent_dx: bool, quantize: bool = True):
        super().__init__(i, o)
        self.per_row, self.threshold, self.latent_dx, self.quantize = per_row, threshold, latent_dx, quantize

    def ternary(self) -> torch.Tensor:
        w = self.weight
        scale = (w.abs().mean(dim=1, keepdim=True) if self.per_row else w.abs().mean()).clamp_min(1e-5)
        return torch.sign(w) * (w.abs() > self.threshold * scale) * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.quantize:
            return super().forward(x)
        x = int8_fake_quant(x)
        w, wq = self.weight, self.ternary()
        if self.latent_dx:  # value x @ wq.T; gradients of x @ w.T (x) and of the identity STE (w)
            return F.linear(x, w.detach(), self.bias) + F.linear(x.detach(), w + (wq - w).detach() - w.detach())
        return F.linear(x, w + (wq - w).detach(), self.bias)


def learns_xor(seed: int, make_layer) -> bool:
    torch.manual_seed(seed)
    model = nn.Sequential(make_layer(2, 2), nn.Sigmoid(), make_layer(2, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    for _ in range(1000):
        optimizer.zero_grad()
        loss_fn(model(X), Y).backward()
        optimizer.step()
    with torch.no_grad():
        return bool(((model(X) > 0) == Y.bool()).all())


VARIANTS = {
    "float (nn.Linear)": dict(per_row=False, threshold=0.5, latent_dx=False, quantize=False),
    "tensor, thr=0.5 (bitops BitLinear)": dict(per_row=False, threshold=0.5, latent_dx=False),
    "row, thr=0.5": dict(per_row=True, threshold=0.5, latent_dx=False),
    "row, thr=0.25": dict(per_row=True, threshold=0.25, latent_dx=False),
    "tensor, thr=0.5, latent-dx": dict(per_row=False, threshold=0.5, latent_dx=True),
    "row, thr=0.5, latent-dx": dict(per_row=True, threshold=0.5, latent_dx=True),
    "row, thr=0.25, latent-dx": dict(per_row=True, threshold=0.25, latent_dx=True),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"| variant | seeds 0..9 | seeds 10..{args.seeds - 1} |\n| --- | ---: | ---: |")
    start = time.time()
    for name, cfg in VARIANTS.items():
        ok = [learns_xor(s, lambda i, o: TernaryVariant(i, o, **cfg)) for s in range(args.seeds)]
        rest = f"{sum(ok[10:])}/{len(ok[10:])}" if len(ok) > 10 else "-"
        print(f"| {name} | {sum(ok[:10])}/{min(10, len(ok))} | {rest} |", flush=True)
    print(f"\n{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
