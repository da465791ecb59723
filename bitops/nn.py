"""BitLinear, a drop-in ``nn.Linear`` with ternary or binary weights, and ``convert`` for whole models.

``BitLinear`` keeps latent float weights as ordinary ``nn.Parameter``s (any optimizer, loss and
training loop work) and always computes its output with the packed kernels:

* ``train()``: each forward quantizes and packs the current weights, runs the kernel, and
  backpropagates with straight-through estimators (:func:`bitops.quant.bit_linear`);
* ``eval()``: the packed weights are cached and reused until the weights change.

Both modes run the same kernel on the same quantized values, so their outputs are identical,
bit for bit, and so is the output of the packed inference module from :meth:`BitLinear.pack`.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Iterable

import torch
from torch import nn

from .bf16_linear import Bf16Linear
from .int8_linear import Int8Linear
from .packed_linear import PackedBitLinear, check_input, describe, make_norm, norm_eps
from .bit_linear import bit_linear, check_backward, quantize_weight
from .config import check_config
from .packed import PackedWeight

__all__ = ["BitLinear", "PackedBitLinear", "Int8Linear", "Bf16Linear", "convert", "pack_model"]


class BitLinear(nn.Module):
    """``y = Q_act(x) @ (scale * Q_w(W)).T + bias`` on packed ternary or binary weights.

    Args:
        in_features, out_features, bias, device, dtype: as for ``nn.Linear`` (same initialisation).
        weight: ``"ternary"`` (absmean to {-1, 0, 1}, BitNet b1.58) or ``"binary"`` (sign, {-1, 1}).
        act_bits: ``8`` (per-token int8 absmax), ``1`` (sign; binary weights only: XNOR-popcount)
            or ``None`` (float activations).
        norm: put an RMSNorm before the activation quantizer (BitNet b1.58's SubLN). Off by
            default: a norm over each input row throws away that row's scale, and over a
            2-feature input the scale is much of what a logic gate needs: (1, 1) and (0.5, 0.5)
            become the same input, (0, 0) becomes 0 whatever the weights. It is a model-level
            choice for wide transformer layers, not part of a drop-in linear layer.
        backward: ``"exact"`` (default): the straight-through gradient, in float32. ``"int8"``:
            a different, cheaper estimator: ``grad_x`` on the int8 kernels from ``grad_y``
            quantized per row to int8 (the SwitchBack recipe); ``grad_W`` stays exact. It
            changes gradients, not outputs (see :mod:`bitops.bit_linear`).

    Inputs may be float32 or bfloat16 (or float16) with any leading dimensions; the output has
    the input's dtype. ``act_bits=8`` quantizes each row of the last dimension separately.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        weight: str = "ternary",
        act_bits=8,
        norm: bool = False,
        device=None,
        dtype=None,
        backward: str = "exact",
    ):
        super().__init__()
        check_config(weight, act_bits)
        check_backward(backward)
        self.backward_mode = backward
        factory = {"device": device, "dtype": dtype}
        self.in_features, self.out_features = in_features, out_features
        self.weight_kind, self.act_bits = weight, act_bits
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()
        self.norm = make_norm(in_features, device, dtype) if norm else None
        self._packed_cache: tuple[tuple, PackedWeight] | None = None

    def reset_parameters(self) -> None:
        """nn.Linear's initialisation, drawing the same random numbers in the same order."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_linear(cls, linear: nn.Linear, weight: str = "ternary", act_bits=8, norm: bool = False,
                    backward: str = "exact") -> BitLinear:
        """A BitLinear with ``linear``'s weights, device, dtype and train/eval mode."""
        w = linear.weight
        module = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            weight=weight,
            act_bits=act_bits,
            norm=norm,
            device=w.device,
            dtype=w.dtype,
            backward=backward,
        )
        with torch.no_grad():
            module.weight.copy_(w)
            if linear.bias is not None:
                module.bias.copy_(linear.bias)
        module.weight.requires_grad_(w.requires_grad)
        if linear.bias is not None:
            module.bias.requires_grad_(linear.bias.requires_grad)
        return module.train(linear.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x)
        quantized = None if self.training else self.packed_weights()
        norm = self.norm
        y = bit_linear(x, self.weight, self.bias, self.weight_kind, self.act_bits, quantized, self.backward_mode,
                       norm_weight=None if norm is None else norm.weight,
                       norm_eps=0.0 if norm is None else norm_eps(norm))
        return y.to(x.dtype)

    # ------------------------------------------------------------------ packed weights

    def packed_weights(self) -> PackedWeight:
        """The quantized and packed weights, cached until the weights change.

        A change is seen through the tensor's identity, storage and version counter (every
        in-place update, ``copy_``, ``load_state_dict`` and ``.to()`` bumps or replaces them).
        Switching between train() and eval() also drops the cache, because fused optimizers
        (``Adam(fused=True)``) update parameters without bumping their version counter.
        """
        w = self.weight
        if torch.compiler.is_compiling():
            # Under torch.compile the cache (Python-side state keyed on storage and version)
            # cannot be traced; quantizing and packing become part of the compiled graph.
            return quantize_weight(w, self.weight_kind)
        key = (id(w), w.data_ptr(), w._version, w.device, w.dtype, tuple(w.shape), torch.is_inference_mode_enabled())
        if self._packed_cache is None or self._packed_cache[0] != key:
            self._packed_cache = (key, quantize_weight(w, self.weight_kind))
        return self._packed_cache[1]

    def clear_packed_cache(self) -> None:
        """Forget the cached packed weights (call after changing weights behind autograd's back)."""
        self._packed_cache = None

    def train(self, mode: bool = True) -> BitLinear:
        self._packed_cache = None
        return super().train(mode)

    def pack(self) -> PackedBitLinear:
        """The inference module: packed weights + scale (+ bias, norm), same outputs as eval()."""
        packed = quantize_weight(self.weight, self.weight_kind)
        bias = None if self.bias is None else self.bias.detach().clone()
        norm = None if self.norm is None else copy.deepcopy(self.norm)
        return PackedBitLinear.from_packed(packed, bias, self.act_bits, norm).train(self.training)

    def extra_repr(self) -> str:
        return describe(self) + ("" if self.backward_mode == "exact" else f", backward={self.backward_mode}")

    def __getstate__(self):  # pickling and deepcopy: the cache is derived data, leave it out
        state = self.__dict__.copy()
        state["_packed_cache"] = None
        return state

    def __setstate__(self, state):
        state.setdefault("backward_mode", "exact")  # pickled before the backward modes existed
        super().__setstate__(state)


