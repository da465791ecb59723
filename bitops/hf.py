"""Hugging Face transformers BitNet models onto bitops kernels, in one call.

    model = transformers.AutoModelForCausalLM.from_pretrained("microsoft/bitnet-b1.58-2B-4T")
    bitops.hf.convert(model)        # in place; returns the model

Every transformers BitNet layer (``transformers/integrations/bitnet.py``) becomes a
:class:`bitops.nn.PackedBitLinear`:

* ``BitLinear`` (the offline-packed checkpoint format of the 2B4T model): its 2-bit weights are
  re-packed into bitops' layout and its ``weight_scale`` becomes gamma = 1 / weight_scale;
* ``AutoBitLinear`` with ``online_quant=True``: its latent float weights are quantized once
  (absmean, as transformers' ``WeightQuant``);
* ``AutoBitLinear`` offline: its weights hold the ternary values in float; gamma = weight_scale;
* ``use_rms_norm=True``: the layer's RMSNorm (with its configured eps) runs before the
  activation quantizer, as in transformers.

Layers are converted one at a time and the transformers module is dropped at once, so peak memory
stays near the model's size; the model's quantizer is detached so nothing re-unpacks. transformers
is imported only when :func:`convert` runs (``pip install bitops[hf]``), never by ``import bitops``.

Numerics: each converted layer computes bitops' exact integer math (DESIGN.md section 1). It
differs from transformers' float path in two known ways: transformers computes the activation
scale as ``127 * reciprocal(max|x|)`` where bitops divides (one ulp apart for about a quarter of
inputs, which can move one activation by one int8 step), and in bf16 transformers quantizes in
bf16 where bitops quantizes in float32.
"""

from __future__ import annotations

import torch
from torch import nn

from . import fused_projections as fp
from . import interop, ops
from .bf16_linear import Bf16Linear
from .int8_linear import Int8Linear
from .nn import PackedBitLinear

__all__ = ["convert", "fuse_norms", "fuse_projections", "quantize_head", "stream_head", "to_transformers", "bitnet_layer_kinds"]


def _bitnet_module():
    try:
        from transformers.integrations import bitnet
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("bitops.hf needs transformers: pip install 'bitops[hf]'") from exc
    return bitnet


def bitnet_layer_kinds() -> tuple[type, ...]:
    """The transformers classes :func:`convert` replaces."""
    bitnet = _bitnet_module()
    return (bitnet.BitLinear, bitnet.AutoBitLinear)


