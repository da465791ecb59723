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

__all__ = ["ternary_to_hf_bitnet", "ternary_from_hf_bitnet", "hf_bitnet_pack", "hf_bitnet_unpack"]

_HF_VALUES_PER_BYTE = 4


def hf_bitnet_pack(wq: torch.Tensor) -> torch.Tensor:
    """int8 ``[N, K]`` in {-1, 0, 1} -> the transformers BitNet packing, uint8 ``[ceil(N/4), K]``."""
    if wq.dtype != torch.int8 or wq.dim() != 2:
        raise ValueError(f"wq must be a 2-D int8 tensor, got {wq.dtype} with shape {tuple(wq.shape)}")
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
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        raise ValueError(f"packed must be a 2-D uint8 tensor, got {packed.dtype} with shape {tuple(packed.shape)}")
    rows = packed.shape[0]
    if not (rows - 1) * _HF_VALUES_PER_BYTE < out_features <= rows * _HF_VALUES_PER_BYTE:
        raise ValueError(f"packed has {rows} rows, which cannot hold out_features={out_features}")
    codes = torch.stack([(packed >> (2 * i)) & 3 for i in range(_HF_VALUES_PER_BYTE)])  # [4, R, K]
    codes = codes.reshape(_HF_VALUES_PER_BYTE * rows, packed.shape[1])[:out_features]
    if (codes == 3).any():
        raise ValueError("packed HF BitNet weights are corrupt: found the invalid code 3")
    return codes.to(torch.int8) - 1


def ternary_to_hf_bitnet(packed: torch.Tensor, gamma: torch.Tensor, in_features: int):
    """bitops packed ternary weights + gamma -> ``(weight, weight_scale)`` as transformers stores them."""
    if gamma.numel() != 1:
        raise ValueError("the transformers BitNet format has one weight scale per tensor; got per-channel gamma")
    wq = ops.unpack_ternary(packed, in_features)
    return hf_bitnet_pack(wq), (1.0 / gamma.float()).reshape(1)


def ternary_from_hf_bitnet(weight: torch.Tensor, weight_scale: torch.Tensor, out_features: int):
    """transformers' ``(weight, weight_scale)`` -> bitops ``(packed, gamma)``; gamma = 1 / weight_scale in float32."""
    wq = hf_bitnet_unpack(weight, out_features)
    gamma = (1.0 / weight_scale.float()).reshape(())
    return ops.pack_ternary(wq), gamma
