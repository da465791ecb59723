"""The public ops: native kernels when the extension is loaded, else the oracle.

Each function here resolves its packed weights (a :class:`~bitops.PackedWeight`, or a raw
buffer with an explicit K), then calls ``torch.ops.bitops.*`` (CPU or CUDA kernels; their C++
checks do the argument checking) or, where no native kernel serves that device,
:mod:`bitops.reference`. The linear ops are differentiable (straight-through gradients,
:mod:`bitops.autograd`). Fake (meta) implementations are registered so the ops trace under
``torch.compile``.
"""

from __future__ import annotations

import torch

from . import reference as ref
from ._native import HAS_CUDA, LOADED
from .autograd import reference_linear
from .packed import PackedWeight, check_act_bits, linear_operands, unwrap
from .validate import validate_packed

__all__ = [
    "ternary_quantize",
    "binary_quantize",
    "quantize_activations",
    "binarize_activations",
    "quantize_pack",
    "pack_ternary",
    "unpack_ternary",
    "pack_binary",
    "unpack_binary",
    "ternary_matmul_int",
    "binary_matmul_int",
    "ternary_linear",
    "binary_linear",
    "bf16_linear",
]

# The weight quantizers are a few torch ops: the contract has torch compute gamma/beta once.
ternary_quantize = ref.ternary_quantize
binary_quantize = ref.binary_quantize

_below_autograd = torch._C._AutoDispatchBelowAutograd
_is_compiling = torch.compiler.is_compiling
below_autograd, is_compiling = _below_autograd, _is_compiling


def _native_for(*tensors) -> bool:
    """True when the native kernels serve these tensors; raises on mixed or unsupported devices."""
    for t in tensors:  # the common case first: all on the CPU (device objects cost ~1 us a call)
        if isinstance(t, torch.Tensor) and not t.is_cpu:
            break
    else:
        return LOADED
    present = [t for t in tensors if isinstance(t, torch.Tensor)]
    for t in present:
        if t.is_cuda and LOADED and not HAS_CUDA:
            raise ValueError(
                f"bitops: a tensor is on {t.device}, but this bitops build has no CUDA kernels; "
                "rebuild with BITOPS_CUDA=1 on a machine with nvcc, or move the tensors to the CPU"
            )
    device = present[0].device
    for t in present[1:]:
        if t.device != device:
            raise ValueError(f"bitops: all tensors must be on one device, got {device} and {t.device}")
    return LOADED and device.type in ("cpu", "cuda")


def _check_tensor(t, name):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"bitops: {name} must be a torch.Tensor, got {type(t).__name__}")
    # the kernels read plain strided memory; say so instead of a dispatcher error naming a backend
    if t.layout != torch.strided or t.is_nested or t.is_quantized:
        kind = "nested" if t.is_nested else "quantized" if t.is_quantized else str(t.layout)
        raise TypeError(f"bitops: {name} must be a dense (strided) tensor, got a {kind} tensor")


def quantize_activations(x: torch.Tensor):
    """Per-row int8 absmax: ``(xq int8 [..., K], s float32 [...])``; see :func:`bitops.reference.quantize_activations`."""
    _check_tensor(x, "x")
    if _native_for(x):
        return tuple(torch.ops.bitops.quantize_activations(x))
    return ref.quantize_activations(x)


def binarize_activations(x: torch.Tensor):
    """Sign bits of x in the packed binary format, and s (1, or NaN for non-finite rows)."""
    _check_tensor(x, "x")
    if _native_for(x):
        return tuple(torch.ops.bitops.binarize_activations(x))
    return ref.binarize_activations(x)


def _packed(kind, wq, scale) -> PackedWeight:
    _check_tensor(wq, "wq")
    if scale is not None:
        _check_tensor(scale, "scale")
    if _native_for(wq):
        op = torch.ops.bitops.pack_ternary if kind == "ternary" else torch.ops.bitops.pack_binary
        qdata = op(wq)
    else:
        qdata = (ref.pack_ternary if kind == "ternary" else ref.pack_binary)(wq).qdata
    pw = PackedWeight._trusted(kind, qdata, wq.shape[1])
    return pw if scale is None else pw.with_scale(scale)


def pack_ternary(wq: torch.Tensor, gamma: torch.Tensor | None = None) -> PackedWeight:
    """int8 ``[N, K]`` in {-1, 0, 1} -> :class:`PackedWeight` (``uint8 [N, ternary_row_bytes(K)]``,
    layout: csrc/kernels/layout.h), carrying ``gamma`` if given."""
    return _packed("ternary", wq, gamma)


