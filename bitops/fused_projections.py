"""Several packed layers that read the same input, run as one packed call.

In a BitNet decoder layer q, k and v read the same normalized hidden state, and so do gate and
up. At decode each call is a short GEMV with a fixed cost around it (the Python module call, the
norm and int8 quantization of x, the threads' fork and join), so one call over the concatenated
rows (3840 x 2560 for q/k/v of the 2B4T model, 13824 x 2560 for gate/up) is cheaper than three
or two: about 110 us per decoder layer here (benchmarks/results/decode_cpu.md).

:class:`FusedProjection` holds the one :class:`~bitops.nn.PackedBitLinear` over the
concatenated rows (per-row scales: each part keeps its own gamma, so each part's output is bit
for bit what its own layer gives). Each original site holds a :class:`ProjectionSlice`: the first
call with an input runs the fused layer, and every slice then returns its part of that one
result, once; a slice asked again (or with another input) runs the fused layer again. So any
call order is correct, provided x is not modified in place between the calls of one group.
"""

from __future__ import annotations

import torch
from torch import nn

from .packed import PackedWeight
from .packed_linear import PackedBitLinear

__all__ = ["FusedProjection", "ProjectionSlice", "can_fuse", "fuse_projections", "unfuse_projections"]


def _same_norm(a: nn.RMSNorm | None, b: nn.RMSNorm | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.eps == b.eps and a.weight.dtype == b.weight.dtype and a.weight.device == b.weight.device
            and torch.equal(a.weight, b.weight))


def can_fuse(layers) -> bool:
    """True for plain ternary int8 PackedBitLinear layers over the same input features, with the
    same norm (or none) and all or none of them with a bias of one dtype."""
    first = layers[0]
    if not all(type(l) is PackedBitLinear and l.weight_kind == "ternary" and l.act_bits == 8 for l in layers):
        return False
    if any(l.in_features != first.in_features or l.packed_weight.device != first.packed_weight.device
           or not _same_norm(l.norm, first.norm) for l in layers):
        return False
    biases = [l.bias for l in layers]
    if any(b is None for b in biases):
        return all(b is None for b in biases)
    return len({b.dtype for b in biases}) == 1


class FusedProjection(nn.Module):
    """One packed call for several layers that read the same input (:func:`can_fuse`)."""

    def __init__(self, layers):
        super().__init__()
        if not can_fuse(layers):
            raise ValueError("bitops: these layers cannot run as one packed call (see bitops.fused_projections.can_fuse)")
        k = layers[0].in_features
        packed = torch.cat([l.packed_weight for l in layers])
        scale = torch.cat([l.weight_scale.reshape(-1).expand(l.out_features) for l in layers]).contiguous()
        bias = None if layers[0].bias is None else torch.cat([l.bias for l in layers])
        self.fused = PackedBitLinear.from_packed(PackedWeight("ternary", packed, k, scale), bias, 8, layers[0].norm)
        self.sizes = [l.out_features for l in layers]
        self._reset()

    def _reset(self):
        self._x, self._parts, self._pending = None, None, set()

    def part(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if not (x is self._x and index in self._pending):
            y = self.fused(x)
            self._parts = [p.contiguous() for p in y.split(self.sizes, dim=-1)]
            self._x, self._pending = x, set(range(len(self.sizes)))
        self._pending.discard(index)
        out = self._parts[index]
        if not self._pending:  # every part handed out: hold no tensors between calls
            self._reset()
        return out

    def unfused(self) -> list[PackedBitLinear]:
        """The separate layers again (copies of their rows, scales and biases)."""
        layers, n0 = [], 0
        f = self.fused
        for n in self.sizes:
            scale = f.weight_scale[n0:n0 + n]
            if bool((scale == scale[0]).all()):
                scale = scale[0].clone()
            else:
                scale = scale.clone()
            bias = None if f.bias is None else f.bias[n0:n0 + n].clone()
            norm = None
            if f.norm is not None:
                norm = nn.RMSNorm(f.in_features, eps=f.norm.eps, device=f.norm.weight.device, dtype=f.norm.weight.dtype)
                with torch.no_grad():
                    norm.weight.copy_(f.norm.weight)
                norm.requires_grad_(False)
            packed = PackedWeight("ternary", f.packed_weight[n0:n0 + n].clone(), f.in_features, scale)
            layers.append(PackedBitLinear.from_packed(packed, bias, 8, norm).eval())
            n0 += n
        return layers


class ProjectionSlice(nn.Module):
    """Part ``index`` of a :class:`FusedProjection`, in place of the layer it replaced. The first
    slice of a group holds the group as a submodule (so the state_dict has its tensors once)."""

    def __init__(self, group: FusedProjection, index: int):
        super().__init__()
        if index == 0:
            self.group = group
        else:
            object.__setattr__(self, "_group_ref", group)  # not a submodule: saved and moved once, via slice 0
        self.index = index
        self.in_features = group.fused.in_features
        self.out_features = group.sizes[index]

    @property
    def fused_group(self) -> FusedProjection:
        return self.group if self.index == 0 else self._group_ref

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused_group.part(self.index, x)

    def extra_repr(self) -> str:
        return f"part {self.index} of {len(self.fused_group.sizes)}, out_features={self.out_features}"


def fuse_projections(parent: nn.Module, names) -> bool:
    """Replaces the layers ``parent.<name>`` (which must all read the same input) with slices of
    one :class:`FusedProjection`; False (and nothing changed) where :func:`can_fuse` says no."""
    layers = [getattr(parent, n) for n in names]
    if not can_fuse(layers):
        return False
    group = FusedProjection(layers)
    for i, n in enumerate(names):
        setattr(parent, n, ProjectionSlice(group, i))
    return True


def unfuse_projections(model: nn.Module) -> int:
    """Turns every group of slices back into separate PackedBitLinear layers; returns how many groups."""
    sites: dict[int, list] = {}
    groups = {}
    for _, parent in model.named_modules():
        for name, child in parent._modules.items():
            if isinstance(child, ProjectionSlice):
                g = child.fused_group
                groups[id(g)] = g
                sites.setdefault(id(g), []).append((parent, name, child.index))
    for gid, places in sites.items():
        layers = groups[gid].unfused()
        for parent, name, index in places:
            setattr(parent, name, layers[index])
    return len(sites)
