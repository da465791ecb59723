"""The pure-torch oracle: every op of bitops in plain, obviously correct torch.

Every native kernel (CPU scalar, AVX2, AVX-512 VNNI, CUDA) is tested against these functions,
bit-exactly wherever the math is integer, and bitops falls back to them when its
extension cannot be loaded. The formulas are those of DESIGN.md section 1; the
packed layouts are defined in ``csrc/kernels/layout.h`` and mirrored here.
"""

from __future__ import annotations

import torch

from .packed import MAX_K, PackedWeight, check_act_bits, linear_operands, unwrap

EPS = 1e-5

TERNARY_BLOCK = 128  # weights per block of the ternary layout
TERNARY_BLOCK_BYTES = 32
BINARY_BLOCK = 256  # weights per padded unit of the binary layout
BINARY_BLOCK_BYTES = 32

__all__ = [
    "ternary_quantize",
    "absmean",
    "binary_quantize",
    "quantize_activations",
    "binarize_activations",
    "pack_ternary",
    "unpack_ternary",
    "pack_binary",
    "unpack_binary",
    "validate_ternary",
    "validate_binary",
    "ternary_matmul_int",
    "binary_matmul_int",
    "ternary_linear",
    "binary_linear",
    "ternary_row_bytes",
    "binary_row_bytes",
    "rms_norm",
    "bf16_linear",
]