def pack_binary(wq: torch.Tensor, beta: torch.Tensor | None = None) -> PackedWeight:
    """int8 ``[N, K]`` in {-1, +1} -> :class:`PackedWeight` (bits, ``uint8 [N, binary_row_bytes(K)]``)."""
    return _packed("binary", wq, beta)


def quantize_pack(kind: str, w: torch.Tensor, transposed: bool = False):
    """Quantizes a float weight ``[N, K]`` (absmean ternary, or sign) and packs it: a
    :class:`PackedWeight` with its scale, bit-identical to ``pack_*(*{kind}_quantize(w))``;
    with ``transposed``, also the packed ``W^T`` (``[K, N]``, same scale): the weights of
    ``grad_x = grad_y @ W`` on the packed kernels. On the CPU one pass over w does both.
    """
    _check_tensor(w, "w")
    if kind == "ternary":
        scale, divisor = ref.absmean(w)
    elif kind == "binary":
        ref._check_float(w, "w")
        scale = w.float().abs().mean()
    else:
        raise ValueError(f"bitops: weight must be 'ternary' or 'binary', got {kind!r}")
    if w.is_cpu and LOADED:
        if kind == "ternary":
            parts = torch.ops.bitops.quantize_pack_ternary(w, divisor, transposed)
        else:
            parts = torch.ops.bitops.quantize_pack_binary(w, transposed)
        packed = [PackedWeight._trusted(kind, q, k, scale) for q, k in zip(parts, w.shape[::-1])]
    else:
        wq, _ = (ref.ternary_quantize if kind == "ternary" else ref.binary_quantize)(w)
        packed = [_packed(kind, wq, scale)]
        if transposed:
            packed.append(_packed(kind, wq.T.contiguous(), scale))
    return tuple(packed) if transposed else packed[0]


def unpack_ternary(packed, k: int | None = None) -> torch.Tensor:
    """Inverse of :func:`pack_ternary` (``k`` only for a raw buffer); ValueError on the invalid code 3."""
    qdata, k, _ = unwrap("ternary", packed, k)
    _check_tensor(qdata, "packed")
    if _native_for(qdata):
        return torch.ops.bitops.unpack_ternary(qdata, k)
    return ref.unpack_ternary(qdata, k)


def unpack_binary(packed, k: int | None = None) -> torch.Tensor:
    """Inverse of :func:`pack_binary` (``k`` only for a raw buffer)."""
    qdata, k, _ = unwrap("binary", packed, k)
    _check_tensor(qdata, "packed")
    if _native_for(qdata):
        return torch.ops.bitops.unpack_binary(qdata, k)
    return ref.unpack_binary(qdata, k)


def ternary_matmul_int(xq: torch.Tensor, packed, k: int | None = None) -> torch.Tensor:
    """Exact int32 ``[..., N]``: ``sum_k xq[..., k] * Wq[n, k]`` (``k`` only for a raw buffer)."""
    qdata, k, _ = unwrap("ternary", packed, k)
    _check_tensor(xq, "xq")
    _check_tensor(qdata, "packed")
    if _native_for(xq, qdata):
        return torch.ops.bitops.ternary_matmul_int(xq, qdata, k)
    return ref.ternary_matmul_int(xq, qdata, k)


def binary_matmul_int(xbits: torch.Tensor, wbits, k: int | None = None) -> torch.Tensor:
    """Exact int32 XNOR-popcount product of packed sign bits (``k`` only for raw weight bits)."""
    qdata, k, _ = unwrap("binary", wbits, k)
    if isinstance(xbits, PackedWeight):  # sign bits packed with pack_binary
        xbits = xbits.qdata
    _check_tensor(xbits, "xbits")
    _check_tensor(qdata, "wbits")
    if _native_for(xbits, qdata):
        return torch.ops.bitops.binary_matmul_int(xbits, qdata, k)
    return ref.binary_matmul_int(xbits, qdata, k)


# --------------------------------------------------------------------------- the linear ops

_LINEAR_OPS = {
    ("ternary", 8): "ternary_linear_i8",
    ("ternary", None): "ternary_linear_f",
    ("binary", 8): "binary_linear_i8",
    ("binary", 1): "binary_linear_b1",
    ("binary", None): "binary_linear_f",
}
_NATIVE_LINEAR = {key: getattr(torch.ops.bitops, name).default for key, name in _LINEAR_OPS.items()} if LOADED else {}


