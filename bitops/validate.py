"""Checks that a packed buffer is in canonical form, once, when it enters bitops.

Canonical: every ternary code within K is valid (0, 1, 2; never 3) and every padding weight
has the code of 0; every binary padding bit is clear. That is exactly "re-packing the unpacked
weights gives the same bytes", checked without unpacking. On the CPU a native kernel streams the
buffer; elsewhere (CUDA, or no extension) the pure-torch check of :mod:`bitops.reference` runs on
the buffer's own device. Either way a corrupt buffer raises the same ``ValueError``, so a module
never behaves differently after ``.to('cuda')`` (the CUDA kernels do not look at codes).
"""

from __future__ import annotations

import torch

from . import reference as ref
from ._native import LOADED

__all__ = ["validate_packed", "first_bad_row"]


def first_bad_row(kind: str, qdata: torch.Tensor, k: int) -> int:
    """Index of the first row that is not in canonical form, or -1."""
    if qdata.numel() == 0 or qdata.device.type == "meta":
        return -1
    if LOADED and qdata.is_cpu:
        op = torch.ops.bitops.validate_ternary if kind == "ternary" else torch.ops.bitops.validate_binary
        return int(op(qdata, k))
    check = ref.validate_ternary if kind == "ternary" else ref.validate_binary
    return check(qdata, k)


def validate_packed(kind: str, qdata: torch.Tensor, k: int, name: str = "packed") -> None:
    """Raises ``ValueError`` naming the first bad row if ``qdata`` is not canonical."""
    bad = first_bad_row(kind, qdata, k)
    if bad >= 0:
        what = ("an invalid code 3 or a padding weight other than 0" if kind == "ternary"
                else "a set padding bit")
        raise ValueError(
            f"bitops: {name} is corrupt: row {bad} of the {kind} weights (in_features={k}) holds {what}; "
            f"pack weights with bitops.pack_{kind}"
        )
