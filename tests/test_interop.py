"""Hugging Face transformers BitNet interop: the packing, the scale convention, a real layer."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch

import bitops
from bitops import interop

try:
    from transformers.integrations import bitnet as hf_bitnet
except Exception:  # transformers absent: the documented-layout tests below still run
    hf_bitnet = None

needs_transformers = pytest.mark.skipif(hf_bitnet is None, reason="transformers is not installed")


def test_hf_layout_by_hand():
    # N = 6 -> R = 2 rows; bits 2i+1:2i of weight[r] hold output row i*R + r, as code w + 1
    wq = torch.tensor([[1], [-1], [0], [1], [-1], [0]], dtype=torch.int8)
    packed = interop.hf_bitnet_pack(wq)
    assert packed.shape == (2, 1)
    assert packed[0, 0].item() == 2 | (1 << 2) | (0 << 4)  # rows 0, 2, 4 -> codes 2, 1, 0
    assert packed[1, 0].item() == 0 | (2 << 2) | (1 << 4)  # rows 1, 3, 5 -> codes 0, 2, 1


@pytest.mark.parametrize("n", [1, 3, 4, 5, 8, 13])
def test_hf_pack_round_trip(n):
    wq = torch.randint(-1, 2, (n, 37), dtype=torch.int8)
    assert torch.equal(interop.hf_bitnet_unpack(interop.hf_bitnet_pack(wq), n), wq)


@needs_transformers
@pytest.mark.parametrize("n", [4, 8, 12, 64])
def test_matches_transformers_pack_and_unpack(n):
    wq = torch.randint(-1, 2, (n, 37), dtype=torch.int8)
    theirs = hf_bitnet.pack_weights(wq.clone())
    assert torch.equal(interop.hf_bitnet_pack(wq), theirs)
    unpacked = hf_bitnet.unpack_weights(theirs, dtype=torch.float32)
    assert torch.equal(interop.hf_bitnet_unpack(theirs, n).float(), unpacked)


def test_bitops_hf_round_trip_is_exact():
    w = torch.randn(12, 300)
    wq, gamma = bitops.ternary_quantize(w)
    packed = bitops.pack_ternary(wq, gamma)
    hf_weight, weight_scale = interop.ternary_to_hf_bitnet(packed)
    back = interop.ternary_from_hf_bitnet(hf_weight, weight_scale, 12)
    assert isinstance(back, bitops.PackedWeight) and back.shape == (12, 300)
    assert torch.equal(back.qdata, packed.qdata)
    assert torch.allclose(back.scale, gamma, rtol=2**-23)  # 1 / (1 / g) may move the last bit


def test_corrupt_hf_weights_are_refused():
    packed = interop.hf_bitnet_pack(torch.zeros(8, 5, dtype=torch.int8))
    packed[0, 0] = 0xFF
    with pytest.raises(ValueError, match="corrupt"):
        interop.hf_bitnet_unpack(packed, 8)
    with pytest.raises(ValueError, match="out_features"):
        interop.hf_bitnet_unpack(packed, 9)


@needs_transformers
def test_transformers_bitlinear_output_matches_bitops():
    torch.manual_seed(0)
    n, k = 16, 64
    layer = hf_bitnet.BitLinear(k, n, bias=False, device="cpu", dtype=torch.float32)
    wq = torch.randint(-1, 2, (n, k), dtype=torch.int8)
    with torch.no_grad():
        layer.weight.copy_(hf_bitnet.pack_weights(wq.clone()))
        layer.weight_scale.copy_(torch.tensor([4.0]))
    x = torch.randn(3, k)
    packed = interop.ternary_from_hf_bitnet(layer.weight, layer.weight_scale, n)
    gamma = packed.scale
    y_ours = bitops.ternary_linear(x, packed)
    with torch.compiler.set_stance("force_eager"):  # transformers compiles this; eager is enough here
        y_theirs = layer(x)
    # transformers computes 127 / amax as reciprocal * 127 (one ulp away sometimes), which can move
    # an activation by one quantization step: allow one step of one activation per output.
    step = gamma.item() * x.abs().amax(dim=-1, keepdim=True) / 127
    assert ((y_ours - y_theirs).abs() <= 1.01 * step + 1e-6).all()


def test_interop_follows_the_error_policy():
    """Wrong dtypes raise TypeError, wrong shapes and values ValueError, as everywhere in bitops."""
    with pytest.raises(TypeError, match="int8"):
        interop.hf_bitnet_pack(torch.zeros(8, 5))
    with pytest.raises(ValueError, match="2-D"):
        interop.hf_bitnet_pack(torch.zeros(8, dtype=torch.int8))
    with pytest.raises(TypeError, match="uint8"):
        interop.hf_bitnet_unpack(torch.zeros(2, 5, dtype=torch.int8), 8)
    with pytest.raises(TypeError, match="weight_scale"):
        interop.ternary_from_hf_bitnet(torch.zeros(2, 5, dtype=torch.uint8) + 0x55, torch.ones(1, dtype=torch.int32), 8)
    per_row = bitops.pack_ternary(torch.zeros(4, 5, dtype=torch.int8), torch.ones(4))
    with pytest.raises(ValueError, match="one weight scale per tensor"):
        interop.ternary_to_hf_bitnet(per_row)
    with pytest.raises(ValueError, match="no scale"):
        interop.ternary_to_hf_bitnet(bitops.pack_ternary(torch.zeros(4, 5, dtype=torch.int8)))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 700), seed=st.integers(0, 2**31))
def test_native_hf_transcoding_equals_the_torch_path(n, k, seed):
    """ternary_from_hf_bitnet repacks the HF layout natively (one pass): the same bytes as
    unpacking to int8 and packing, for any N (not only multiples of 4) and K (ragged blocks)."""
    g = torch.Generator().manual_seed(seed)
    wq = torch.randint(-1, 2, (n, k), generator=g, dtype=torch.int8)
    hf = interop.hf_bitnet_pack(wq)
    got = interop.ternary_from_hf_bitnet(hf, torch.tensor([2.0]), n)
    assert torch.equal(got.qdata, bitops.reference.pack_ternary(wq).qdata)
    assert torch.equal(got.unpack(), wq)
    bad = hf.clone()
    row = int(torch.randint(0, n, (1,), generator=g))
    bad[row % bad.shape[0], int(torch.randint(0, k, (1,), generator=g))] |= 3 << (2 * (row // bad.shape[0]))
    with pytest.raises(ValueError, match="corrupt"):
        interop.ternary_from_hf_bitnet(bad, torch.tensor([2.0]), n)