def ternary_row_bytes(k: int) -> int:
    """Bytes per packed ternary row: K rounded up to 128 weights, 4 weights a byte."""
    return -(-k // TERNARY_BLOCK) * TERNARY_BLOCK_BYTES


def binary_row_bytes(k: int) -> int:
    """Bytes per packed binary row: K rounded up to 256 bits."""
    return -(-k // BINARY_BLOCK) * BINARY_BLOCK_BYTES


# --------------------------------------------------------------------------- checks


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 1 or k > MAX_K:
        raise ValueError(f"k must be in [1, {MAX_K}] (int32 accumulation must stay exact), got {k}")


def _check_packed(packed: torch.Tensor, k: int, row_bytes: int, name: str = "packed") -> None:
    if not isinstance(packed, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(packed).__name__}")
    if packed.dtype != torch.uint8:
        raise TypeError(f"{name} must be uint8, got {packed.dtype}")
    if packed.dim() != 2:
        raise ValueError(f"{name} must be 2-D [N, row_bytes], got shape {tuple(packed.shape)}")
    if packed.shape[1] != row_bytes:
        raise ValueError(
            f"{name} has rows of {packed.shape[1]} bytes, but k={k} needs {row_bytes} bytes per row"
        )


def _has_data(t: torch.Tensor) -> bool:
    """Meta tensors have shapes but no values: value checks are skipped, shape checks still run."""
    return t.device.type != "meta"


def _check_float(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"{name} must be float32, float16 or bfloat16, got {x.dtype}")
    if x.dim() < 1:
        raise ValueError(f"{name} must have at least one dimension, got a scalar")


def _check_int8(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.int8:
        raise TypeError(f"{name} must be int8, got {x.dtype}")


def _check_scale(scale: torch.Tensor, n: int, name: str) -> None:
    if not isinstance(scale, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(scale).__name__}")
    if scale.dtype != torch.float32:
        raise TypeError(f"{name} must be float32, got {scale.dtype}")
    if scale.numel() != 1 and tuple(scale.shape) != (n,):
        raise ValueError(f"{name} must hold one value or [N={n}] values, got shape {tuple(scale.shape)}")


def _check_bias(bias: torch.Tensor | None, n: int) -> None:
    if bias is None:
        return
    if not isinstance(bias, torch.Tensor):
        raise TypeError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
    if bias.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"bias must be a float tensor, got {bias.dtype}")
    if tuple(bias.shape) != (n,):
        raise ValueError(f"bias must have shape [N={n}], got {tuple(bias.shape)}")


# --------------------------------------------------------------------------- quantizers


def ternary_quantize(w: torch.Tensor, per_channel: bool = False):
    """absmean ternary quantisation (BitNet b1.58).

    ``gamma = mean(|W|)`` (whole tensor, or per output row when ``per_channel``),
    ``Wq = clamp(round(W / max(gamma, eps)), -1, 1)`` as int8 (NaN weights: 0); ``W ~ gamma * Wq``.
    Returns ``(wq int8, gamma float32)``; gamma is a 0-d tensor or ``[N]``.
    """
    wf = w.float()
    gamma, denom = absmean(w, per_channel)
    if per_channel:
        denom = denom[:, None]
    wq = torch.round(wf / denom).clamp_(-1, 1).nan_to_num_(0.0).to(torch.int8)  # NaN -> 0
    return wq, gamma


def absmean(w: torch.Tensor, per_channel: bool = False):
    """The scale of :func:`ternary_quantize`: ``(gamma, divisor)``, ``gamma = mean(|W|)`` (whole
    tensor, or per output row) and ``divisor = max(gamma, eps)``, both float32."""
    _check_float(w, "w")
    if per_channel:
        if w.dim() != 2:
            raise ValueError(f"per_channel quantisation needs a 2-D weight, got shape {tuple(w.shape)}")
        gamma = w.float().abs().mean(dim=1)
    else:
        gamma = _abs_sum(w).div_(w.numel()).float()  # 0 / 0 = NaN for an empty w, as mean()
    return gamma, gamma.clamp_min(EPS)


_ABS_SUM_CHUNK = 1 << 20  # elements: the |w| temporary stays small (no fresh pages each step)


def _abs_sum(w: torch.Tensor) -> torch.Tensor:
    """sum(|w|) over fixed chunks in order: each chunk summed by torch in float32 (a cascaded
    sum), the chunk sums added in float64 (the same value on every call with the same threads)."""
    flat = w.reshape(-1) if w.is_contiguous() else w.contiguous().reshape(-1)
    total = torch.zeros((), dtype=torch.float64, device=w.device)
    for start in range(0, flat.numel(), _ABS_SUM_CHUNK):
        total += flat[start : start + _ABS_SUM_CHUNK].abs().sum(dtype=torch.float32)
    return total


def binary_quantize(w: torch.Tensor, per_channel: bool = False):
    """Sign binarisation of weights.

    ``Wq = +1 where W >= 0 else -1`` (so -0.0 gives +1), ``beta = mean(|W|)``
    (whole tensor, or per output row). Returns ``(wq int8, beta float32)``.
    """
    _check_float(w, "w")
    wf = w.float()
    if per_channel:
        if wf.dim() != 2:
            raise ValueError(f"per_channel quantisation needs a 2-D weight, got shape {tuple(w.shape)}")
        beta = wf.abs().mean(dim=1)
    else:
        beta = wf.abs().mean()
    wq = torch.where(wf >= 0, 1, -1).to(torch.int8)
    return wq, beta


def _row_is_finite(xf: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(xf).all(dim=-1)


def quantize_activations(x: torch.Tensor):
    """Per-row int8 absmax quantisation over the last dimension.

    ``s = 127 / max(max|x|, eps)`` as a true float32 division,
    ``xq = clamp(round(x * s), -128, 127)`` with round-half-to-even, so ``x ~ xq / s``.
    A row holding NaN or +-Inf gets ``s = NaN`` and ``xq = 0`` (its outputs become NaN).
    Returns ``(xq int8 [..., K], s float32 [...])``.
    """
    _check_float(x, "x")
    _check_k(x.shape[-1])
    xf = x.float()
    amax = xf.abs().amax(dim=-1).clamp_min(EPS)
    s = torch.full_like(amax, 127.0) / amax  # a true division, not reciprocal * 127
    finite = _row_is_finite(xf)
    s = torch.where(finite, s, torch.full_like(s, float("nan")))
    xq = torch.round(xf * s[..., None]).clamp_(-128, 127)
    xq = torch.where(finite[..., None], xq, torch.zeros_like(xq)).to(torch.int8)
    return xq, s


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dimension in float32, as the fused kernels compute it:
    ``r = float32(1 / sqrt(sum(x^2) / K + eps))`` with the sum of squares in float64, then
    ``(x * r) * weight`` in float32 (two roundings, in that order). Differentiable.
    """
    xf = x.float()
    ms = xf.double().square().sum(dim=-1, keepdim=True) / xf.shape[-1]  # a division, not * (1 / K)
    r = (1.0 / torch.sqrt(ms + eps)).float()
    return (xf * r) * weight.float()


def binarize_activations(x: torch.Tensor):
    """Sign binarisation of activations into the packed binary format.

    ``bit = 1 where x >= 0`` (0 and -0.0 map to +1). Returns ``(bits uint8 [..., row_bytes], s)``
    where ``s`` is 1 per row, or NaN for a row holding NaN or +-Inf.
    """
    _check_float(x, "x")
    _check_k(x.shape[-1])
    xf = x.float()
    k = xf.shape[-1]
    signs = torch.where(xf >= 0, 1, -1).to(torch.int8)
    bits = _binary_bytes(signs.reshape(-1, k)).reshape(*xf.shape[:-1], binary_row_bytes(k))
    s = torch.where(_row_is_finite(xf), 1.0, float("nan")).to(torch.float32)
    return bits, s


# --------------------------------------------------------------------------- packing


def _ternary_bytes(wq: torch.Tensor) -> torch.Tensor:
    _check_int8(wq, "wq")
    if wq.dim() != 2:
        raise ValueError(f"wq must be 2-D [N, K], got shape {tuple(wq.shape)}")
    n, k = wq.shape
    _check_k(k)
    if _has_data(wq) and ((wq < -1) | (wq > 1)).any():
        raise ValueError("wq must hold only -1, 0 and 1 to be packed as ternary")
    kp = -(-k // TERNARY_BLOCK) * TERNARY_BLOCK
    codes = torch.ones(n, kp, dtype=torch.uint8, device=wq.device)
    codes[:, :k] = (wq.to(torch.int16) + 1).to(torch.uint8)
    # [N, blocks, 4 runs of 32, 32] -> byte j of a block = runs 0..3 at position j
    runs = codes.reshape(n, kp // TERNARY_BLOCK, 4, 32)
    packed = (runs[:, :, 0] << 6) | (runs[:, :, 1] << 4) | (runs[:, :, 2] << 2) | runs[:, :, 3]
    return packed.reshape(n, ternary_row_bytes(k)).contiguous()


def _binary_bytes(wq: torch.Tensor) -> torch.Tensor:
    _check_int8(wq, "wq")
    if wq.dim() != 2:
        raise ValueError(f"wq must be 2-D [N, K], got shape {tuple(wq.shape)}")
    n, k = wq.shape
    _check_k(k)
    if _has_data(wq) and ((wq != 1) & (wq != -1)).any():
        raise ValueError("wq must hold only -1 and +1 to be packed as binary")
    kp = binary_row_bytes(k) * 8
    bits = torch.zeros(n, kp, dtype=torch.uint8, device=wq.device)
    bits[:, :k] = (wq > 0).to(torch.uint8)
    weights = (1 << torch.arange(8, device=wq.device, dtype=torch.int32)).to(torch.uint8)
    return (bits.reshape(n, kp // 8, 8) * weights).sum(dim=-1, dtype=torch.int32).to(torch.uint8).contiguous()


def _with_scale(kind, qdata, k, scale):
    pw = PackedWeight._trusted(kind, qdata, k)
    return pw if scale is None else pw.with_scale(scale)


def pack_ternary(wq: torch.Tensor, scale: torch.Tensor | None = None) -> PackedWeight:
    """Pack int8 ternary weights ``[N, K]`` (values in {-1, 0, 1}) into a :class:`PackedWeight`.

    Its buffer is ``uint8 [N, ternary_row_bytes(K)]``: within each 128-weight block, byte ``j``
    holds the codes ``w + 1`` of weights ``j, j+32, j+64, j+96`` in bits ``7:6, 5:4, 3:2, 1:0``;
    rows are padded with code 1 (weight 0). ``scale`` (gamma) is stored with it if given.
    """
    return _with_scale("ternary", _ternary_bytes(wq), wq.shape[1], scale)


def _ternary_codes(qdata: torch.Tensor) -> torch.Tensor:
    """Every 2-bit code of a buffer in weight order, padding included: ``uint8 [N, row_bytes * 4]``."""
    n = qdata.shape[0]
    blocks = qdata.reshape(n, qdata.shape[1] // 32, 1, 32)
    shifts = torch.tensor([6, 4, 2, 0], dtype=torch.uint8, device=qdata.device).reshape(1, 1, 4, 1)
    return ((blocks >> shifts) & 3).reshape(n, qdata.shape[1] * 4)


def unpack_ternary(packed, k: int | None = None) -> torch.Tensor:
    """Invert :func:`pack_ternary`: a :class:`PackedWeight` (or a raw buffer and ``k``) -> ``int8 [N, K]``.

    Raises ``ValueError`` if a weight within the first K of a row has the invalid code 3.
    """
    qdata, k, _ = unwrap("ternary", packed, k, "k")
    _check_packed(qdata, k, ternary_row_bytes(k))
    codes = _ternary_codes(qdata)[:, :k]
    if _has_data(codes) and (codes == 3).any():
        raise ValueError("packed ternary weights are corrupt: found the invalid code 3")
    return (codes.to(torch.int8) - 1).contiguous()


def pack_binary(wq: torch.Tensor, scale: torch.Tensor | None = None) -> PackedWeight:
    """Pack ``[N, K]`` values in {-1, +1} into a :class:`PackedWeight`.

    Its buffer is ``uint8 [N, binary_row_bytes(K)]``: bit ``k % 8`` of byte ``k // 8`` is set
    where the value is +1; padding bits are 0. ``scale`` (beta) is stored with it if given.
    """
    return _with_scale("binary", _binary_bytes(wq), wq.shape[1], scale)


def _binary_bits(qdata: torch.Tensor) -> torch.Tensor:
    n = qdata.shape[0]
    shifts = torch.arange(8, device=qdata.device, dtype=torch.uint8)
    return ((qdata[:, :, None] >> shifts) & 1).reshape(n, qdata.shape[1] * 8)


def unpack_binary(packed, k: int | None = None) -> torch.Tensor:
    """Invert :func:`pack_binary`: -> ``int8 [N, K]`` in {-1, +1}."""
    qdata, k, _ = unwrap("binary", packed, k, "k")
    _check_packed(qdata, k, binary_row_bytes(k))
    return (_binary_bits(qdata)[:, :k].to(torch.int8) * 2 - 1).contiguous()


def _first_true_row(bad_rows: torch.Tensor) -> int:
    rows = bad_rows.nonzero()
    return int(rows[0, 0]) if rows.numel() else -1


def validate_ternary(packed: torch.Tensor, k: int) -> int:
    """First row of a raw ternary buffer that is not canonical (code 3 within K, or a padding
    weight other than code 1), or -1. Canonical means ``pack(unpack(p)) == p``."""
    _check_k(k)
    _check_packed(packed, k, ternary_row_bytes(k))
    codes = _ternary_codes(packed)
    bad = (codes[:, :k] == 3).any(dim=1) | (codes[:, k:] != 1).any(dim=1)
    return _first_true_row(bad)


def validate_binary(packed: torch.Tensor, k: int) -> int:
    """First row of a raw binary buffer with a set padding bit, or -1."""
    _check_k(k)
    _check_packed(packed, k, binary_row_bytes(k))
    return _first_true_row(_binary_bits(packed)[:, k:].any(dim=1))


# --------------------------------------------------------------------------- matmuls


def _int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact ``a @ b.T`` of small integers: float64 holds every partial sum exactly (< 2^53)."""
    return (a.double() @ b.double().T).to(torch.int32)


def _flatten(x: torch.Tensor, k: int, name: str) -> torch.Tensor:
    if x.shape[-1] != k:
        raise ValueError(f"{name} has {x.shape[-1]} features in its last dimension, but k={k}")
    return x.reshape(-1, k)


def ternary_matmul_int(xq: torch.Tensor, packed, k: int | None = None) -> torch.Tensor:
    """Exact ``acc[m, n] = sum_k xq[m, k] * Wq[n, k]`` as int32 ``[..., N]``."""
    qdata, k, _ = unwrap("ternary", packed, k, "k")
    _check_int8(xq, "xq")
    _check_k(k)
    _check_packed(qdata, k, ternary_row_bytes(k))
    x2 = _flatten(xq, k, "xq")
    acc = _int_matmul(x2, unpack_ternary(qdata, k))
    return acc.reshape(*xq.shape[:-1], qdata.shape[0])


def binary_matmul_int(xbits: torch.Tensor, wbits, k: int | None = None) -> torch.Tensor:
    """Exact XNOR-popcount product of packed signs: ``acc[m, n] = sum_k sx[m, k] * sw[n, k]``."""
    wbits, k, _ = unwrap("binary", wbits, k, "k")
    if isinstance(xbits, PackedWeight):  # sign bits packed with pack_binary
        xbits = xbits.qdata
    _check_k(k)
    _check_packed(wbits, k, binary_row_bytes(k), "wbits")
    if not isinstance(xbits, torch.Tensor) or xbits.dtype != torch.uint8:
        raise TypeError("xbits must be a uint8 tensor of packed binary activations")
    if xbits.dim() < 1 or xbits.shape[-1] != binary_row_bytes(k):
        raise ValueError(
            f"xbits must have rows of {binary_row_bytes(k)} bytes for k={k}, got shape {tuple(xbits.shape)}"
        )
    x2 = unpack_binary(xbits.reshape(-1, xbits.shape[-1]), k)
    acc = _int_matmul(x2, unpack_binary(wbits, k))
    return acc.reshape(*xbits.shape[:-1], wbits.shape[0])


def _epilogue(acc: torch.Tensor, s: torch.Tensor | None, scale: torch.Tensor, bias, out_dtype):
    """``y = float(acc) * (scale[n] / s[m]) + bias[n]``, each step one float32 rounding."""
    scale = scale.float().reshape(-1)  # [1] or [N]
    factor = scale[None, :] if s is None else scale[None, :] / s.reshape(-1, 1)
    y = acc.float() * factor
    if bias is not None:
        y = y + bias.float()
    return y.to(out_dtype)


def _linear_checks(kind, x, packed, scale, bias, in_features, scale_name):
    _check_float(x, "x")
    qdata, k, scale = linear_operands(kind, x, packed, scale, in_features, scale_name)
    row_bytes_fn = ternary_row_bytes if kind == "ternary" else binary_row_bytes
    _check_packed(qdata, k, row_bytes_fn(k))
    n = qdata.shape[0]
    _check_scale(scale, n, scale_name)
    _check_bias(bias, n)
    return qdata, scale, k, n


def ternary_linear(x, packed, gamma=None, bias=None, act_bits=8, *, in_features=None):
    """A linear layer over packed ternary weights (a :class:`PackedWeight`, or a raw buffer with
    ``in_features=K``; ``gamma`` from the argument or, if None, from the PackedWeight).

    ``act_bits=8``:  ``y = (sum_k xq[m,k] * Wq[n,k]) * (gamma / s[m]) + bias`` with xq, s from
    :func:`quantize_activations` (integer sum exact).
    ``act_bits=None``: ``y = (sum_k x[m,k] * Wq[n,k]) * gamma + bias`` in float32.
    The result has x's dtype and shape ``[..., N]``.
    """
    check_act_bits("ternary", act_bits)
    packed, gamma, k, n = _linear_checks("ternary", x, packed, gamma, bias, in_features, "gamma")
    x2 = x.reshape(-1, k)
    wq = unpack_ternary(packed, k)
    if act_bits == 8:
        xq, s = quantize_activations(x2)
        y = _epilogue(_int_matmul(xq, wq), s, gamma, bias, x.dtype)
    else:
        y = _epilogue(x2.float() @ wq.float().T, None, gamma, bias, x.dtype)
    return y.reshape(*x.shape[:-1], n)


def binary_linear(x, packed, beta=None, bias=None, act_bits=8, *, in_features=None):
    """A linear layer over packed binary (+-1) weights (arguments as :func:`ternary_linear`).

    ``act_bits=8``: int8 absmax activations, ``y = acc * (beta / s[m]) + bias``.
    ``act_bits=1``: sign activations, ``y = (sum_k sign(x) * sign(w)) * beta + bias`` (XNOR-popcount);
    rows of x holding NaN or +-Inf give NaN.
    ``act_bits=None``: float activations, ``y = (x @ Wb.T) * beta + bias``.
    """
    check_act_bits("binary", act_bits)
    packed, beta, k, n = _linear_checks("binary", x, packed, beta, bias, in_features, "beta")
    x2 = x.reshape(-1, k)
    wb = unpack_binary(packed, k)
    if act_bits == 8:
        xq, s = quantize_activations(x2)
        y = _epilogue(_int_matmul(xq, wb), s, beta, bias, x.dtype)
    elif act_bits == 1:
        xbits, s = binarize_activations(x2)
        acc = _int_matmul(unpack_binary(xbits, k), wb)
        y = _epilogue(acc, s, beta, bias, x.dtype)
    else:
        y = _epilogue(x2.float() @ wb.float().T, None, beta, bias, x.dtype)
    return y.reshape(*x.shape[:-1], n)


# --------------------------------------------------------------------------- dense bf16


def bf16_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` for a bf16 ``weight`` [N, K], summed in float64, in x's dtype.

    The oracle of the native streaming GEMV (which sums in float32, csrc/kernels/cpu/bf16_gemv.h).
    """
    _check_float(x, "x")
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dtype != torch.bfloat16:
        raise TypeError(f"weight must be bfloat16, got {weight.dtype}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D [N, K], got shape {tuple(weight.shape)}")
    n, k = weight.shape
    _check_k(k)
    if x.shape[-1] != k:
        raise ValueError(f"x must have k={k} features in its last dimension, got shape {tuple(x.shape)}")
    _check_bias(bias, n)
    y = x.double() @ weight.double().T
    if bias is not None:
        y = y + bias.double()
    return y.to(x.dtype)
