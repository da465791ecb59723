"""bitops.nn: BitLinear (train/eval/pack agree bit-exactly), packed state_dicts, convert()."""

import copy
import io
import pickle

import pytest
import torch
from torch import nn

import bitops
import bitops.nn as bnn
from bitops import quant
from bitops import reference as ref

COMBOS = [("ternary", 8), ("ternary", None), ("binary", 8), ("binary", 1), ("binary", None)]


def _x(shape, dtype=torch.float32, seed=0):
    return (2 * torch.randn(shape, generator=torch.Generator().manual_seed(seed))).to(dtype)


# --------------------------------------------------------------------------- BitLinear basics


def test_initialisation_is_nn_linear():
    torch.manual_seed(3)
    linear = nn.Linear(37, 11)
    torch.manual_seed(3)
    layer = bnn.BitLinear(37, 11)
    assert isinstance(layer.weight, nn.Parameter) and isinstance(layer.bias, nn.Parameter)
    assert torch.equal(layer.weight, linear.weight) and torch.equal(layer.bias, linear.bias)
    assert set(layer.state_dict()) == {"weight", "bias"}  # an nn.Linear checkpoint loads as is
    assert bnn.BitLinear(4, 3, bias=False).bias is None


def test_repr_names_the_configuration():
    text = repr(bnn.BitLinear(64, 32, bias=False, weight="binary", act_bits=1, norm=True))
    for part in ("in_features=64", "out_features=32", "bias=False", "weight=binary", "act_bits=1", "norm=True", "RMSNorm"):
        assert part in text
    assert "act_bits=None" in repr(bnn.BitLinear(2, 2, act_bits=None))


def test_bad_arguments_raise_clearly():
    with pytest.raises(ValueError, match="act_bits=1.*needs binary weights"):
        bnn.BitLinear(8, 8, weight="ternary", act_bits=1)
    with pytest.raises(ValueError, match="'ternary' or 'binary'"):
        bnn.BitLinear(8, 8, weight="int2")
    with pytest.raises(ValueError, match="in_features=8"):
        bnn.BitLinear(8, 4)(torch.randn(3, 9))


# --------------------------------------------------------------------------- train == eval == packed


