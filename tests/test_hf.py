"""bitops.hf.convert: transformers BitNet layers and models onto bitops kernels."""

import pytest
import torch

import bitops
from bitops import reference as ref
from bitops.nn import PackedBitLinear

hf_bitnet = pytest.importorskip("transformers.integrations.bitnet")
transformers = pytest.importorskip("transformers")


def _offline_layer(n, k, seed, bias=False, use_rms_norm=False):
    g = torch.Generator().manual_seed(seed)
    layer = hf_bitnet.BitLinear(k, n, bias=bias, device="cpu", dtype=torch.float32, use_rms_norm=use_rms_norm,
                                rms_norm_eps=1e-5)
    wq = torch.randint(-1, 2, (n, k), generator=g, dtype=torch.int8)
    with torch.no_grad():
        layer.weight.copy_(hf_bitnet.pack_weights(wq.clone()))
        layer.weight_scale.copy_(torch.tensor([2.5]))
        if bias:
            layer.bias.copy_(torch.randn(n, generator=g))
        if use_rms_norm:
            layer.rms_norm.weight.copy_(torch.rand(k, generator=g) + 0.5)
    return layer, wq


def _one_step(gamma, xn):
    return gamma * xn.abs().amax(dim=-1, keepdim=True) / 127


@pytest.mark.parametrize("bias,use_rms_norm", [(False, False), (True, False), (False, True)])
def test_offline_bitlinear_converts_exactly(bias, use_rms_norm):
    layer, wq = _offline_layer(24, 200, 1, bias, use_rms_norm)
    x = torch.randn(5, 200, generator=torch.Generator().manual_seed(2))
    with torch.compiler.set_stance("force_eager"):
        want_hf = layer(x)
    converted = bitops.hf.convert(layer)
    assert isinstance(converted, PackedBitLinear) and converted.packed.shape == (24, 200)
    assert torch.equal(converted.packed.unpack(), wq)
    gamma = torch.tensor(1 / 2.5)
    xn = x if not use_rms_norm else torch.nn.functional.rms_norm(x, (200,), layer.rms_norm.weight, 1e-5)
    # bit for bit bitops' exact math on the same operands
    want = ref.ternary_linear(xn, ref.pack_ternary(wq), gamma, None if not bias else layer.bias)
    assert torch.equal(converted(x), want)
    # and transformers' float path up to one int8 step of one activation per output (its 127 * 1/amax)
    assert ((converted(x) - want_hf).abs() <= 1.01 * _one_step(gamma, xn) + 1e-5).all()


def test_online_autobitlinear_quantizes_its_latent_weights_once():
    torch.manual_seed(0)
    layer = hf_bitnet.AutoBitLinear(96, 16, bias=True, online_quant=True)
    x = torch.randn(3, 96)
    with torch.compiler.set_stance("force_eager"):
        want_hf = layer(x)
    converted = bitops.hf.convert(layer)
    wq, gamma = bitops.ternary_quantize(layer.weight.detach())
    assert torch.equal(converted.packed.unpack(), wq)
    y = converted(x)
    assert torch.equal(y, ref.ternary_linear(x, ref.pack_ternary(wq), gamma, layer.bias.detach()))
    assert ((y - want_hf).abs() <= 1.01 * _one_step(gamma, x) + 1e-4).all()


def _tiny_bitnet(seed=0):
    torch.manual_seed(seed)
    config = transformers.BitNetConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                       tie_word_embeddings=True)
    model = transformers.BitNetForCausalLM(config).eval()
    hf_bitnet.replace_with_bitnet_linear(model, modules_to_not_convert=["lm_head"])
    g = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():  # the replaced layers are on meta: give them packed random weights
        if isinstance(module, hf_bitnet.BitLinear):
            wq = torch.randint(-1, 2, (module.out_features, module.in_features), generator=g, dtype=torch.int8)
            module.weight = hf_bitnet.pack_weights(wq.clone())
            module.weight_scale = torch.rand(1, generator=g) * 10 + 20  # gamma ~ 0.04
            module.dtype = torch.float32
    return model


