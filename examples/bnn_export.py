"""Export a trained BinaryMLP to an integer-only model on packed bits, bit-exactly.

Per hidden layer, ``sign(BN(a))`` of the integer pre-activation ``a`` becomes one integer
comparison. bn_eval is monotone in ``a`` (each of its float32 ops is correctly rounded, so it
keeps order), increasing where the BN scale is positive and decreasing where it is negative.
So for each channel there is an integer ``t`` with

    sign(BN(a)) = +1  <=>  a >= t     (scale >= 0)
    sign(BN(a)) = +1  <=>  -a >= t    (scale < 0: flip the channel's weight row instead)

including ties (BN(a) == 0 gives +1, the sign convention the model trained with). ``t`` is found
by bisection on the very float function the trained model evaluates, never from the algebraic
formula ``mean - beta * std / gamma``, whose rounding can put it one integer off.

The first layer multiplies +-1 weights by uint8 pixels exactly, in one of two ways:

- ``"bitplanes"``: the XNOR-popcount kernel, one pixel bit plane at a time, weights at 1 bit.
  With pixel bit ``p_b`` in {0, 1} and its sign ``s_b = 2 p_b - 1``,
  ``sum_k w_k x_k = sum_b 2^b sum_k w_k p_b,k = sum_b 2^b (rowsum(w) + sum_k w_k s_b,k) / 2``.
- ``"int8"``: bitops' int8 kernel (``ternary_matmul_int``) on the +-1 weights in the 2-bit
  ternary layout; 8-bit pixels do not fit int8, so they are shifted by -128 and the sum
  corrected by ``128 * rowsum(w)``.

``"auto"`` picks the one whose packed rows are smaller (both pad rows to 32 bytes at K = 64,
so int8, the faster; at MNIST's K = 784 the 2-bit rows are 224 bytes against 128).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

import bitops
from bnn_model import BinaryMLP, bn_eval


def fold_thresholds(bn: nn.BatchNorm1d, bound: int):
    """Integer thresholds for ``sign(bn_eval(a))`` over integers ``|a| <= bound``.

    Returns ``(t int32 [N], flip bool [N])``: the sign is +1 exactly where
    ``(-a if flip else a) >= t``. ``t = bound + 1`` means never, ``t = -bound`` always.
    """
    n = bn.num_features
    flip = (bn.weight.detach() < 0)
    direction = torch.where(flip, -1.0, 1.0)
    lo = torch.full((n,), -bound, dtype=torch.int64)
    hi = torch.full((n,), bound + 1, dtype=torch.int64)
    with torch.no_grad():
        while bool((lo < hi).any()):
            mid = torch.div(lo + hi, 2, rounding_mode="floor")  # < hi, so never bound + 1
            positive = bn_eval((mid.float() * direction)[None], bn)[0] >= 0
            active = lo < hi
            hi = torch.where(active & positive, mid, hi)
            lo = torch.where(active & ~positive, mid + 1, lo)
    return lo.to(torch.int32), flip


def _signs(weight: torch.Tensor) -> torch.Tensor:
    return torch.where(weight.detach() >= 0, 1, -1).to(torch.int8)


def _pack_signs(signs: torch.Tensor) -> torch.Tensor:
    """int8 +-1 weight rows -> packed bits (the raw bytes: this module keeps them as buffers, K known)."""
    return bitops.pack_binary(signs.contiguous()).qdata


def _pack_nonnegative(v: torch.Tensor) -> torch.Tensor:
    """Packed bits of ``v >= 0`` for an integer-valued tensor (int32 sums, |v| < 2^24).

    The activation sign packer takes floats; converting these integers is exact and only the
    sign is read, so this is the integer test ``v >= 0``, in one pass instead of the three of
    compare, cast and pack_binary.
    """
    return bitops.binarize_activations(v.float())[0]


def _pick_first_layer(first_layer: str, k: int) -> str:
    """"auto": the int8 kernel where its 2-bit rows are no larger than 1-bit rows (small K,
    both padded to 32 bytes), else bit planes (smaller at MNIST's K = 784)."""
    if first_layer == "auto":
        return "int8" if bitops.ternary_row_bytes(k) <= bitops.binary_row_bytes(k) else "bitplanes"
    if first_layer not in ("bitplanes", "int8"):
        raise ValueError(f"first_layer must be 'auto', 'bitplanes' or 'int8', got {first_layer!r}")
    return first_layer


class PackedBinaryMLP(nn.Module):
    """The integer-only deployment of a :class:`BinaryMLP`: packed bits, int32 sums, thresholds.

    Input: uint8 pixels ``[M, K]`` below ``2**input_bits``. Hidden layers compare int32
    popcount sums with integer thresholds; the last layer's popcount sums go through the
    trained BatchNorm (10 affine maps in float32) to give the logits, as the model was trained.
    """

    def __init__(self, model: BinaryMLP, input_bits: int, first_layer: str = "auto"):
        super().__init__()
        if not 1 <= input_bits <= 8:
            raise ValueError(f"input_bits must be in 1..8 (uint8 pixels), got {input_bits}")
        self.first_layer_kind = first_layer = _pick_first_layer(first_layer, model.sizes[0])
        self.sizes = list(model.sizes)
        self.input_bits = input_bits
        self.n_hidden = len(model.linears) - 1
        if self.n_hidden < 1:
            raise ValueError("PackedBinaryMLP needs at least one hidden layer")
        bound = (2**input_bits - 1) * self.sizes[0]  # largest |a| of the first layer
        for i in range(self.n_hidden):
            t, flip = fold_thresholds(model.norms[i], bound)
            signs = _signs(model.linears[i].weight)
            signs[flip] = -signs[flip]  # now every channel fires on a >= t
            packed = bitops.pack_ternary(signs).qdata if i == 0 and first_layer == "int8" else _pack_signs(signs)
            self.register_buffer(f"w{i}", packed)
            self.register_buffer(f"t{i}", t)
            if i == 0:
                self.register_buffer("rowsum0", signs.sum(1, dtype=torch.int32))
            bound = self.sizes[i + 1]  # later layers sum +-1 products
        self.register_buffer("w_head", _pack_signs(_signs(model.linears[-1].weight)))
        self.head_norm = copy.deepcopy(model.norms[-1]).eval().requires_grad_(False)
        self.register_buffer("plane_shifts", torch.arange(input_bits, dtype=torch.uint8))

    def first_layer(self, x: torch.Tensor) -> torch.Tensor:
        """int32 ``x @ W0'.T`` for uint8 pixels ``x``."""
        if x.dtype != torch.uint8:
            raise TypeError(f"pixels must be uint8, got {x.dtype}")
        if bool((x >> self.input_bits).any()):
            raise ValueError(f"pixels must be below 2**{self.input_bits}")
        if self.first_layer_kind == "int8":
            return self._first_layer_int8(x)
        return self._first_layer_bitplanes(x)

    def _first_layer_int8(self, x: torch.Tensor) -> torch.Tensor:
        k = x.shape[1]
        if self.input_bits < 8:  # 0..127 fits int8 as is
            return bitops.ternary_matmul_int(x.to(torch.int8), self.w0, k)
        shifted = (x.to(torch.int16) - 128).to(torch.int8)  # sum w (x - 128) + 128 sum w
        return bitops.ternary_matmul_int(shifted, self.w0, k) + 128 * self.rowsum0

    def _first_layer_bitplanes(self, x: torch.Tensor) -> torch.Tensor:
        """XNOR-popcount over the pixel bit planes (module docstring)."""
        m, k = x.shape
        bits = (x[None] >> self.plane_shifts[:, None, None]) & 1  # [B, M, K]
        planes = _pack_nonnegative(bits.reshape(-1, k).to(torch.int8) - 1)  # bit 1 -> +1, 0 -> -1
        d = bitops.binary_matmul_int(planes, self.w0, k).reshape(self.input_bits, m, -1)
        # sum_b 2^b (rowsum + d_b) / 2 = ((2^B - 1) rowsum + sum_b 2^b d_b) / 2, an even sum
        acc = d[0].clone()
        for b in range(1, self.input_bits):
            acc.add_(d[b], alpha=1 << b)
        acc.add_(self.rowsum0, alpha=(1 << self.input_bits) - 1)
        return acc >> 1

    def forward(self, x: torch.Tensor, return_hidden: bool = False):
        """Logits ``[M, C]``; with ``return_hidden``, also each hidden layer's +-1 signs."""
        a = self.first_layer(x)
        hidden = []
        for i in range(self.n_hidden):
            bits = _pack_nonnegative(a - getattr(self, f"t{i}"))  # the bit is a >= t
            if return_hidden:
                hidden.append(bitops.unpack_binary(bits, self.sizes[i + 1]))
            w = self.w_head if i == self.n_hidden - 1 else getattr(self, f"w{i + 1}")
            a = bitops.binary_matmul_int(bits, w, self.sizes[i + 1])
        logits = bn_eval(a.float(), self.head_norm)
        return (logits, hidden) if return_hidden else logits

    def nbytes(self) -> int:
        """Bytes of everything inference reads: packed weights, thresholds, row sums, head BN."""
        tensors = [b for name, b in self.named_buffers() if name != "plane_shifts" and "head_norm" not in name]
        norm = self.head_norm
        tensors += [norm.weight, norm.bias, norm.running_mean, norm.running_var]
        return sum(t.numel() * t.element_size() for t in tensors)

    def weight_nbytes(self) -> int:
        """Bytes of the packed binary weights alone."""
        return sum(b.numel() for name, b in self.named_buffers() if name.startswith("w"))