@pytest.mark.parametrize("kind,act_bits", COMBOS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("norm", [False, True])
def test_eval_and_packed_equal_training_forward_exactly(kind, act_bits, dtype, norm):
    torch.manual_seed(0)
    layer = bnn.BitLinear(200, 48, weight=kind, act_bits=act_bits, norm=norm)
    if norm:
        with torch.no_grad():
            layer.norm.weight.uniform_(0.5, 1.5)
    x = _x((2, 3, 200), dtype)
    y_train = layer(x)
    layer.eval()
    y_eval, y_eval_again = layer(x), layer(x)
    y_packed = layer.pack()(x)
    assert y_train.dtype == dtype and y_train.shape == (2, 3, 48)
    assert torch.equal(y_train, y_eval) and torch.equal(y_eval, y_eval_again) and torch.equal(y_eval, y_packed)
    assert not torch.equal(y_eval, torch.zeros_like(y_eval))


@pytest.mark.parametrize("kind,act_bits", [c for c in COMBOS if c[1] is not None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_integer_path_is_the_oracle_bit_for_bit(kind, act_bits, dtype):
    """An independent check of 'integer part bit-identical': the layer equals the reference oracle."""
    torch.manual_seed(1)
    layer = bnn.BitLinear(130, 20, weight=kind, act_bits=act_bits).eval()
    x = _x((4, 5, 130), dtype, seed=2)
    quantize = ref.ternary_quantize if kind == "ternary" else ref.binary_quantize
    pack = ref.pack_ternary if kind == "ternary" else ref.pack_binary
    linear = ref.ternary_linear if kind == "ternary" else ref.binary_linear
    wq, scale = quantize(layer.weight.detach())
    expected = linear(x, pack(wq), scale, layer.bias.detach(), act_bits)
    assert torch.equal(layer(x), expected)


def test_eval_outputs_follow_the_fake_quant_formulation():
    torch.manual_seed(2)
    layer = bnn.BitLinear(64, 16).eval()
    x = _x((7, 64))
    expected = quant.fake_quant_linear(x, layer.weight, layer.bias, "ternary", 8)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_eval_packs_once_and_repacks_when_weights_change(monkeypatch):
    calls = []
    real = bnn.quantize_weight
    monkeypatch.setattr(bnn, "quantize_weight", lambda w, kind: calls.append(1) or real(w, kind))
    torch.manual_seed(0)
    layer = bnn.BitLinear(32, 8).eval()
    x = _x((3, 32))
    y0 = layer(x)
    layer(x), layer(x)
    assert len(calls) == 1
    with torch.no_grad():
        layer.weight.mul_(-1)  # in place: the version counter moves
    y1 = layer(x)
    assert len(calls) == 2 and not torch.equal(y0, y1)
    layer.load_state_dict({"weight": -layer.weight.detach(), "bias": layer.bias.detach()})
    assert torch.equal(layer(x), y0) and len(calls) == 3
    layer.weight = nn.Parameter(layer.weight.detach().clone())  # a new tensor, same version number
    layer(x)
    assert len(calls) == 4
    layer.train().eval()  # a mode switch drops the cache (fused optimizers do not bump versions)
    layer(x)
    assert len(calls) == 5


def test_eval_mode_tracks_optimizer_steps_and_stays_differentiable():
    torch.manual_seed(0)
    layer = bnn.BitLinear(16, 4).eval()
    x = _x((8, 16))
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    before = layer(x)
    before.pow(2).sum().backward()  # gradients flow in eval mode too (e.g. input attributions)
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    optimizer.step()
    assert not torch.equal(layer(x), before)
    assert torch.equal(layer(x), layer.train()(x))


def test_deepcopy_and_pickle_drop_the_cache_but_keep_the_outputs():
    layer = bnn.BitLinear(32, 8).eval()
    x = _x((2, 32))
    y = layer(x)
    assert layer._packed_cache is not None
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert clone._packed_cache is None and torch.equal(clone(x), y)


def test_bfloat16_parameters_train():
    torch.manual_seed(0)
    layer = bnn.BitLinear(32, 8, dtype=torch.bfloat16, norm=True)
    x = _x((4, 32), torch.bfloat16).requires_grad_()
    y = layer(x)
    y.float().square().sum().backward()
    assert y.dtype == torch.bfloat16
    assert layer.weight.grad.dtype == layer.bias.grad.dtype == layer.norm.weight.grad.dtype == torch.bfloat16
    assert x.grad.dtype == torch.bfloat16 and x.grad.abs().sum() > 0
    assert torch.equal(layer.eval()(x), y)


# --------------------------------------------------------------------------- packed state_dict


def _roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("kind,act_bits,ratio", [("ternary", 8, 16), ("binary", 1, 32), ("ternary", None, 16)])
def test_packed_state_dict_roundtrip_is_exact_and_small(kind, act_bits, ratio):
    torch.manual_seed(4)
    layer = bnn.BitLinear(256, 64, weight=kind, act_bits=act_bits, norm=True)
    packed = layer.pack()
    state = _roundtrip(packed.state_dict())
    assert set(state) == {"packed_weight", "weight_scale", "bias", "norm.weight", "_extra_state"}
    assert state["packed_weight"].dtype == torch.uint8
    fp32_bytes = layer.weight.numel() * 4
    assert state["packed_weight"].numel() * ratio == fp32_bytes  # 16x (ternary) / 32x (binary) smaller

    fresh = bnn.PackedBitLinear(256, 64, weight=kind, act_bits=act_bits, norm=True)
    x = _x((3, 256))
    assert not torch.equal(fresh(x), packed(x))
    fresh.load_state_dict(state)
    assert torch.equal(fresh(x), packed(x)) and torch.equal(fresh(x), layer.eval()(x))
    for key, value in packed.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(fresh.state_dict()[key], value), key


def test_pack_model_roundtrip_of_a_whole_model():
    torch.manual_seed(5)
    model = bnn.convert(nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 10)))
    x = _x((6, 40))
    expected = model.eval()(x)
    packed = bnn.pack_model(model)
    assert all(not isinstance(m, bnn.BitLinear) for m in packed.modules())
    assert torch.equal(packed(x), expected)
    skeleton = bnn.pack_model(bnn.convert(nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 10))))
    skeleton.load_state_dict(_roundtrip(packed.state_dict()))
    assert torch.equal(skeleton(x), expected)


def _packed_state(kind="ternary", k=100, n=6):
    torch.manual_seed(6)
    return bnn.BitLinear(k, n, weight=kind).pack().state_dict()


def _load(state, kind="ternary", k=100, n=6, **kw):
    module = bnn.PackedBitLinear(k, n, weight=kind, **kw)
    module.load_state_dict(state)
    return module


def test_corrupt_ternary_code_is_refused():
    state = _packed_state()
    state["packed_weight"][2, 0] = 0xFF  # code 3 in the first weights of row 2
    with pytest.raises(RuntimeError, match="packed_weight: corrupt ternary"):
        _load(state)


def _flip_a_padding_bit(packed, kind, k):
    """Flips one bit that holds no weight (found without knowing the layout); returns the copy."""
    unpack = bitops.unpack_ternary if kind == "ternary" else bitops.unpack_binary
    values = unpack(packed, k)
    for byte in reversed(range(packed.shape[1])):
        for bit in range(8):
            dirty = packed.clone()
            dirty[0, byte] ^= 1 << bit
            try:
                if torch.equal(unpack(dirty, k), values):
                    return dirty
            except (ValueError, RuntimeError):
                pass
    raise AssertionError("no padding bit found")