def _norm_of(layer) -> nn.RMSNorm | None:
    hf_norm = getattr(layer, "rms_norm", None)
    if hf_norm is None:
        return None
    weight = hf_norm.weight.detach()
    eps = getattr(hf_norm, "variance_epsilon", getattr(hf_norm, "eps", 1e-6))
    norm = nn.RMSNorm(layer.in_features, eps=eps, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
    return norm.requires_grad_(False)


def _packed_of(layer, bitnet):
    """(PackedWeight with gamma, bias) of one transformers BitNet layer."""
    bias = None if layer.bias is None else layer.bias.detach()
    if isinstance(layer, bitnet.BitLinear):
        return interop.ternary_from_hf_bitnet(layer.weight, layer.weight_scale, layer.out_features), bias
    weight = layer.weight.detach()
    if getattr(layer, "online_quant", False):
        wq, gamma = ops.ternary_quantize(weight)
        return ops.pack_ternary(wq, gamma), bias
    # offline AutoBitLinear: y = (Q(x) @ W.T + b) * weight_scale with W already ternary
    wq = weight.round().clamp(-1, 1)
    if not torch.equal(wq, weight):
        raise ValueError("bitops.hf.convert: an offline AutoBitLinear holds weights outside {-1, 0, 1}")
    gamma = layer.weight_scale.detach().float().reshape(())
    if bias is not None:
        bias = (bias.float() * gamma).to(bias.dtype)
    return ops.pack_ternary(wq.to(torch.int8), gamma), bias


def _as_rms_norm(hf_norm, k: int) -> nn.RMSNorm:
    norm = nn.RMSNorm(k, eps=hf_norm.variance_epsilon, device=hf_norm.weight.device, dtype=torch.float32)
    with torch.no_grad():
        norm.weight.copy_(hf_norm.weight.detach())  # bf16 -> float32 is exact
    return norm.requires_grad_(False)


def _norm_sites(model):
    """(parent, norm attribute, the converted layers that alone read that norm's output) of each
    RMSNorm in transformers' BitNet decoder layers: input_layernorm -> q/k/v,
    post_attention_layernorm -> gate/up, attn_sub_norm -> o_proj, ffn_sub_norm -> down_proj."""
    try:
        from transformers.models.bitnet import modeling_bitnet as mb
    except ImportError:  # pragma: no cover - a transformers without BitNet models
        return
    for layer in model.modules():
        if type(layer) is not mb.BitNetDecoderLayer:  # a subclass may read the norms elsewhere
            continue
        attn, mlp = layer.self_attn, layer.mlp
        if type(attn) is not mb.BitNetAttention or type(mlp) is not mb.BitNetMLP:
            continue
        yield layer, "input_layernorm", (attn.q_proj, attn.k_proj, attn.v_proj)
        yield attn, "attn_sub_norm", (attn.o_proj,)
        yield layer, "post_attention_layernorm", (mlp.gate_proj, mlp.up_proj)
        yield mlp, "ffn_sub_norm", (mlp.down_proj,)


def _module_refs(model) -> dict[int, int]:
    refs: dict[int, int] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        refs[id(module)] = refs.get(id(module), 0) + 1
    return refs


def fuse_projections(model: nn.Module) -> int:
    """Runs q/k/v, and gate/up, of each transformers BitNet decoder layer as one packed call each
    (:mod:`bitops.fused_projections`; each part's output is bit for bit its own layer's). Returns
    how many groups were fused. :func:`convert` calls it."""
    try:
        from transformers.models.bitnet import modeling_bitnet as mb
    except ImportError:  # pragma: no cover - a transformers without BitNet models
        return 0
    refs = _module_refs(model)
    fused = 0
    # only the decoder layers are listed: a list of every module would keep each replaced layer alive
    for layer in [m for m in model.modules() if type(m) is mb.BitNetDecoderLayer]:
        attn, mlp = layer.self_attn, layer.mlp
        for parent, names, kind in ((attn, ("q_proj", "k_proj", "v_proj"), mb.BitNetAttention),
                                    (mlp, ("gate_proj", "up_proj"), mb.BitNetMLP)):
            # only transformers' own forwards, whose parts read one input; no layer used elsewhere too
            if type(parent) is not kind or any(refs.get(id(getattr(parent, n)), 0) != 1 for n in names):
                continue
            fused += fp.fuse_projections(parent, names)
    return fused


def fuse_norms(model: nn.Module) -> int:
    """Moves each RMSNorm of transformers' BitNet decoder layers into the bitops layers that read
    its output, where the kernel normalizes, quantizes and multiplies in one call (the norm
    becomes ``nn.Identity``). Returns how many norms moved. :func:`convert` calls it."""
    from transformers.models.bitnet import modeling_bitnet as mb

    # A layer referenced from more than one place (shared between decoder layers, or used twice)
    # may read other inputs than this norm's output: fusing would normalize those too.
    refs = _module_refs(model)
    moved = 0
    for parent, name, readers in list(_norm_sites(model)):
        hf_norm = getattr(parent, name)
        if type(hf_norm) is not mb.BitNetRMSNorm:
            continue
        if not all(isinstance(r, PackedBitLinear) and r.norm is None and refs[id(r)] == 1 for r in readers):
            continue
        for reader in readers:
            reader.norm = _as_rms_norm(hf_norm, reader.in_features)
        setattr(parent, name, nn.Identity())
        moved += 1
    return moved


def quantize_head(model: nn.Module) -> Int8Linear:
    """Replaces the model's output head (``get_output_embeddings()``, an nn.Linear) with an
    :class:`bitops.nn.Int8Linear` (per-row absmax int8 weights, int8 activations); a tied input
    embedding stays as it is. Returns the new head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(head, Int8Linear):
        return head
    if not isinstance(head, nn.Linear):
        raise ValueError(f"bitops.hf: the model's output head is not an nn.Linear: {type(head).__name__}")
    int8 = Int8Linear.from_linear(head)
    model.set_output_embeddings(int8)
    return int8


def stream_head(model: nn.Module) -> nn.Module:
    """Puts the model's bf16 output head (an nn.Linear) on bitops' streaming GEMV
    (:class:`bitops.nn.Bf16Linear`: the same weight tensors, still tied; decode-sized calls read
    them at memory speed). Returns the head, unchanged when it is not a bf16 nn.Linear."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if type(head) is not nn.Linear or head.weight.dtype != torch.bfloat16:
        return head
    streamed = Bf16Linear.from_linear(head)
    model.set_output_embeddings(streamed)
    return streamed


def convert(model: nn.Module, fuse: bool = True, lm_head: str | None = None, fuse_qkv: bool = True) -> nn.Module:
    """Replaces every transformers BitNet layer of ``model`` with a bitops PackedBitLinear, in place.

    Returns the model. A model without BitNet layers raises ValueError (nothing would run on
    bitops' kernels). The converted model saves and loads with :mod:`bitops.checkpoint`.
    ``fuse=True`` also moves the RMSNorms of transformers' BitNet decoder layers into the
    layers that read them (:func:`fuse_norms`): one kernel call normalizes, quantizes and
    multiplies, and the norm runs in float32 instead of rounding to the model's dtype first.
    ``fuse_qkv=True`` also runs q/k/v, and gate/up, as one packed call each
    (:func:`fuse_projections`; the same outputs bit for bit, fewer calls per token).
    The output head keeps its weights as stored; a bf16 one runs on bitops' streaming GEMV at
    decode (:func:`stream_head`). ``lm_head="int8"`` quantizes the head instead
    (:func:`quantize_head`): about half the bytes a decoded token reads in the 2B4T model, at a
    small logit error (README); ``lm_head="torch"`` leaves it to torch's ``nn.Linear``.
    """
    if lm_head not in (None, "int8", "torch"):
        raise ValueError(f"bitops.hf.convert: lm_head must be None (as stored), 'int8' or 'torch', got {lm_head!r}")
    bitnet = _bitnet_module()
    kinds = (bitnet.BitLinear, bitnet.AutoBitLinear)
    sites = [
        (parent, name, child)
        for _, parent in model.named_modules()
        for name, child in list(parent._modules.items())
        if isinstance(child, kinds)
    ]
    if not sites and not isinstance(model, kinds):
        raise ValueError("bitops.hf.convert: the model has no transformers BitNet layers (BitLinear, AutoBitLinear)")
    if isinstance(model, kinds):
        packed, bias = _packed_of(model, bitnet)
        return PackedBitLinear.from_packed(packed, bias, 8, _norm_of(model))
    done: dict[int, PackedBitLinear] = {}  # shared layers stay shared
    for i in range(len(sites)):
        parent, name, layer = sites[i]
        sites[i] = None  # no reference left here: the transformers layer is freed once replaced
        if id(layer) not in done:
            packed, bias = _packed_of(layer, bitnet)
            done[id(layer)] = PackedBitLinear.from_packed(packed, bias, 8, _norm_of(layer)).eval()
        setattr(parent, name, done[id(layer)])  # the transformers module (and its buffers) goes now
        del parent, layer
    del done  # the model holds the layers now: fusing below frees the separate ones as it goes
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None  # its hooks would re-unpack weights bitops already holds
    if fuse:
        fuse_norms(model)
    if fuse_qkv:
        fuse_projections(model)
    if lm_head == "int8":
        quantize_head(model)
    elif lm_head is None:
        stream_head(model)
    return model


def _unfuse_norms(model: nn.Module) -> None:
    from transformers.models.bitnet import modeling_bitnet as mb

    for parent, name, readers in _norm_sites(model):
        if not isinstance(getattr(parent, name), nn.Identity):
            continue
        if not all(isinstance(r, PackedBitLinear) and r.norm is not None for r in readers):
            raise ValueError(f"bitops.hf.to_transformers: {name} was moved into layers that no longer hold it")
        norm = readers[0].norm
        hf_norm = mb.BitNetRMSNorm(norm.normalized_shape[0], eps=norm.eps)
        with torch.no_grad():
            hf_norm.weight.copy_(norm.weight)
        setattr(parent, name, hf_norm.to(device=norm.weight.device, dtype=model.dtype))
        for reader in readers:
            reader.norm = None


def to_transformers(model: nn.Module) -> nn.Module:
    """The way back: turns a model made by :func:`convert` (from the offline ``BitLinear``
    checkpoint format, as the 2B4T model ships) into transformers' own BitNet layers, in place,
    so that ``model.save_pretrained(path)`` writes a checkpoint transformers loads as before.

    Weights and norms come back bit for bit; a bf16/fp16 ``weight_scale`` too (float32 ones
    within one ulp: bitops keeps gamma = 1 / weight_scale). An int8 head (:func:`quantize_head`)
    goes back to the tied input embedding; an untied one cannot (its float weights are gone).
    """
    bitnet = _bitnet_module()
    qc = getattr(getattr(model, "config", None), "quantization_config", None)
    linear_class = qc.get("linear_class") if isinstance(qc, dict) else getattr(qc, "linear_class", None)
    if linear_class not in (None, "bitlinear"):
        raise ValueError(f"bitops.hf.to_transformers: writes the offline BitLinear format; this model's "
                         f"quantization_config has linear_class={linear_class!r}")
    fp.unfuse_projections(model)
    head = model.get_output_embeddings()
    if isinstance(head, Bf16Linear):  # the same weight tensors in transformers' own class
        plain = nn.Linear(head.in_features, head.out_features, bias=False, device="meta")
        plain.weight, plain.bias = head.weight, head.bias
        model.set_output_embeddings(plain)
    if isinstance(head, Int8Linear):
        emb = model.get_input_embeddings()
        if not getattr(model.config, "tie_word_embeddings", False):
            raise ValueError("bitops.hf.to_transformers: the int8 head's float weights are gone (the head is "
                             "not tied to the input embedding); convert again without lm_head='int8'")
        linear = nn.Linear(emb.weight.shape[1], emb.weight.shape[0], bias=False, device="meta")
        linear.weight = emb.weight
        model.set_output_embeddings(linear)
    _unfuse_norms(model)
    dtype = model.dtype
    for _, parent in list(model.named_modules()):
        for name, child in list(parent._modules.items()):
            if not isinstance(child, PackedBitLinear):
                continue
            if child.weight_kind != "ternary" or child.act_bits != 8 or child.norm is not None:
                raise ValueError(f"bitops.hf.to_transformers: {name} ({child.extra_repr()}) has no transformers "
                                 "BitLinear equivalent")
            weight, weight_scale = interop.ternary_to_hf_bitnet(child.packed)
            layer = bitnet.BitLinear(child.in_features, child.out_features, bias=child.bias is not None,
                                     device=weight.device, dtype=dtype)
            with torch.no_grad():
                layer.weight.copy_(weight)
                layer.weight_scale.copy_(weight_scale.to(layer.weight_scale.dtype))
                if child.bias is not None:
                    layer.bias.copy_(child.bias)
            setattr(parent, name, layer)
    return model
