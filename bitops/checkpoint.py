"""Save and load models (packed or not) as safetensors: tensors only, nothing unpickled.

The file holds every tensor of ``model.state_dict()`` under its state_dict name; the small
non-tensor records (``PackedBitLinear``'s ``_extra_state``: weight kind, act_bits, sizes,
format version) go into the safetensors header metadata as JSON under ``bitops.extra_state``.
Loading checks names, shapes and dtypes against the model before copying anything, then
``load_state_dict`` runs the modules' own checks (e.g. corrupt packed buffers).

    bitops.checkpoint.save(bitops.nn.pack_model(model), "model.safetensors")
    bitops.checkpoint.load(packed_model, "model.safetensors")
"""

from __future__ import annotations

import json

import torch
from torch import nn

__all__ = ["save", "load"]

_EXTRA_KEY = "bitops.extra_state"


def _split(state_dict):
    tensors, extra = {}, {}
    for name, value in state_dict.items():
        if isinstance(value, torch.Tensor):
            # a copy of each: safetensors refuses shared storage (tied layers share tensors)
            tensors[name] = value.detach().to("cpu").contiguous().clone()
        else:
            extra[name] = value
    return tensors, extra


def save(model: nn.Module, path: str) -> None:
    """Writes ``model.state_dict()`` to ``path`` in the safetensors format."""
    from safetensors.torch import save_file

    tensors, extra = _split(model.state_dict())
    try:
        metadata = {_EXTRA_KEY: json.dumps(extra, sort_keys=True)}
    except TypeError as exc:
        raise TypeError(f"bitops.checkpoint.save: a non-tensor state entry is not JSON-serialisable ({exc})") from exc
    save_file(tensors, path, metadata=metadata)


def load(model: nn.Module, path: str, strict: bool = True) -> nn.Module:
    """Loads a file written by :func:`save` into ``model``, bit-exactly; returns the model.

    Raises ``ValueError`` naming every tensor whose shape or dtype differs from the model's
    (no silent casts), and whatever ``load_state_dict`` reports (missing or unexpected keys,
    corrupt packed weights).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
    tensors = load_file(path)
    extra = json.loads(metadata.get(_EXTRA_KEY, "{}"))
    expected = model.state_dict()
    problems = []
    for name, tensor in tensors.items():
        mine = expected.get(name)
        if isinstance(mine, torch.Tensor):
            if tuple(mine.shape) != tuple(tensor.shape):
                problems.append(f"{name}: the model has shape {tuple(mine.shape)}, the file {tuple(tensor.shape)}")
            elif mine.dtype != tensor.dtype:
                problems.append(f"{name}: the model has dtype {mine.dtype}, the file {tensor.dtype}")
    if problems:
        raise ValueError(f"bitops.checkpoint.load: {path} does not match the model:\n  " + "\n  ".join(problems))
    model.load_state_dict({**tensors, **extra}, strict=strict)
    return model
