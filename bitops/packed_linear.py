"""PackedBitLinear: the inference form of BitLinear, holding only packed weights and scales.

Its ``state_dict`` is what a deployed model ships: ``packed_weight`` (uint8, 2 bits a ternary
weight, 1 bit a binary one: 16x / 32x smaller than float32), ``weight_scale`` (float32),
``bias`` (float), ``norm.weight`` when the layer has a norm, and a small ``_extra_state``
record of the configuration. Loading validates all of it, so a corrupt or mismatched
checkpoint fails with a clear message instead of silently computing garbage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from .quant import check_config, kernel_linear
from .reference import binary_row_bytes, ternary_row_bytes

__all__ = ["PackedBitLinear", "make_norm", "normalize_input", "check_input"]

STATE_FORMAT = "bitops.PackedBitLinear"
STATE_VERSION = 1
NORM_EPS = 1e-6


# --------------------------------------------------------------------------- shared with BitLinear


def make_norm(in_features: int, device=None, dtype=None) -> nn.RMSNorm:
    """The SubLN RMSNorm that ``norm=True`` puts before the activation quantizer."""
    return nn.RMSNorm(in_features, eps=NORM_EPS, device=device, dtype=dtype)


def normalize_input(norm: nn.RMSNorm | None, x: torch.Tensor) -> torch.Tensor:
    """RMSNorm in float32 (the kernels quantize in float32 anyway, so no bf16 rounding in between)."""
    if norm is None:
        return x
    return F.rms_norm(x.float(), norm.normalized_shape, norm.weight.float(), norm.eps)


def check_input(module: nn.Module, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{type(module).__name__}: input must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0 or x.shape[-1] != module.in_features:
        raise ValueError(
            f"{type(module).__name__}: input must have in_features={module.in_features} features in its "
            f"last dimension, got shape {tuple(x.shape)}"
        )


def row_bytes(kind: str, in_features: int) -> int:
    return ternary_row_bytes(in_features) if kind == "ternary" else binary_row_bytes(in_features)


def describe(module: nn.Module) -> str:
    return (
        f"in_features={module.in_features}, out_features={module.out_features}, "
        f"bias={module.bias is not None}, weight={module.weight_kind}, act_bits={module.act_bits}, "
        f"norm={module.norm is not None}"
    )


# --------------------------------------------------------------------------- the module


class PackedBitLinear(nn.Module):
    """Inference-only BitLinear over packed weights; same outputs as ``BitLinear.eval()``.

    Usually made by :meth:`bitops.nn.BitLinear.pack`. Constructed directly, it holds zero
    weights, ready for ``load_state_dict``.
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
    ):
        super().__init__()
        check_config(weight, act_bits)
        self.in_features, self.out_features = in_features, out_features
        self.weight_kind, self.act_bits = weight, act_bits
        zeros = torch.zeros(out_features, in_features, dtype=torch.int8, device=device)
        packed = ops.pack_ternary(zeros) if weight == "ternary" else ops.pack_binary(zeros + 1)
        self.register_buffer("packed_weight", packed)
        self.register_buffer("weight_scale", torch.zeros((), dtype=torch.float32, device=device))
        bias_dtype = dtype if dtype is not None else torch.get_default_dtype()
        self.register_buffer("bias", torch.zeros(out_features, dtype=bias_dtype, device=device) if bias else None)
        self.norm = make_norm(in_features, device, dtype) if norm else None

    @classmethod
    def from_parts(cls, kind, act_bits, in_features, packed, scale, bias=None, norm=None) -> PackedBitLinear:
        """Wraps already packed weights (copies them)."""
        module = cls(
            in_features,
            packed.shape[0],
            bias=bias is not None,
            weight=kind,
            act_bits=act_bits,
            norm=norm is not None,
            device=packed.device,
            dtype=None if bias is None else bias.dtype,
        )
        with torch.no_grad():
            module.packed_weight.copy_(packed)
            module.weight_scale.copy_(scale.reshape(()))
            if bias is not None:
                module.bias.copy_(bias)
            if norm is not None:
                module.norm = make_norm(in_features, norm.weight.device, norm.weight.dtype)
                module.norm.weight.copy_(norm.weight)
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x)
        y = kernel_linear(
            normalize_input(self.norm, x), self.weight_kind, self.packed_weight, self.weight_scale, self.bias, self.act_bits
        )
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return describe(self)

    # ------------------------------------------------------------------ state_dict

    def get_extra_state(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "weight": self.weight_kind,
            "act_bits": self.act_bits,
            "in_features": self.in_features,
            "out_features": self.out_features,
        }

    def set_extra_state(self, state) -> None:
        pass  # validated in _load_from_state_dict, before any tensor is copied

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        problems = self._state_problems(state_dict, prefix)
        if problems:
            error_msgs.extend(f"{prefix or '(root) '}{p}" for p in problems)
            return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def _state_problems(self, state_dict, prefix) -> list[str]:
        """Everything wrong with the incoming tensors (missing keys are the base class's job)."""
        problems = []
        extra = state_dict.get(prefix + "_extra_state")
        if extra is not None:
            problems += self._config_problems(extra)
            if problems:
                return problems  # tensors of another configuration: their checks would only add noise
        packed = state_dict.get(prefix + "packed_weight")
        if packed is not None:
            problems += self._packed_problems(packed)
        scale = state_dict.get(prefix + "weight_scale")
        if scale is not None:
            problems += self._scale_problems(scale)
        bias = state_dict.get(prefix + "bias")
        if bias is not None and self.bias is not None and isinstance(bias, torch.Tensor):
            if bias.dtype != self.bias.dtype:
                problems.append(f"bias: expected dtype {self.bias.dtype} (loading must stay exact), got {bias.dtype}")
        return problems

    def _config_problems(self, extra) -> list[str]:
        if not isinstance(extra, dict) or extra.get("format") != STATE_FORMAT:
            return [f"_extra_state: not a {STATE_FORMAT} record: {extra!r}"]
        if extra.get("version") != STATE_VERSION:
            return [f"_extra_state: format version {extra.get('version')!r}, this bitops reads {STATE_VERSION}"]
        mine = self.get_extra_state()
        return [
            f"the checkpoint was saved with {key}={extra.get(key)!r}, but this module has {key}={mine[key]!r}"
            for key in ("weight", "act_bits", "in_features", "out_features")
            if extra.get(key) != mine[key]
        ]

    def _packed_problems(self, packed) -> list[str]:
        want_shape = (self.out_features, row_bytes(self.weight_kind, self.in_features))
        if not isinstance(packed, torch.Tensor):
            return [f"packed_weight: expected a tensor, got {type(packed).__name__}"]
        if packed.dtype != torch.uint8:
            return [f"packed_weight: expected dtype torch.uint8, got {packed.dtype}"]
        if tuple(packed.shape) != want_shape:
            return [
                f"packed_weight: expected shape {want_shape} ({self.weight_kind} weights, "
                f"in_features={self.in_features}), got {tuple(packed.shape)}"
            ]
        # A canonical buffer re-packs to itself: this catches invalid codes and dirty padding
        # without this module knowing the layout.
        unpack, pack = (
            (ops.unpack_ternary, ops.pack_ternary) if self.weight_kind == "ternary" else (ops.unpack_binary, ops.pack_binary)
        )
        try:
            canonical = pack(unpack(packed, self.in_features))
        except (ValueError, RuntimeError) as exc:
            return [f"packed_weight: corrupt {self.weight_kind} weights ({exc})"]
        if not torch.equal(canonical, packed):
            bad = (canonical != packed).any(dim=1).nonzero().flatten()
            return [
                f"packed_weight: corrupt {self.weight_kind} weights: {bad.numel()} row(s) (first: row "
                f"{bad[0].item()}) are not in canonical packed form (nonzero padding or invalid codes)"
            ]
        return []

    def _scale_problems(self, scale) -> list[str]:
        if not isinstance(scale, torch.Tensor) or scale.dtype != torch.float32:
            got = scale.dtype if isinstance(scale, torch.Tensor) else type(scale).__name__
            return [f"weight_scale: expected a float32 tensor, got {got}"]
        if scale.numel() != 1:
            return [f"weight_scale: expected one value, got shape {tuple(scale.shape)}"]
        value = scale.reshape(()).item()
        if not (value >= 0 and value != float("inf")):
            return [f"weight_scale: expected a finite value >= 0, got {value}"]
        return []