def native_linear_ops() -> dict:
    """{(kind, act_bits): the native op's default overload}; empty without the extension."""
    return dict(_NATIVE_LINEAR)


def native_op(name: str):
    """torch.ops.bitops.<name>.default, or None without the extension."""
    return getattr(torch.ops.bitops, name).default if LOADED else None


def _explain(x, qdata, scale, bias, scale_name) -> None:
    """After the dispatcher refused the call: raise the error a user can act on, if there is one."""
    for t, name in ((x, "x"), (qdata, "packed"), (scale, scale_name), (bias, "bias")):
        if t is not None:
            _check_tensor(t, name)
    _native_for(x, qdata, scale, bias)  # raises on mixed devices or a device without kernels


def linear(kind: str, x, packed, scale, bias, act_bits, in_features, scale_name: str):
    """The one entry of :func:`ternary_linear` and :func:`binary_linear`, and of the modules."""
    op = _NATIVE_LINEAR.get((kind, act_bits)) if (act_bits is None or type(act_bits) is int) else None
    if op is None:
        check_act_bits(kind, act_bits)  # raises; a valid act_bits without kernels goes on below
    qdata, k, scale = linear_operands(kind, x, packed, scale, in_features, scale_name)
    if op is not None and x.is_cpu and qdata.is_cpu and scale.is_cpu and (bias is None or bias.is_cpu):
        native = True
    else:
        native = _native_for(x, qdata, scale, bias)
        if qdata.is_cuda and not isinstance(packed, PackedWeight):
            validate_packed(kind, qdata, k)  # a PackedWeight was checked once, when it was made
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or scale.requires_grad or (bias is not None and bias.requires_grad)
    )
    if not native:
        return reference_linear(kind, act_bits, x, qdata, scale, bias, k, needs_grad)
    try:
        if needs_grad or _is_compiling():
            return op(x, qdata, scale, bias)
        with _below_autograd():  # no graph to record: skip the autograd layer (~6 us a call)
            return op(x, qdata, scale, bias)
    except NotImplementedError:  # the dispatcher found no kernel: a layout or device problem
        _explain(x, qdata, scale, bias, scale_name)
        raise


def ternary_linear(x, packed, gamma=None, bias=None, act_bits=8, *, in_features=None):
    """``y = x @ (gamma * Wq).T + bias`` over packed ternary weights.

    ``packed``: the :class:`PackedWeight` of :func:`pack_ternary` (``gamma`` then comes from it
    unless it was packed without one), or a raw ``uint8`` buffer with ``in_features=K``.
    ``act_bits=8`` quantizes x per row to int8 and accumulates exactly in int32 (W1.58A8);
    ``act_bits=None`` keeps x in float32 (add/sub of activations). Output dtype = x's.
    Differentiable in x and bias (straight-through: ``grad_x = grad_y @ (gamma * Wq)``).
    """
    return linear("ternary", x, packed, gamma, bias, act_bits, in_features, "gamma")


def binary_linear(x, packed, beta=None, bias=None, act_bits=8, *, in_features=None):
    """``y = x @ (beta * Wb).T + bias`` over packed binary weights (arguments as :func:`ternary_linear`).

    ``act_bits=8``: int8 activations; ``act_bits=1``: sign activations, XNOR-popcount (its
    gradient passes where ``|x| <= 1``); ``act_bits=None``: float activations.
    """
    return linear("binary", x, packed, beta, bias, act_bits, in_features, "beta")


