"""Packed models round-trip through safetensors (and torch.save) bit-exactly, and refuse bad files."""

import io

import pytest
import torch
from torch import nn

import bitops
import bitops.checkpoint as ckpt
from bitops.nn import BitLinear, PackedBitLinear, pack_model

pytest.importorskip("safetensors")


class Tiny(nn.Module):
    def __init__(self, weight="ternary", act_bits=8):
        super().__init__()
        self.embed = nn.Embedding(10, 48)
        self.body = nn.Sequential(BitLinear(48, 40, weight=weight, act_bits=act_bits), nn.ReLU(),
                                  BitLinear(40, 33, bias=False, weight=weight, act_bits=act_bits, norm=True))
        self.head = nn.Linear(33, 5)

    def forward(self, idx):
        return self.head(self.body(self.embed(idx)))


def packed_tiny(**kw):
    torch.manual_seed(0)
    return pack_model(Tiny(**kw).eval())


@pytest.mark.parametrize("kw", [dict(), dict(weight="binary", act_bits=1), dict(weight="binary", act_bits=None)])
def test_safetensors_round_trip_is_bit_exact(tmp_path, kw):
    model = packed_tiny(**kw)
    path = str(tmp_path / "m.safetensors")
    ckpt.save(model, path)
    torch.manual_seed(1)
    fresh = pack_model(Tiny(**kw).eval())  # different weights until loaded
    ckpt.load(fresh, path)
    for (name, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert (torch.equal(a, b) if torch.is_tensor(a) else a == b), name
    idx = torch.randint(0, 10, (3, 7))
    assert torch.equal(model(idx), fresh(idx))
    with open(path, "rb") as f:  # a safetensors file: 8-byte header length, then JSON
        header_len = int.from_bytes(f.read(8), "little")
        assert f.read(1) == b"{" and header_len > 0


def test_packed_checkpoint_is_much_smaller(tmp_path):
    torch.manual_seed(0)
    float_model = nn.Sequential(nn.Linear(512, 512, bias=False), nn.Linear(512, 512, bias=False))
    f_path, p_path = tmp_path / "f.safetensors", tmp_path / "p.safetensors"
    ckpt.save(float_model, str(f_path))
    ckpt.save(pack_model(bitops.nn.convert(float_model).eval()), str(p_path))
    assert f_path.stat().st_size >= 15 * p_path.stat().st_size


def test_shape_mismatch_is_refused(tmp_path):
    path = str(tmp_path / "m.safetensors")
    ckpt.save(packed_tiny(), path)
    other = packed_tiny()
    other.head = nn.Linear(33, 6)
    with pytest.raises(ValueError, match=r"head.weight: the model has shape \(6, 33\)"):
        ckpt.load(other, path)


def test_dtype_mismatch_is_refused_not_cast(tmp_path):
    path = str(tmp_path / "m.safetensors")
    ckpt.save(packed_tiny(), path)
    other = packed_tiny()
    other.head.to(torch.float64)
    with pytest.raises(ValueError, match="head.weight: the model has dtype torch.float64"):
        ckpt.load(other, path)


def test_config_mismatch_is_refused(tmp_path):
    path = str(tmp_path / "m.safetensors")
    ckpt.save(packed_tiny(act_bits=8), path)
    with pytest.raises(RuntimeError, match="act_bits"):
        ckpt.load(packed_tiny(act_bits=None), path)


def test_corrupt_packed_weights_in_file_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    path = str(tmp_path / "m.safetensors")
    model = packed_tiny()
    ckpt.save(model, path)
    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    tensors["body.0.packed_weight"][0, 0] = 0xFF  # code 3 in the first weights of row 0
    save_file(tensors, path, metadata=meta)
    with pytest.raises(RuntimeError, match="corrupt"):
        ckpt.load(packed_tiny(), path)


def test_torch_save_with_weights_only_load():
    model = packed_tiny()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # no arbitrary unpickling
    fresh = packed_tiny()
    fresh.load_state_dict(state)
    idx = torch.randint(0, 10, (2, 5))
    assert torch.equal(model(idx), fresh(idx))
    assert isinstance(fresh.body[0], PackedBitLinear)