@pytest.mark.parametrize("kind", ["ternary", "binary"])
def test_dirty_padding_is_refused(kind):
    state = _packed_state(kind)  # k=100: rows are padded (to 128 / 256 weights)
    state["packed_weight"] = _flip_a_padding_bit(state["packed_weight"], kind, 100)
    with pytest.raises(RuntimeError, match="not in canonical packed form"):
        _load(state, kind)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda s: s.__setitem__("packed_weight", s["packed_weight"].float()), "expected dtype torch.uint8"),
        (lambda s: s.__setitem__("packed_weight", s["packed_weight"][:, :16]), r"expected shape \(6, 32\)"),
        (lambda s: s.__setitem__("weight_scale", torch.tensor(float("nan"))), "finite values >= 0"),
        (lambda s: s.__setitem__("weight_scale", torch.tensor(-1.0)), "finite values >= 0"),
        (lambda s: s.__setitem__("weight_scale", torch.tensor(0.5, dtype=torch.float64)), "float32"),
        (lambda s: s.__setitem__("bias", s["bias"].double()), "bias: expected dtype torch.float32"),
        (lambda s: s["_extra_state"].__setitem__("act_bits", None), "saved with act_bits=None.*has act_bits=8"),
        (lambda s: s.__setitem__("_extra_state", {"format": "something else"}), "not a bitops.PackedBitLinear"),
    ],
)
def test_mismatched_state_is_refused_with_a_clear_message(mutate, match):
    state = _packed_state()
    mutate(state)
    with pytest.raises(RuntimeError, match=match):
        _load(state)


def test_binary_checkpoint_does_not_load_into_a_ternary_module():
    state = _packed_state("binary")  # same buffer shape as ternary for k=100: only the record tells
    assert state["packed_weight"].shape == _packed_state("ternary")["packed_weight"].shape
    with pytest.raises(RuntimeError, match="saved with weight='binary'.*has weight='ternary'"):
        _load(state, "ternary")


def test_missing_and_unexpected_keys_still_reported():
    state = _packed_state()
    del state["weight_scale"]
    with pytest.raises(RuntimeError, match="Missing key.*weight_scale"):
        _load(state)
    with pytest.raises(RuntimeError, match="Unexpected key.*bias"):
        _load(_packed_state(), bias=False)


# --------------------------------------------------------------------------- convert


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(12, 32)
        self.mlp = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Sequential(nn.Linear(64, 32), nn.ReLU()))
        self.attn = nn.MultiheadAttention(32, 4, batch_first=True)
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        h = torch.relu(self.embed(x))
        h = h + self.mlp(h)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        return self.head(h.mean(dim=1))


def _linears(model, cls):
    return sorted(name for name, m in model.named_modules() if type(m) is cls)


def test_convert_replaces_every_linear_except_skipped_and_copies_weights():
    torch.manual_seed(7)
    model = Block()
    originals = {name: m.weight.detach().clone() for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    result = bnn.convert(model, weight="binary", act_bits=8, skip=["head"])
    assert result is model
    assert _linears(model, bnn.BitLinear) == ["embed", "mlp.0", "mlp.2.0"]
    assert _linears(model, nn.Linear) == ["head"]
    assert type(model.attn.out_proj) is not bnn.BitLinear  # MultiheadAttention reads it directly
    for name in ("embed", "mlp.0", "mlp.2.0"):
        layer = model.get_submodule(name)
        assert layer.weight_kind == "binary" and torch.equal(layer.weight, originals[name])


def test_convert_skips_by_predicate_and_prefix_and_catches_typos():
    model = bnn.convert(Block(), skip=lambda name, m: m.out_features == 3)
    assert _linears(model, nn.Linear) == ["head"]
    model = bnn.convert(Block(), skip="mlp")  # a module name skips all below it
    assert _linears(model, bnn.BitLinear) == ["embed", "head"]
    with pytest.raises(ValueError, match=r"\['haed'\] match no nn.Linear"):
        bnn.convert(Block(), skip=["haed"])
    shared = nn.Linear(4, 4)
    twice = bnn.convert(nn.Sequential(shared, nn.ReLU(), shared))
    assert twice[0] is twice[2] and isinstance(twice[0], bnn.BitLinear)
    assert bnn.pack_model(twice)[0] is twice[2]
    assert isinstance(bnn.convert(nn.Linear(3, 2)), bnn.BitLinear)


def test_converted_model_trains():
    torch.manual_seed(8)
    model = bnn.convert(Block(), skip=["head"])
    x = torch.randn(64, 5, 12)
    target = (x.sum(dim=(1, 2)) > 0).long() + (x[:, :, 0].mean(dim=1) > 0).long()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("attn"))
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


# --------------------------------------------------------------------------- the seed's task


def test_ternary_bitlinear_learns_and_like_the_seed():
    """Seed 000's exact setting (2-32-1, ReLU, sigmoid, BCELoss, AdamW lr 1e-3, 1000 steps)."""
    torch.manual_seed(0)
    model = nn.Sequential(bnn.BitLinear(2, 32), nn.ReLU(), bnn.BitLinear(32, 1), nn.Sigmoid())
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([[0.0], [0.0], [0.0], [1.0]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(1000):
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1  # the seed's naive 1-bit layer stalls at 0.63
    with torch.no_grad():
        predictions = model.eval()(x)
    assert torch.equal(predictions > 0.5, y.bool())
    assert torch.equal(bitops.nn.pack_model(model)(x), predictions)
