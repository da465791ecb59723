"""PackedWeight: a packed ternary or binary weight matrix that knows what it is.

A bare ``uint8`` buffer does not say how many weights a row holds: K = 64 and K = 100 pack to
the same 32-byte rows. A :class:`PackedWeight` carries everything an op needs to use the buffer
safely: its kind, its logical shape ``[N, K]``, its scale (one value, or one per output row;
optional) and the layout version of ``csrc/kernels/layout.h``. ``bitops.pack_ternary`` and
``bitops.pack_binary`` return one, and every op, module and converter takes one.

Why a small class and not a ``torch.Tensor`` subclass (the torchao way): see ``docs/packed_weights.md``.
In short: nothing in PyTorch should ever treat the packed bytes as a tensor of values (an
``x @ w`` or ``w + 1`` on them would be silent garbage), modules keep the buffers as ordinary
registered buffers (so ``.to()``, ``state_dict``, DDP broadcast and ``torch.compile`` see plain
tensors), and the object costs nothing per call.
"""

from __future__ import annotations

import torch

__all__ = ["PackedWeight", "LAYOUT_VERSION", "KINDS", "row_bytes"]

LAYOUT_VERSION = 1  # bump when csrc/kernels/layout.h changes; checkpoints record it
KINDS = ("ternary", "binary")
MAX_K = (1 << 24) - 1  # int32 accumulation is exact while |sum| <= 128 * K <= 2^31 - 1

_TERNARY_BLOCK, _TERNARY_BLOCK_BYTES = 128, 32
_BINARY_BLOCK, _BINARY_BLOCK_BYTES = 256, 32


