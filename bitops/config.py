"""The layer configurations bitops supports: weight kind x activation width."""

from __future__ import annotations

__all__ = ["WEIGHT_KINDS", "ACT_BITS", "check_config"]

WEIGHT_KINDS = ("ternary", "binary")
ACT_BITS = (8, 1, None)


def check_config(weight: str, act_bits) -> None:
    """Raises ValueError for an unknown weight kind or an activation width other than exactly
    8, 1 or None (``True`` and ``8.0`` are refused: they compare equal to 1 and 8 but are not widths)."""
    if weight not in WEIGHT_KINDS:
        raise ValueError(f"bitops: weight must be 'ternary' or 'binary', got {weight!r}")
    if not (act_bits is None or (type(act_bits) is int and act_bits in ACT_BITS)):
        raise ValueError(f"bitops: act_bits must be 8, 1 or None, got {act_bits!r}")
    if act_bits == 1 and weight != "binary":
        raise ValueError(
            "bitops: act_bits=1 (sign activations, XNOR-popcount) needs binary weights; "
            f"got weight={weight!r}. Use weight='binary', or act_bits=8 / None with ternary weights"
        )
