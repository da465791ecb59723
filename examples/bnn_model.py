"""The binary MLP (and its float twin) of the seed experiment, made trainable and exportable.

BinaryMLP, sizes ``K -> H1 -> ... -> C``: every layer has binary weights sign(W) in {-1, +1}
(latent float weights, identity STE, clipped to [-1, 1] after each step as in BinaryNet) and no
bias, and is followed by a BatchNorm. Hidden layers end in a sign activation with the clipped
STE (bitops.quant.sign_activation_ste); the last layer's BatchNorm output is the logits, as in
the seed, whose output layer was not binarized.

Why every pre-activation is an exact integer, in float32 too: the inputs are integer pixels
(or +-1 signs) and the weights are +-1, so every partial sum is an integer far below 2^24.
That is what lets the exported model reproduce this one bit for bit.

Why BatchNorm: a sign activation only cares where its threshold sits, and the seed had none
but a bias it later threw away. BN learns a per-channel threshold (and, through its scale's
sign, a direction); in eval mode ``sign(BN(a))`` is a step function of the integer ``a``,
which bnn_export folds into one integer threshold per channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bitops.quant import sign_activation_ste


def binary_weight(w: torch.Tensor) -> torch.Tensor:
    """sign(w) in {-1, +1} (+1 at 0, the bitops convention) with an identity STE; no scale."""
    return w + (torch.where(w >= 0, 1.0, -1.0) - w).detach()


def bn_eval(a: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
    """BatchNorm in eval mode, written out op by op.

    Each op is one correctly rounded float32 step, so the result for a value does not depend
    on the batch, the position or the kernel (F.batch_norm may fuse differently). The export
    folds exactly this function into thresholds, and the exported head evaluates it too.
    """
    inv_std = 1.0 / torch.sqrt(bn.running_var + bn.eps)
    return (a - bn.running_mean) * inv_std * bn.weight + bn.bias


class BinaryMLP(nn.Module):
    def __init__(self, sizes: list[int]):
        super().__init__()
        self.sizes = list(sizes)
        self.linears = nn.ModuleList(nn.Linear(k, n, bias=False) for k, n in zip(sizes, sizes[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(n) for n in sizes[1:])

    def preactivation(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Layer i's integer-valued pre-activation (pixels or signs times +-1 weights)."""
        return F.linear(h, binary_weight(self.linears[i].weight))

    def normalize(self, i: int, a: torch.Tensor) -> torch.Tensor:
        return self.norms[i](a) if self.training else bn_eval(a, self.norms[i])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        last = len(self.linears) - 1
        for i in range(last):
            h = sign_activation_ste(self.normalize(i, self.preactivation(i, h)))
        return self.normalize(last, self.preactivation(last, h))

    @torch.no_grad()
    def clip_latent_weights(self) -> None:
        """Keeps latent weights in [-1, 1], where the STE still moves them (BinaryNet)."""
        for lin in self.linears:
            lin.weight.clamp_(-1.0, 1.0)


class FloatMLP(nn.Module):
    """The same sizes with float weights, BatchNorm and ReLU: the accuracy reference."""

    def __init__(self, sizes: list[int], input_scale: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (k, n) in enumerate(zip(sizes, sizes[1:])):
            layers += [nn.Linear(k, n, bias=False), nn.BatchNorm1d(n)]
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.input_scale = input_scale  # pixels to [0, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() * self.input_scale)


class SeedNet(nn.Module):
    """Seed 001's network, as it trained: float weights with biases, sign activations
    (``torch.sign``, full-gradient STE), an unbinarized 10-way output layer without bias."""

    def __init__(self, sizes: list[int]):
        super().__init__()
        k, h1, h2, c = sizes
        self.fc1, self.fc2, self.fc3 = nn.Linear(k, h1), nn.Linear(h1, h2), nn.Linear(h2, c, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sign = lambda t: t + (t.sign() - t).detach()  # noqa: E731
        h = sign(self.fc1(x.float()))
        return self.fc3(sign(self.fc2(h)))


@torch.no_grad()
def seed_integer_logits(model: SeedNet, x: torch.Tensor, biases=False, activations=False) -> torch.Tensor:
    """Seed 001's "integer-only 1-bit model": the sign of every trained weight, with its biases
    and sign activations dropped (the defaults); the flags put either back, to measure each loss.
    float64 keeps every sum exact (the activation-free product grows past 2^24)."""
    h = x.double()
    fcs = (model.fc1, model.fc2, model.fc3)
    for i, fc in enumerate(fcs):
        h = h @ fc.weight.sign().double().T
        if biases and fc.bias is not None:
            h = h + fc.bias.double()
        if activations and i < len(fcs) - 1:
            h = h.sign()
    return h


@torch.no_grad()
def norms_dropped_logits(model: BinaryMLP, x: torch.Tensor) -> torch.Tensor:
    """The seed's export mistake applied to a BinaryMLP: the BatchNorms (its thresholds and
    scales) dropped, so every sign is taken at 0 and the head's raw sums are the logits."""
    h = x.float()
    for i in range(len(model.linears)):
        a = model.preactivation(i, h)
        h = torch.where(a >= 0, 1.0, -1.0)
    return a
