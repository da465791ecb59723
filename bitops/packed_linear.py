"""PackedBitLinear: the inference form of BitLinear, holding only packed weights and scales.

Its ``state_dict`` is what a deployed model ships: ``packed_weight`` (uint8, 2 bits a ternary
weight, 1 bit a binary one: 16x / 32x smaller than float32), ``weight_scale`` (float32),
``bias`` (float), ``norm.weight`` when the layer has a norm, and a small ``_extra_state``
record of the configuration. Loading validates all of it, so a corrupt or mismatched
checkpoint fails with a clear message instead of silently computing garbage.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from . import reference as ref
from .config import check_config
from .packed import LAYOUT_VERSION, PackedWeight
from .packed import row_bytes as packed_row_bytes
from .validate import first_bad_row

__all__ = ["PackedBitLinear", "make_norm", "normalize_input", "check_input"]

_INFERENCE_OPS = ops.native_linear_ops()
_TERNARY_I8 = _INFERENCE_OPS.get(("ternary", 8))
_TERNARY_I8_NORM = ops.native_op("ternary_linear_i8_norm")

STATE_FORMAT = "bitops.PackedBitLinear"
STATE_VERSION = 1
NORM_EPS = 1e-6


# --------------------------------------------------------------------------- shared with BitLinear


def make_norm(in_features: int, device=None, dtype=None) -> nn.RMSNorm:
    """The SubLN RMSNorm that ``norm=True`` puts before the activation quantizer."""
    return nn.RMSNorm(in_features, eps=NORM_EPS, device=device, dtype=dtype)


def norm_eps(norm: nn.RMSNorm) -> float:
    return norm.eps if norm.eps is not None else torch.finfo(torch.float32).eps  # nn.RMSNorm's default


def normalize_input(norm: nn.RMSNorm | None, x: torch.Tensor) -> torch.Tensor:
    """RMSNorm in float32 (bitops.reference.rms_norm, what the fused kernel computes): the kernels
    quantize in float32 anyway, so no bf16 rounding in between."""
    if norm is None:
        return x
    return ref.rms_norm(x, norm.weight, norm_eps(norm))


def check_input(module: nn.Module, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{type(module).__name__}: input must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0 or x.shape[-1] != module.in_features:
        raise ValueError(
            f"{type(module).__name__}: input must have in_features={module.in_features} features in its "
            f"last dimension, got shape {tuple(x.shape)}"
        )


def apply_keeping_float32(module: nn.Module, fn, recurse: bool, names) -> nn.Module:
    """``nn.Module._apply`` that leaves the named float32 buffers' dtype alone: a cast
    float32 -> bf16 -> float32 would change a scale. They take only the device fn moves
    tensors to (probed on an empty tensor)."""
    kept = {name: module._buffers.pop(name) for name in names if name in module._buffers}
    try:
        nn.Module._apply(module, fn, recurse)
    finally:
        module._buffers.update(kept)
    for name, t in kept.items():
        if t is not None:
            device = fn(torch.empty(0, device=t.device)).device
            if device != t.device:
                module._buffers[name] = t.to(device)
    return module


def describe(module: nn.Module) -> str:
    return (
        f"in_features={module.in_features}, out_features={module.out_features}, "
        f"bias={module.bias is not None}, weight={module.weight_kind}, act_bits={module.act_bits}, "
        f"norm={module.norm is not None}"
    )


# --------------------------------------------------------------------------- the module


class PackedBitLinear(nn.Module):
    """Inference-only BitLinear over packed weights; same outputs as ``BitLinear.eval()``.

    Usually made by :meth:`bitops.nn.BitLinear.pack` or :meth:`from_packed`. Constructed
    directly, it holds zero weights (scale 0), ready for ``load_state_dict``; ``per_channel=True``
    gives it one scale per output row.

    Casting the module (``.to(torch.bfloat16)``, ``.half()``, ``.float()``) casts its bias and
    norm but never the scale, which stays float32 (the kernels' epilogue is float32); moving it
    (``.to(device)``) moves everything. The output has the input's dtype.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        weight: str = "ternary",
        act_bits=8,
        norm: bool = False,
        per_channel: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        check_config(weight, act_bits)
        self.in_features, self.out_features = in_features, out_features
        self.weight_kind, self.act_bits = weight, act_bits
        # Canonical bytes of an all-zero (ternary) / all -1 (binary) matrix, written directly.
        fill = 0x55 if weight == "ternary" else 0  # 0x55: four codes 1 (weight 0)
        rb = packed_row_bytes(weight, in_features)
        self.register_buffer("packed_weight", torch.full((out_features, rb), fill, dtype=torch.uint8, device=device))
        scale_shape = (out_features,) if per_channel else ()
        self.register_buffer("weight_scale", torch.zeros(scale_shape, dtype=torch.float32, device=device))
        bias_dtype = dtype if dtype is not None else torch.get_default_dtype()
        self.register_buffer("bias", torch.zeros(out_features, dtype=bias_dtype, device=device) if bias else None)
        self.norm = make_norm(in_features, device, dtype) if norm else None

    @classmethod
    def from_packed(cls, packed: PackedWeight, bias: torch.Tensor | None = None, act_bits=8,
                    norm: nn.RMSNorm | None = None) -> PackedBitLinear:
        """The module over ``packed`` (which must carry its scale); shares its tensors, no copy."""
        if not isinstance(packed, PackedWeight):
            raise TypeError(f"bitops: from_packed takes a PackedWeight, got {type(packed).__name__}")
        if packed.scale is None:
            raise ValueError("bitops: the PackedWeight has no scale; pack it with one (bitops.pack_ternary(wq, gamma))")
        check_config(packed.kind, act_bits)
        n, k = packed.shape
        if bias is not None:
            if not isinstance(bias, torch.Tensor) or not bias.is_floating_point():
                got = bias.dtype if isinstance(bias, torch.Tensor) else type(bias).__name__
                raise TypeError(f"bitops: bias must be a float tensor, got {got}")
            if tuple(bias.shape) != (n,):
                raise ValueError(f"bitops: bias must have shape [{n}] (out_features), got {tuple(bias.shape)}")
            if bias.device != packed.device:
                raise ValueError(f"bitops: bias is on {bias.device}, the packed weights on {packed.device}")
        if norm is not None and (not isinstance(norm, nn.RMSNorm) or tuple(norm.normalized_shape) != (k,)):
            raise ValueError(f"bitops: norm must be an nn.RMSNorm over in_features={k}, got {norm!r}")
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module.in_features, module.out_features = k, n
        module.weight_kind, module.act_bits = packed.kind, act_bits
        module.register_buffer("packed_weight", packed.qdata)
        module.register_buffer("weight_scale", packed.scale.reshape(()) if packed.scale.numel() == 1 else packed.scale)
        module.register_buffer("bias", None if bias is None else bias.detach())
        module.norm = norm
        return module

    @classmethod
    def from_parts(cls, kind, act_bits, in_features, packed, scale, bias=None, norm=None) -> PackedBitLinear:
        """The module over a buffer packed elsewhere: shapes, dtypes and every code are checked
        exactly (no broadcasting); a corrupt or mismatched buffer raises ValueError/TypeError."""
        if isinstance(packed, PackedWeight):
            if packed.kind != kind or packed.in_features != in_features:
                raise ValueError(f"bitops: the PackedWeight holds {packed.kind} weights with in_features="
                                 f"{packed.in_features}, not {kind} with in_features={in_features}")
            packed = packed.qdata
        return cls.from_packed(PackedWeight(kind, packed, in_features, scale), bias, act_bits, norm)

    @property
    def packed(self) -> PackedWeight:
        """The packed weights and scale as one object (shares the module's buffers)."""
        return PackedWeight._trusted(self.weight_kind, self.packed_weight, self.in_features, self.weight_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x)
        op = _INFERENCE_OPS.get((self.weight_kind, self.act_bits))
        norm = self.norm
        bias = self.bias
        if (op is not None and x.is_cpu and self.packed_weight.is_cpu
                and not (torch.is_grad_enabled() and (x.requires_grad or self.weight_scale.requires_grad
                                                      or (bias is not None and bias.requires_grad)
                                                      or (norm is not None and norm.weight.requires_grad)))):
            # The inference call: straight to the kernel, which checks what it reads, takes x in
            # its own dtype and returns that dtype (no conversions around it, no autograd layer;
            # compiled, the same opaque op in the graph: dynamo does not trace the dispatch guard).
            with contextlib.nullcontext() if ops.is_compiling() else ops.below_autograd():
                if norm is None:
                    return op(x, self.packed_weight, self.weight_scale, self.bias)
                if op is _TERNARY_I8:  # RMSNorm + quantization + GEMM in one call
                    return _TERNARY_I8_NORM(x, self.packed_weight, self.weight_scale, self.bias, norm.weight,
                                            norm_eps(norm))
        y = ops.linear(self.weight_kind, normalize_input(self.norm, x), self.packed, None, self.bias,
                       self.act_bits, None, "scale")
        return y.to(x.dtype)

    def _apply(self, fn, recurse=True):
        return apply_keeping_float32(self, fn, recurse, ("weight_scale",))

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
            "layout": LAYOUT_VERSION,
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
        if extra.get("layout", LAYOUT_VERSION) != LAYOUT_VERSION:  # records before the key existed: layout 1
            return [f"_extra_state: packed layout version {extra.get('layout')!r}, this bitops reads {LAYOUT_VERSION}"]
        mine = self.get_extra_state()
        return [
            f"the checkpoint was saved with {key}={extra.get(key)!r}, but this module has {key}={mine[key]!r}"
            for key in ("weight", "act_bits", "in_features", "out_features")
            if extra.get(key) != mine[key]
        ]

    def _packed_problems(self, packed) -> list[str]:
        want_shape = (self.out_features, packed_row_bytes(self.weight_kind, self.in_features))
        if not isinstance(packed, torch.Tensor):
            return [f"packed_weight: expected a tensor, got {type(packed).__name__}"]
        if packed.dtype != torch.uint8:
            return [f"packed_weight: expected dtype torch.uint8, got {packed.dtype}"]
        if tuple(packed.shape) != want_shape:
            return [
                f"packed_weight: expected shape {want_shape} ({self.weight_kind} weights, "
                f"in_features={self.in_features}), got {tuple(packed.shape)}"
            ]
        bad = first_bad_row(self.weight_kind, packed, self.in_features)
        if bad >= 0:
            return [
                f"packed_weight: corrupt {self.weight_kind} weights: row {bad} is not in canonical packed "
                "form (an invalid code, or nonzero padding)"
            ]
        return []

    def _scale_problems(self, scale) -> list[str]:
        if not isinstance(scale, torch.Tensor) or scale.dtype != torch.float32:
            got = scale.dtype if isinstance(scale, torch.Tensor) else type(scale).__name__
            return [f"weight_scale: expected a float32 tensor, got {got}"]
        if tuple(scale.shape) != tuple(self.weight_scale.shape):
            return [f"weight_scale: expected shape {tuple(self.weight_scale.shape)}, got {tuple(scale.shape)}"]
        if scale.device.type != "meta" and not bool(torch.isfinite(scale).all() & (scale >= 0).all()):
            return ["weight_scale: expected finite values >= 0"]
        return []
