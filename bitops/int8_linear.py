"""Int8Linear: an inference linear layer over per-row absmax int8 weights, with int8 activations.

For the layers of a BitNet model that stay in float (the output head, 128256 x 2560 in the 2B4T
model: more bytes per token than all its ternary layers together), as bitnet.cpp and llama.cpp
quantize theirs. The weights are ``w[n, :] ~ qweight[n, :] * scale[n]`` with
``scale[n] = max|w[n, :]| / 127``; the product runs on torch's own int8 GEMM (fbgemm, the x86
quantized engine), which quantizes the activations per call (per tensor, affine uint8) and reads
the int8 weights at memory speed (benchmarks/results/decode_cpu.md). Where torch has no fbgemm
engine the layer computes the same weights in float.

Its ``state_dict`` holds ``qweight`` (int8), ``scale`` (float32) and ``bias``.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .packed_linear import apply_keeping_float32

__all__ = ["Int8Linear", "quantize_rows_int8"]


def quantize_rows_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row absmax int8: ``(qweight int8 [N, K], scale float32 [N])``, ``weight ~ qweight * scale``."""
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point() or weight.dim() != 2:
        raise TypeError(f"bitops: quantize_rows_int8 takes a 2-D float weight, got {getattr(weight, 'shape', weight)!r}")
    w = weight.detach().float()
    if not bool(torch.isfinite(w).all()):
        raise ValueError("bitops: quantize_rows_int8: the weight holds NaN or Inf")
    scale = w.abs().amax(dim=1) / 127
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    qweight = torch.round(w / safe[:, None]).clamp_(-127, 127).to(torch.int8)
    return qweight, scale


def _fbgemm_available() -> bool:
    return "fbgemm" in torch.backends.quantized.supported_engines


def _per_channel(qweight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros(qweight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():  # torch deprecates making quantized tensors by hand
        warnings.simplefilter("ignore")
        return torch._make_per_channel_quantized_tensor(qweight, scale.double(), zero, 0)


_REDUCE_RANGE = None


def _reduce_range() -> bool:
    """Whether linear_dynamic must quantize activations to 7 bits. fbgemm's AVX2 / AVX-512
    (non-VNNI) u8 x s8 kernels add pairs of products in int16 (vpmaddubsw), which saturates for
    full-range uint8 activations against large weights (255 * 127 * 2 > 32767): the results are
    then wrong by percents, even on Gaussian data. VNNI (vpdpbusd) does not saturate. Probed once."""
    global _REDUCE_RANGE
    if _REDUCE_RANGE is None:
        k = 256
        packed = torch.ops.quantized.linear_prepack(
            _per_channel(torch.full((8, k), 127, dtype=torch.int8), torch.full((8,), 1 / 127)), None)
        y = torch.ops.quantized.linear_dynamic(torch.ones(2, k), packed, False)
        _REDUCE_RANGE = not bool(((y - k).abs() < 1).all())
    return _REDUCE_RANGE


class Int8Linear(nn.Module):
    """``y = x @ (qweight * scale[:, None]).T + bias`` with int8 weights and int8 activations.

    Made with :meth:`from_linear` / :meth:`from_weight`. The output has the input's dtype.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False, device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("scale", torch.zeros(out_features, dtype=torch.float32, device=device))
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32, device=device) if bias else None)
        self._prepacked = None  # fbgemm's own copy of the weights, made at the first call
        self._prepacked_key = None  # the tensors (and their versions) it was made from

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Int8Linear:
        qweight, scale = quantize_rows_int8(weight)
        module = cls(weight.shape[1], weight.shape[0], bias is not None, device=weight.device)
        module.qweight, module.scale = qweight, scale
        if bias is not None:
            module.bias = bias.detach().float().clone()
        return module

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        return cls.from_weight(linear.weight, linear.bias)

    def _weights_key(self):
        # fbgemm copies the weights when it packs them: an in-place edit of qweight or scale
        # (or bias) since then must repack. Inference tensors have no version counter.
        key = []
        for t in (self.qweight, self.scale, self.bias):
            if t is None:
                key.append(None)
                continue
            try:
                version = t._version
            except RuntimeError:
                version = -1
            key.append((t.data_ptr(), version))
        return tuple(key)

    def _packed_for_fbgemm(self):
        key = self._weights_key()
        if self._prepacked is None or getattr(self, "_prepacked_key", None) != key:
            self._prepacked = torch.ops.quantized.linear_prepack(_per_channel(self.qweight, self.scale), self.bias)
            self._prepacked_key = key
        return self._prepacked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Int8Linear: input must have in_features={self.in_features} features in its last "
                             f"dimension, got {getattr(x, 'shape', type(x).__name__)}")
        if not x.is_floating_point():
            raise TypeError(f"Int8Linear: input must be a float tensor, got {x.dtype}")
        if x.is_cpu and _fbgemm_available() and not (torch.is_grad_enabled() and x.requires_grad):
            y = torch.ops.quantized.linear_dynamic(x.reshape(-1, self.in_features).float(), self._packed_for_fbgemm(),
                                                   _reduce_range())
            return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        w = self.qweight.float() * self.scale[:, None]
        return F.linear(x.float(), w, self.bias).to(x.dtype)

    def _apply(self, fn, recurse=True):
        self._prepacked = None
        return apply_keeping_float32(self, fn, recurse, ("scale", "bias"))

    def _load_from_state_dict(self, *args, **kwargs):
        self._prepacked = None
        super()._load_from_state_dict(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"