def test_whole_bitnet_model_logits_and_greedy_tokens_agree_with_transformers(tmp_path):
    model = _tiny_bitnet()
    ids = torch.randint(0, 96, (1, 12), generator=torch.Generator().manual_seed(7))
    with torch.no_grad(), torch.compiler.set_stance("force_eager"):
        want = model(ids).logits
        want_tokens = model.generate(ids, max_new_tokens=6, do_sample=False)
    bitops.hf.convert(model)
    assert not any(isinstance(m, hf_bitnet.BitLinear) for m in model.modules())
    # 7 layers per decoder layer, q/k/v and gate/up each as one packed call: 4 packed calls
    assert sum(isinstance(m, PackedBitLinear) for m in model.modules()) == 2 * 4
    assert sum(isinstance(m, bitops.fused_projections.ProjectionSlice) for m in model.modules()) == 2 * 5
    with torch.no_grad():
        got = model(ids).logits
        got_tokens = model.generate(ids, max_new_tokens=6, do_sample=False)
    cos = torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0)
    assert cos >= 0.999, float(cos)
    assert torch.equal(got_tokens, want_tokens)
    # the converted model saves and loads bit for bit
    path = tmp_path / "bitnet.safetensors"
    bitops.checkpoint.save(model, str(path))
    fresh = bitops.hf.convert(_tiny_bitnet(seed=3))
    bitops.checkpoint.load(fresh, str(path))
    with torch.no_grad():
        assert torch.equal(fresh(ids).logits, got)


def test_fused_projections_equal_the_separate_layers_bit_for_bit():
    """q/k/v and gate/up as one packed call each: every part is its own layer's output, bit for
    bit, in any call order, and calling a part twice recomputes (never a stale result)."""
    from transformers.models.bitnet import modeling_bitnet as mb

    separate = bitops.hf.convert(_tiny_bitnet(), fuse_qkv=False)
    fused = bitops.hf.convert(_tiny_bitnet())
    g = torch.Generator().manual_seed(9)
    for name, a in separate.named_modules():
        if type(a) is mb.BitNetAttention:
            names = ("q_proj", "k_proj", "v_proj")
        elif type(a) is mb.BitNetMLP:
            names = ("gate_proj", "up_proj")
        else:
            continue
        b = fused.get_submodule(name)
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(2, 3, getattr(a, names[0]).in_features, generator=g).to(dtype)
            with torch.no_grad():
                want = {n: getattr(a, n)(x) for n in names}
                for order in (names, names[::-1]):
                    got = {n: getattr(b, n)(x) for n in order}
                    assert all(torch.equal(got[n], want[n]) for n in names)
                first = getattr(b, names[0])
                assert torch.equal(first(x), want[names[0]]) and torch.equal(first(x), want[names[0]])
                y = x + 1  # another input: recomputed, not the cached parts
                assert torch.equal(getattr(b, names[1])(y), getattr(a, names[1])(y))
    ids = torch.randint(0, 96, (1, 9), generator=g)
    with torch.no_grad():
        assert torch.equal(fused(ids).logits, separate(ids).logits)


def test_a_model_without_bitnet_layers_is_refused():
    with pytest.raises(ValueError, match="no transformers BitNet layers"):
        bitops.hf.convert(torch.nn.Sequential(torch.nn.Linear(4, 4)))


def test_import_bitops_does_not_import_transformers():
    import subprocess
    import sys

    code = "import sys, bitops; assert 'transformers' not in sys.modules and 'accelerate' not in sys.modules"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "BITOPS_QUIET": "1"})
    assert run.returncode == 0, run.stderr


