"""A transformers BitNetForCausalLM of any shape in the real checkpoint format, with seeded random weights.

The 2B4T checkpoint (``microsoft/bitnet-b1.58-2B-4T``) stores its linear layers as transformers'
offline ``BitLinear``: uint8 weights of 4 ternary codes a byte ([ceil(N/4), K]) and a bf16
``weight_scale``; embeddings (tied with the output head), norms and everything else in bf16.
:func:`build` makes such a model without downloads and without ever holding a dense copy
(the layers are created on the meta device and materialised in their packed form).
"""

from __future__ import annotations

import torch

# microsoft/bitnet-b1.58-2B-4T's config.json (shape and numerics; random weights)
BITNET_2B4T = dict(vocab_size=128256, hidden_size=2560, intermediate_size=6912, num_hidden_layers=30,
                   num_attention_heads=20, num_key_value_heads=5, max_position_embeddings=4096,
                   rms_norm_eps=1e-5, hidden_act="relu2", tie_word_embeddings=True,
                   rope_parameters={"rope_theta": 500000.0, "rope_type": "default"})
# CI-sized: the same structure, small enough to build and decode in seconds
BITNET_QUICK = dict(BITNET_2B4T, vocab_size=4096, hidden_size=256, intermediate_size=704, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=1024)


def _code_bytes() -> torch.Tensor:
    """All 81 bytes whose four 2-bit fields are codes 0, 1, 2 (weights -1, 0, +1)."""
    d = torch.arange(81)
    return (d % 3 | (d // 3 % 3) << 2 | (d // 9 % 3) << 4 | (d // 27 % 3) << 6).to(torch.uint8)


def build(shape: dict, seed: int = 0, dtype=torch.bfloat16, packed: bool = True):
    """BitNetForCausalLM with random weights; ``packed=False`` gives the dense (nn.Linear) model of
    the same architecture with float weights, the comparison a user would make."""
    import transformers
    from transformers.integrations import bitnet

    config = transformers.BitNetConfig(**shape)
    config.torch_dtype = dtype
    with torch.device("meta"):
        model = transformers.BitNetForCausalLM(config).to(dtype)
    if packed:
        bitnet.replace_with_bitnet_linear(model, modules_to_not_convert=["lm_head"])
    model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    codes = _code_bytes()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, bitnet.BitLinear):
                idx = torch.randint(0, 81, module.weight.shape, generator=g, dtype=torch.int32)
                module.weight.copy_(codes[idx])
                # 1 / gamma with gamma ~ the absmean of a trained layer's latent weights
                module.weight_scale.fill_(float(torch.empty(()).uniform_(40.0, 60.0, generator=g)))
                module.dtype = dtype
            elif isinstance(module, torch.nn.Linear):
                if module is model.lm_head and config.tie_word_embeddings:
                    continue
                module.weight.normal_(0.0, module.in_features ** -0.5, generator=g)
            elif isinstance(module, torch.nn.Embedding):
                module.weight.normal_(0.0, 1.0, generator=g)
            elif type(module).__name__.endswith("RMSNorm"):
                module.weight.uniform_(0.5, 1.5, generator=g)
        rotary = model.model.rotary_emb  # to_empty left its buffers uninitialised
        inv_freq, _ = rotary.compute_default_rope_parameters(config)
        rotary.inv_freq.copy_(inv_freq)
        rotary.original_inv_freq.copy_(inv_freq)
    model.tie_weights()
    return model.eval()


def stored_bytes(model) -> int:
    """Bytes of the model's parameters and buffers as stored (tied tensors once)."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() in seen or t.device.type == "meta":
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total