def bf16_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` for a bf16 ``weight`` [N, K], in x's dtype (float32 sums).

    On the CPU it runs bitops' streaming GEMV, which reads each weight row once, front to back:
    meant for a few rows of x against a large weight (a model's output head at decode), where
    it reads at memory speed. Elsewhere, :func:`bitops.reference.bf16_linear`.
    """
    _check_tensor(x, "x")
    _check_tensor(weight, "weight")
    if bias is not None:
        _check_tensor(bias, "bias")
    if _native_for(x, weight, bias) and x.is_cpu:
        return torch.ops.bitops.bf16_linear(x, weight, bias)
    return ref.bf16_linear(x, weight, bias)


# --------------------------------------------------------------------------- fake kernels

if LOADED:

    def _lead(x, last):
        return (*x.shape[:-1], last)

    @torch.library.register_fake("bitops::quantize_activations")
    def _(x):
        return x.new_empty(x.shape, dtype=torch.int8), x.new_empty(x.shape[:-1], dtype=torch.float32)

    @torch.library.register_fake("bitops::binarize_activations")
    def _(x):
        bits = x.new_empty(_lead(x, ref.binary_row_bytes(x.shape[-1])), dtype=torch.uint8)
        return bits, x.new_empty(x.shape[:-1], dtype=torch.float32)

    @torch.library.register_fake("bitops::bf16_linear")
    def _(x, weight, bias):
        return x.new_empty(_lead(x, weight.shape[0]))

    @torch.library.register_fake("bitops::pack_ternary")
    def _(wq):
        return wq.new_empty((wq.shape[0], ref.ternary_row_bytes(wq.shape[1])), dtype=torch.uint8)

    @torch.library.register_fake("bitops::pack_binary")
    def _(wq):
        return wq.new_empty((wq.shape[0], ref.binary_row_bytes(wq.shape[1])), dtype=torch.uint8)

    def _quantize_pack_fake(w, transposed, row_bytes):
        n, k = w.shape
        parts = [w.new_empty((n, row_bytes(k)), dtype=torch.uint8)]
        if transposed:
            parts.append(w.new_empty((k, row_bytes(n)), dtype=torch.uint8))
        return parts

    @torch.library.register_fake("bitops::quantize_pack_ternary")
    def _(w, divisor, transposed):
        return _quantize_pack_fake(w, transposed, ref.ternary_row_bytes)

    @torch.library.register_fake("bitops::quantize_pack_binary")
    def _(w, transposed):
        return _quantize_pack_fake(w, transposed, ref.binary_row_bytes)

    def _linear_and_act_fake(x, packed, scale, bias, norm_weight, eps):
        return (x.new_empty(_lead(x, packed.shape[0])), x.new_empty(x.shape, dtype=torch.int8),
                x.new_empty(x.shape[:-1], dtype=torch.float32))

    for _name in ("ternary_linear_i8_and_act", "binary_linear_i8_and_act"):
        torch.library.register_fake(f"bitops::{_name}")(_linear_and_act_fake)

    @torch.library.register_fake("bitops::rms_norm_backward")
    def _(grad, x, weight, eps):
        return x.new_empty(x.shape, dtype=torch.float32), x.new_empty((x.shape[-1],), dtype=torch.float32)

    @torch.library.register_fake("bitops::dequantize_activations")
    def _(xq, s):
        return xq.new_empty(xq.shape, dtype=torch.float32)

    @torch.library.register_fake("bitops::dequantize_ternary")
    def _(packed, k, scale, dtype=None):
        return packed.new_empty((packed.shape[0], k), dtype=dtype or torch.float32)

    @torch.library.register_fake("bitops::dequantize_binary")
    def _(packed, k, scale, dtype=None):
        return packed.new_empty((packed.shape[0], k), dtype=dtype or torch.float32)

    @torch.library.register_fake("bitops::pack_ternary_from_hf")
    def _(weight, out_features):
        return weight.new_empty((out_features, ref.ternary_row_bytes(weight.shape[1])), dtype=torch.uint8)

    @torch.library.register_fake("bitops::unpack_ternary")
    def _(packed, k):
        return packed.new_empty((packed.shape[0], k), dtype=torch.int8)

    @torch.library.register_fake("bitops::unpack_binary")
    def _(packed, k):
        return packed.new_empty((packed.shape[0], k), dtype=torch.int8)

    @torch.library.register_fake("bitops::ternary_matmul_int")
    def _(xq, packed, k):
        return xq.new_empty(_lead(xq, packed.shape[0]), dtype=torch.int32)

    @torch.library.register_fake("bitops::binary_matmul_int")
    def _(xbits, wbits, k):
        return xbits.new_empty(_lead(xbits, wbits.shape[0]), dtype=torch.int32)

    def _linear_fake(x, packed, scale, bias):
        return x.new_empty(_lead(x, packed.shape[0]))

    @torch.library.register_fake("bitops::ternary_linear_i8_norm")
    def _(x, packed, scale, bias, norm_weight, eps):
        return x.new_empty(_lead(x, packed.shape[0]))

    for _name in ("ternary_linear_i8", "ternary_linear_f", "binary_linear_i8", "binary_linear_f", "binary_linear_b1"):
        torch.library.register_fake(f"bitops::{_name}")(_linear_fake)

