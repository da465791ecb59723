"""Converters between bitops' packed ternary format and other ecosystems' formats.

Every converter goes through the exchange form: an int8 tensor ``[N, K]`` of values in
{-1, 0, 1} (what :func:`bitops.ternary_quantize` returns and :func:`bitops.unpack_ternary` gives back).

Hugging Face transformers BitNet (``transformers/integrations/bitnet.py``, the format of the
``microsoft/bitnet-b1.58-2B-4T`` checkpoints):

* ``weight``: uint8 ``[ceil(N / 4), K]``: the ternary values plus one, 2 bits each, packed along the
  OUTPUT dimension: with ``R = ceil(N / 4)``, bits ``2i+1:2i`` of ``weight[r, k]`` hold output row
  ``i * R + r`` (i = 0..3); rows past N are zero.
* ``weight_scale``: the reciprocal of bitops' gamma: transformers computes
  ``y = (xq @ Wq.T) / (s * weight_scale)`` where bitops computes ``(xq @ Wq.T) * (gamma / s)``.
"""

from __future__ import annotations

import torch

from . import ops
from ._native import LOADED
from .packed import PackedWeight, unwrap

__all__ = ["ternary_to_hf_bitnet", "ternary_from_hf_bitnet", "hf_bitnet_pack", "hf_bitnet_unpack"]

_HF_VALUES_PER_BYTE = 4


def hf_bitnet_pack(wq: torch.Tensor) -> torch.Tensor:
    """int8 ``[N, K]`` in {-1, 0, 1} -> the transformers BitNet packing, uint8 ``[ceil(N/4), K]``."""
    if not isinstance(wq, torch.Tensor) or wq.dtype != torch.int8:
        raise TypeError(f"bitops: wq must be an int8 tensor, got {getattr(wq, 'dtype', type(wq).__name__)}")
    if wq.dim() != 2:
        raise ValueError(f"bitops: wq must be 2-D [N, K], got shape {tuple(wq.shape)}")
    if ((wq < -1) | (wq > 1)).any():
        raise ValueError("wq must hold only -1, 0 and 1")
    n, k = wq.shape
    rows = -(-n // _HF_VALUES_PER_BYTE)
    codes = torch.zeros(_HF_VALUES_PER_BYTE * rows, k, dtype=torch.uint8, device=wq.device)
    codes[:n] = (wq.to(torch.int16) + 1).to(torch.uint8)
    chunks = codes.reshape(_HF_VALUES_PER_BYTE, rows, k)  # chunk i = output rows i*R .. i*R + R - 1
    packed = torch.zeros(rows, k, dtype=torch.uint8, device=wq.device)
    for i in range(_HF_VALUES_PER_BYTE):
        packed |= chunks[i] << (2 * i)
    return packed


def hf_bitnet_unpack(packed: torch.Tensor, out_features: int) -> torch.Tensor:
    """Inverse of :func:`hf_bitnet_pack`: uint8 ``[ceil(N/4), K]`` -> int8 ``[N, K]``."""
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
        raise TypeError(f"bitops: packed must be a uint8 tensor, got {getattr(packed, 'dtype', type(packed).__name__)}")
    if packed.dim() != 2:
        raise ValueError(f"bitops: packed must be 2-D [ceil(N/4), K], got shape {tuple(packed.shape)}")
    rows = packed.shape[0]
    if not (rows - 1) * _HF_VALUES_PER_BYTE < out_features <= rows * _HF_VALUES_PER_BYTE:
        raise ValueError(f"bitops: packed has {rows} rows, which cannot hold out_features={out_features}")
    codes = torch.stack([(packed >> (2 * i)) & 3 for i in range(_HF_VALUES_PER_BYTE)])  # [4, R, K]
    codes = codes.reshape(_HF_VALUES_PER_BYTE * rows, packed.shape[1])[:out_features]
    if (codes == 3).any():
        raise ValueError("bitops: packed HF BitNet weights are corrupt: found the invalid code 3")
    return codes.to(torch.int8) - 1


def ternary_to_hf_bitnet(packed: PackedWeight):
    """A ternary :class:`PackedWeight` (with its per-tensor gamma) -> ``(weight, weight_scale)`` as
    transformers stores them."""
    qdata, k, gamma = unwrap("ternary", packed, None)
    if gamma is None:
        raise ValueError("bitops: the PackedWeight has no scale; the transformers format needs one")
    if gamma.numel() != 1:
        raise ValueError("bitops: the transformers BitNet format has one weight scale per tensor; got per-row gamma")
    return hf_bitnet_pack(packed.unpack()), (1.0 / gamma.float()).reshape(1)


def ternary_from_hf_bitnet(weight: torch.Tensor, weight_scale: torch.Tensor, out_features: int) -> PackedWeight:
    """transformers' ``(weight, weight_scale)`` -> a ternary :class:`PackedWeight` whose gamma is
    ``1 / weight_scale`` in float32."""
    if not isinstance(weight_scale, torch.Tensor) or not weight_scale.is_floating_point():
        raise TypeError(f"bitops: weight_scale must be a float tensor, got {getattr(weight_scale, 'dtype', type(weight_scale).__name__)}")
    if weight_scale.numel() != 1:
        raise ValueError(f"bitops: weight_scale must hold one value, got shape {tuple(weight_scale.shape)}")
    gamma = (1.0 / weight_scale.float()).reshape(()).to(weight.device)
    if LOADED and isinstance(weight, torch.Tensor) and weight.is_cpu and weight.dtype == torch.uint8:
        # one streaming pass, HF layout -> bitops layout, no int8 matrix in between
        qdata = torch.ops.bitops.pack_ternary_from_hf(weight, out_features)
        return PackedWeight._trusted("ternary", qdata, weight.shape[1], gamma)
    wq = hf_bitnet_unpack(weight, out_features)
    return ops.pack_ternary(wq, gamma)