# --------------------------------------------------------------------------- whole models

SkipSpec = str | Iterable[str] | Callable[[str, nn.Module], bool] | None


def _skip_rule(skip: SkipSpec) -> tuple[Callable[[str, nn.Module], bool], set[str]]:
    """A predicate over (qualified name, module) and the set of names to check for typos."""
    if skip is None:
        return (lambda name, module: False), set()
    if callable(skip):
        return skip, set()
    names = {skip} if isinstance(skip, str) else set(skip)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"bitops.nn.convert: skip names must be strings, got {name!r}")

    def matches(name: str, module: nn.Module) -> bool:
        return any(name == s or name.startswith(s + ".") for s in names)

    return matches, names


def convert(
    model: nn.Module,
    weight: str = "ternary",
    act_bits=8,
    norm: bool = False,
    skip: SkipSpec = None,
    backward: str = "exact",
) -> nn.Module:
    """Replaces every ``nn.Linear`` in ``model`` with a :class:`BitLinear` holding its weights.

    ``skip``: qualified module names (as in ``model.named_modules()``; a name also skips
    everything under it, e.g. ``"head"`` or ``"encoder.layers.0"``), or a predicate
    ``skip(name, module) -> bool``. A name that matches no ``nn.Linear`` raises, so a typo
    does not silently leave a layer in float. Linear layers owned by ``nn.MultiheadAttention``
    are left alone: it reads their weights directly instead of calling them.

    Returns the model (converted in place), or the new BitLinear if ``model`` itself is an
    ``nn.Linear``. Shared layers stay shared.
    """
    check_config(weight, act_bits)
    check_backward(backward)
    should_skip, names = _skip_rule(skip)
    if isinstance(model, nn.Linear):
        sites = [(None, "", "", model)]
    else:
        sites = [
            (parent, child_name, f"{parent_name}.{child_name}" if parent_name else child_name, child)
            for parent_name, parent in model.named_modules()
            if not isinstance(parent, nn.MultiheadAttention)
            for child_name, child in parent._modules.items()  # every slot: named_children() hides repeats
            if isinstance(child, nn.Linear)
        ]
    skipped = [name for _, _, name, linear in sites if should_skip(name, linear)]
    unused = {s for s in names if not any(n == s or n.startswith(s + ".") for n in skipped)}
    if unused:
        raise ValueError(
            f"bitops.nn.convert: skip names {sorted(unused)} match no nn.Linear in the model; "
            f"its nn.Linear modules are: {[name for _, _, name, _ in sites][:20]}"
        )
    converted: dict[int, nn.Module] = {}  # shared layers stay shared
    for parent, child_name, name, linear in sites:
        if name in skipped:
            continue
        if id(linear) not in converted:
            converted[id(linear)] = BitLinear.from_linear(linear, weight=weight, act_bits=act_bits, norm=norm,
                                                           backward=backward)
        if parent is None:
            return converted[id(linear)]
        setattr(parent, child_name, converted[id(linear)])
    return model


def pack_model(model: nn.Module) -> nn.Module:
    """Replaces every :class:`BitLinear` in ``model`` with its :class:`PackedBitLinear` (in place).

    The packed model gives the same outputs as ``model.eval()`` and its state_dict holds packed
    weights. Returns the model, or the packed module if ``model`` itself is a BitLinear.
    """
    if isinstance(model, BitLinear):
        return model.pack()
    packed: dict[int, PackedBitLinear] = {}
    for _, parent in list(model.named_modules()):
        for child_name, child in list(parent._modules.items()):
            if isinstance(child, BitLinear):
                if id(child) not in packed:
                    packed[id(child)] = child.pack()
                setattr(parent, child_name, packed[id(child)])
    return model