def row_bytes(kind: str, k: int) -> int:
    """Bytes per packed row of ``k`` weights (rows are padded to whole blocks)."""
    if kind == "ternary":
        return -(-k // _TERNARY_BLOCK) * _TERNARY_BLOCK_BYTES
    return -(-k // _BINARY_BLOCK) * _BINARY_BLOCK_BYTES


def check_k(k, name: str = "in_features") -> int:
    if type(k) is not int:  # bool and numpy ints are refused too: a K is a plain int
        raise TypeError(f"bitops: {name} must be an int, got {type(k).__name__}")
    if not 1 <= k <= MAX_K:
        raise ValueError(f"bitops: {name} must be in [1, {MAX_K}] so that int32 accumulation stays exact, got {k}")
    return k


def check_buffer(qdata, kind: str, k: int, name: str = "packed") -> None:
    """Shape and dtype of a packed buffer for ``k`` weights a row (values are checked elsewhere)."""
    if not isinstance(qdata, torch.Tensor):
        raise TypeError(f"bitops: {name} must be a torch.Tensor, got {type(qdata).__name__}")
    if qdata.dtype != torch.uint8:
        raise TypeError(f"bitops: {name} must be uint8, got {qdata.dtype}")
    if qdata.layout != torch.strided:
        raise TypeError(f"bitops: {name} must be a dense (strided) tensor, got {qdata.layout}")
    if qdata.dim() != 2:
        raise ValueError(f"bitops: {name} must be 2-D [N, row_bytes], got shape {tuple(qdata.shape)}")
    want = row_bytes(kind, k)
    if qdata.shape[1] != want:
        raise ValueError(
            f"bitops: {name} has rows of {qdata.shape[1]} bytes, but {kind} weights with "
            f"in_features={k} need {want} bytes per row"
        )


def check_scale(scale, n: int, device, name: str = "scale") -> None:
    """A weight scale: float32, one value (shape ``()`` or ``[1]``) or ``[N]``, on the buffer's device."""
    if not isinstance(scale, torch.Tensor):
        raise TypeError(f"bitops: {name} must be a torch.Tensor, got {type(scale).__name__}")
    if scale.dtype != torch.float32:
        raise TypeError(f"bitops: {name} must be float32, got {scale.dtype}")
    if tuple(scale.shape) not in ((), (1,), (n,)):
        raise ValueError(f"bitops: {name} must hold one value or [N={n}] values, got shape {tuple(scale.shape)}")
    if scale.device != device:
        raise ValueError(f"bitops: {name} is on {scale.device}, but the packed weights are on {device}")


class PackedWeight:
    """Packed weights ``[N, K]`` of one kind, with their scale and layout.

    Attributes:
        kind: ``"ternary"`` (2 bits a weight) or ``"binary"`` (1 bit a weight).
        qdata: the packed bytes, ``uint8 [N, row_bytes(K)]`` (layout: ``csrc/kernels/layout.h``).
        in_features: K, the number of weights in a row. ``out_features`` (N) is ``qdata.shape[0]``.
        scale: float32, one value or ``[N]``: gamma (ternary) or beta (binary); ``None`` when the
            caller passes the scale to each op instead.
        layout: the layout version (:data:`LAYOUT_VERSION`).

    Made by :func:`bitops.pack_ternary` / :func:`bitops.pack_binary`. Constructed directly from a
    buffer packed elsewhere, it checks the buffer completely (shape, dtype, and that every code
    is valid and every padding weight is canonical), so a corrupt buffer fails here, once,
    with a clear ``ValueError``, on every device alike.
    """

    def __init__(self, kind: str, qdata: torch.Tensor, in_features: int, scale: torch.Tensor | None = None,
                 layout: int = LAYOUT_VERSION):
        if kind not in KINDS:
            raise ValueError(f"bitops: kind must be 'ternary' or 'binary', got {kind!r}")
        if layout != LAYOUT_VERSION:
            raise ValueError(f"bitops: packed layout version {layout!r}, this bitops reads {LAYOUT_VERSION}")
        check_k(in_features)
        check_buffer(qdata, kind, in_features)
        if scale is not None:
            check_scale(scale, qdata.shape[0], qdata.device)
        from .validate import validate_packed  # late: validation calls the ops, which import this module

        validate_packed(kind, qdata, in_features)
        self._set(kind, qdata, in_features, scale)

    @classmethod
    def _trusted(cls, kind, qdata, in_features, scale=None) -> PackedWeight:
        """For buffers bitops itself just packed: no checks (they hold by construction)."""
        self = cls.__new__(cls)
        self._set(kind, qdata, in_features, scale)
        return self

    def _set(self, kind, qdata, in_features, scale):
        self.kind, self.qdata, self.in_features, self.scale = kind, qdata, in_features, scale
        self.layout = LAYOUT_VERSION

    # ------------------------------------------------------------------ what it is

    @property
    def out_features(self) -> int:
        return self.qdata.shape[0]

    @property
    def shape(self) -> torch.Size:
        """The logical shape ``[N, K]`` of the weight matrix (not of the buffer)."""
        return torch.Size((self.qdata.shape[0], self.in_features))

    @property
    def device(self) -> torch.device:
        return self.qdata.device

    @property
    def nbytes(self) -> int:
        """Bytes of the packed buffer (and of the scale)."""
        scale = 0 if self.scale is None else self.scale.numel() * 4
        return self.qdata.numel() + scale

    def __repr__(self) -> str:
        scale = "none" if self.scale is None else ("per-row" if self.scale.numel() > 1 else "per-tensor")
        return (f"PackedWeight(kind={self.kind!r}, shape={list(self.shape)}, scale={scale}, "
                f"device={self.device}, layout={self.layout})")

    # ------------------------------------------------------------------ moving and viewing

    def to(self, device) -> PackedWeight:
        """The same weights on ``device`` (the scale stays float32). Returns self if already there."""
        if not isinstance(device, (str, torch.device, int)):
            raise TypeError(f"bitops: PackedWeight.to takes a device, got {type(device).__name__}; "
                            "packed weights have no float dtype to cast (the scale stays float32)")
        device = torch.device(device)
        if device == self.device:
            return self
        scale = None if self.scale is None else self.scale.to(device)
        return PackedWeight._trusted(self.kind, self.qdata.to(device), self.in_features, scale)

    def cpu(self) -> PackedWeight:
        return self.to("cpu")

    def cuda(self, device=None) -> PackedWeight:
        return self.to(torch.device("cuda") if device is None else torch.device("cuda", device) if isinstance(device, int) else device)

    def with_scale(self, scale: torch.Tensor | None) -> PackedWeight:
        """The same packed bytes (shared) with another scale."""
        if scale is not None:
            check_scale(scale, self.out_features, self.device)
        return PackedWeight._trusted(self.kind, self.qdata, self.in_features, scale)

    def unpack(self) -> torch.Tensor:
        """int8 ``[N, K]``: {-1, 0, 1} (ternary) or {-1, 1} (binary)."""
        from . import ops

        return ops.unpack_ternary(self) if self.kind == "ternary" else ops.unpack_binary(self)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``scale * Wq`` as a float ``[N, K]`` matrix (needs a scale)."""
        if self.scale is None:
            raise ValueError("bitops: this PackedWeight has no scale; use unpack() for the int8 values")
        w = self.unpack().to(torch.float32)
        return w.mul_(self.scale.reshape(-1, 1)).to(dtype)


# --------------------------------------------------------------------------- what ops accept


def check_act_bits(kind: str, act_bits) -> None:
    """``act_bits`` exactly 8 or None (ternary), 8, 1 or None (binary): not True, not 8.0."""
    allowed = (8, None) if kind == "ternary" else (8, 1, None)
    if not (act_bits is None or (type(act_bits) is int and act_bits in allowed)):
        names = "8 or None" if kind == "ternary" else "8, 1 or None"
        raise ValueError(f"bitops: {kind} weights take act_bits={names}, got {act_bits!r}")


def unwrap(kind: str, packed, k, k_name: str = "k"):
    """``(qdata, k, scale)`` of a :class:`PackedWeight`, or of a raw buffer with an explicit ``k``."""
    if isinstance(packed, PackedWeight):
        if k is not None:
            check_k(k, k_name)
        if packed.kind != kind:
            raise ValueError(f"bitops: the packed weights are {packed.kind}, but this op takes {kind} weights")
        if k is not None and k != packed.in_features:
            raise ValueError(f"bitops: {k_name}={k} does not match the packed weights' in_features={packed.in_features}")
        return packed.qdata, packed.in_features, packed.scale
    if not isinstance(packed, torch.Tensor):
        raise TypeError(f"bitops: packed must be a PackedWeight (or a uint8 tensor with {k_name}=K), "
                        f"got {type(packed).__name__}")
    if k is None:
        raise TypeError(f"bitops: packed is a raw uint8 buffer, which does not record how many weights a row "
                        f"holds; pass the PackedWeight from bitops.pack_{kind}, or {k_name}=K")
    return packed, check_k(k, k_name), None


def linear_operands(kind: str, x, packed, scale, in_features, scale_name: str):
    """``(qdata, k, scale)`` for a linear op, with x's feature count checked against K exactly."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"bitops: x must be a torch.Tensor, got {type(x).__name__}")
    qdata, k, own_scale = unwrap(kind, packed, in_features, "in_features")
    if scale is None:
        scale = own_scale
        if scale is None:
            raise ValueError(f"bitops: no {scale_name}: pass it, or pack the weights with it "
                             f"(bitops.pack_{kind}(wq, {scale_name}))")
    elif own_scale is not None and scale is not own_scale:
        raise ValueError(f"bitops: {scale_name} given twice: the packed weights carry their own scale; "
                         f"pass {scale_name}=None, or use packed.with_scale(...)")
    if x.is_nested or x.layout != torch.strided:
        raise TypeError(f"bitops: x must be a dense (strided) tensor, got a {'nested' if x.is_nested else x.layout} tensor")
    if x.dim() == 0:
        raise ValueError("bitops: x must have at least one dimension, got a scalar")
    if x.shape[-1] != k:
        raise ValueError(f"bitops: x has {x.shape[-1]} features in its last dimension, but the packed weights "
                         f"have in_features={k}")
    return qdata, k, scale