def test_convert_moves_every_decoder_norm_into_the_kernels():
    from transformers.models.bitnet import modeling_bitnet as mb

    model = _tiny_bitnet()
    ids = torch.randint(0, 96, (1, 10), generator=torch.Generator().manual_seed(5))
    unfused = bitops.hf.convert(_tiny_bitnet(), fuse=False)
    bitops.hf.convert(model)
    norms_left = [n for n, m in model.named_modules() if isinstance(m, mb.BitNetRMSNorm)]
    assert norms_left == ["model.norm"]  # only the final norm, read by the head
    layers = [m for m in model.modules() if isinstance(m, PackedBitLinear)]
    assert len(layers) == 8 and all(m.norm is not None for m in layers)  # q/k/v and gate/up fused
    with torch.no_grad():
        got, want = model(ids).logits, unfused(ids).logits
        # the fused norm skips transformers' rounding of the normalized x to the model's dtype
        # (float32 here: the two agree up to float rounding and the rare int8 step it moves)
        cos = torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0)
        assert cos >= 0.9999, float(cos)
        assert torch.equal(model.generate(ids, max_new_tokens=5, do_sample=False),
                           unfused.generate(ids, max_new_tokens=5, do_sample=False))


def test_int8_head_error_is_bounded_and_round_trips(tmp_path):
    model = bitops.hf.convert(_tiny_bitnet())
    float_head = model.get_output_embeddings()
    ids = torch.randint(0, 96, (1, 12), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        want = model(ids).logits
        bitops.hf.quantize_head(model)
        assert isinstance(model.get_output_embeddings(), bitops.nn.Int8Linear)
        assert model.get_input_embeddings().weight is float_head.weight  # the embedding stays as stored
        got = model(ids).logits
    err = (got - want).abs().amax(-1) / want.abs().amax(-1)
    assert float(err.max()) <= 0.03, float(err.max())  # documented in README: about 1% of the largest logit
    path = tmp_path / "int8.safetensors"
    bitops.checkpoint.save(model, str(path))
    fresh = bitops.hf.convert(_tiny_bitnet(seed=3), lm_head="int8")
    bitops.checkpoint.load(fresh, str(path))
    with torch.no_grad():
        assert torch.equal(fresh(ids).logits, got)


def test_convert_refuses_an_unknown_head_choice():
    with pytest.raises(ValueError, match="lm_head must be None"):
        bitops.hf.convert(_tiny_bitnet(), lm_head="int4")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("lm_head", [None, "int8"])
def test_to_transformers_gives_back_the_checkpoint(tmp_path, dtype, lm_head):
    original = _tiny_bitnet().to(dtype)
    for module in original.modules():
        if isinstance(module, hf_bitnet.BitLinear):
            module.dtype = dtype
    want = {k: v.clone() for k, v in original.state_dict().items()}
    model = bitops.hf.to_transformers(bitops.hf.convert(original, lm_head=lm_head))
    assert not any(isinstance(m, (PackedBitLinear, bitops.nn.Int8Linear)) for m in model.modules())
    got = model.state_dict()
    assert set(got) == set(want)
    for key, value in want.items():
        if key.endswith("weight_scale") and dtype == torch.float32:  # gamma = 1 / s, and back
            assert torch.allclose(got[key], value, rtol=2**-23, atol=0), key
        else:
            assert got[key].dtype == value.dtype and torch.equal(got[key], value), key
    # and transformers' own forward runs on it again
    ids = torch.randint(0, 96, (1, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), torch.compiler.set_stance("force_eager"):
        assert torch.isfinite(model(ids).logits.float()).all()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()


def test_converted_model_compiles_with_fused_projections_and_streamed_head():
    """torch.compile of the converted model (fused q/k/v and gate/up, bf16 head on the streaming
    GEMV): the slices' shared call traces into the graph, and the logits match eager's. Outside
    bitops' opaque ops inductor may reorder float math (rotary, softmax): a tight cosine, and the
    same greedy choice at every position."""
    model = bitops.hf.convert(_tiny_bitnet().to(torch.bfloat16))
    assert isinstance(model.get_output_embeddings(), bitops.nn.Bf16Linear)
    ids = torch.randint(0, 96, (1, 1), generator=torch.Generator().manual_seed(11))
    torch._dynamo.reset()
    compiled = torch.compile(model.forward, dynamic=False)
    with torch.inference_mode():
        want = model(input_ids=ids).logits.float()
        got = compiled(input_ids=ids).logits.float()
    torch._dynamo.reset()
    cos = torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0)
    assert cos >= 0.9999, float(cos)
    assert torch.equal(got.argmax(-1), want.argmax(-1))
