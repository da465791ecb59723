"""examples/binary_mnist.py: the integer-only export reproduces the trained BNN exactly.

Covers: predictions, hidden signs and logits of the packed model equal the BNN's on every
digits test example after a short training run; the threshold folding is exact over every
integer input, for negative and zero BN scales and for ties; the bit-plane first layer is
exact for 8-bit pixels; IDX files round-trip and malformed ones fail clearly.
"""

from __future__ import annotations

import gzip
import json
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))

import binary_mnist  # noqa: E402
from bnn_data import MNIST_FILES, IdxError, load_digits, load_mnist, read_idx, write_idx  # noqa: E402
from bnn_export import PackedBinaryMLP, fold_thresholds  # noqa: E402
from bnn_model import BinaryMLP, bn_eval  # noqa: E402


def bnn_hidden_signs(model: BinaryMLP, x: torch.Tensor) -> list[torch.Tensor]:
    """The trained model's own hidden sign activations (eval mode), as int8."""
    out, h = [], x.float()
    with torch.no_grad():
        for i in range(len(model.linears) - 1):
            h = torch.where(model.normalize(i, model.preactivation(i, h)) >= 0, 1.0, -1.0)
            out.append(h.to(torch.int8))
    return out


def randomize_norms(model: BinaryMLP, spreads, gen) -> None:
    """BN statistics and affine parameters spread like real pre-activations, signs mixed."""
    with torch.no_grad():
        for bn, spread in zip(model.norms, spreads):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=gen) * spread)
            bn.running_var.copy_(torch.rand(n, generator=gen) * spread**2 + 1e-3)
            bn.weight.copy_(torch.randn(n, generator=gen))
            bn.bias.copy_(torch.randn(n, generator=gen))


# --------------------------------------------------------------------------- end to end on digits


@pytest.fixture(scope="module")
def trained():
    pytest.importorskip("sklearn")
    data = load_digits()
    x_tr, y_tr = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    torch.manual_seed(0)
    model = BinaryMLP([64, 1024, 512, 10])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is faster on a shared 2-core machine
    try:
        binary_mnist.train(model, x_tr, y_tr, epochs=4, batch_size=64, lr=1e-2, seed=0, progress=False)
    finally:
        torch.set_num_threads(threads)
    return data, model, PackedBinaryMLP(model, data.input_bits)


def test_packed_predictions_identical_to_bnn_on_every_test_example(trained):
    data, model, packed = trained
    x, y = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    with torch.no_grad():
        logits_bnn = model(x)
        logits_packed, hidden = packed(x, return_hidden=True)
    assert torch.equal(logits_packed.argmax(1), logits_bnn.argmax(1))
    assert torch.equal(logits_packed, logits_bnn)  # bit-identical, not merely close
    for got, want in zip(hidden, bnn_hidden_signs(model, x)):
        assert torch.equal(got, want)
    # the short run really trained (a constant model would match trivially)
    assert (logits_bnn.argmax(1) == y).float().mean() > 0.85


def test_both_first_layer_kinds_identical(trained):
    data, model, packed = trained
    assert packed.first_layer_kind == "int8"  # auto at K=64: both layouts pad rows to 32 bytes
    x = torch.from_numpy(data.x_test)
    planes = PackedBinaryMLP(model, data.input_bits, first_layer="bitplanes")
    assert torch.equal(planes.first_layer(x), packed.first_layer(x))
    with torch.no_grad():
        assert torch.equal(planes(x), model(x))
    with pytest.raises(ValueError, match="first_layer"):
        PackedBinaryMLP(model, data.input_bits, first_layer="float")


def test_batch_size_does_not_change_packed_predictions(trained):
    data, _, packed = trained
    x = torch.from_numpy(data.x_test)
    whole = packed(x)
    assert torch.equal(torch.cat([packed(x[i : i + 7]) for i in range(0, len(x), 7)]), whole)


def test_seed_style_export_without_thresholds_disagrees(trained):
    """The seed's mistake, replayed: thresholding at 0 (dropping BN) changes hidden signs."""
    data, model, packed = trained
    x = torch.from_numpy(data.x_test)
    a0 = packed.first_layer(x)
    signs_no_bn = torch.where(a0 * torch.where(model.norms[0].weight < 0, -1, 1) >= 0, 1, -1)
    assert (signs_no_bn.to(torch.int8) != bnn_hidden_signs(model, x)[0]).float().mean() > 0.05


def test_packed_model_is_integer_and_small(trained):
    _, model, packed = trained
    for name, buf in packed.named_buffers():
        if not name.startswith("head_norm"):
            assert not buf.is_floating_point(), name
    float_bytes = sum(lin.weight.numel() * 4 for lin in model.linears)
    assert float_bytes / packed.weight_nbytes() >= 20


def test_packed_rejects_pixels_beyond_input_bits(trained):
    _, _, packed = trained
    with pytest.raises(ValueError, match="below 2\\*\\*5"):
        packed(torch.full((2, 64), 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        packed(torch.zeros(2, 64))


def test_cli_writes_results(tmp_path):
    pytest.importorskip("sklearn")
    rc = binary_mnist.main(["--epochs", "1", "--hidden", "64", "32", "--no-progress", "--out-dir", str(tmp_path)])
    assert rc == 0
    r = json.loads((tmp_path / "binary_mnist.json").read_text())
    assert r["packed_equals_bnn"] and r["acc_packed"] == r["acc_bnn"]
    assert "| test accuracy, packed integer-only model (first layer on the int8 kernel" in (tmp_path / "binary_mnist.md").read_text()


def test_cli_on_mnist_idx_files(tmp_path):
    """The --mnist path end to end (784 inputs, 8 bit planes) on small synthetic IDX files."""
    write_mnist(str(tmp_path), n_train=96, n_test=40)
    out = tmp_path / "out"
    argv = ["--mnist", str(tmp_path), "--epochs", "1", "--hidden", "64", "32", "--no-progress", "--out-dir", str(out)]
    assert binary_mnist.main(argv) == 0
    r = json.loads((out / "binary_mnist.json").read_text())
    assert r["data"] == "mnist" and r["sizes"] == [784, 64, 32, 10] and r["n_test"] == 40
    assert r["packed_equals_bnn"] and r["variant_equals_bnn"]
    assert r["first_layer"] == "bitplanes"  # 784 inputs: 1-bit rows are the smaller


# --------------------------------------------------------------------------- exactness with 8-bit pixels


@pytest.mark.parametrize("first_layer", ["bitplanes", "int8"])
def test_first_layer_exact_for_uint8_pixels_and_negative_scales(first_layer):
    gen = torch.Generator().manual_seed(1)
    model = BinaryMLP([300, 64, 48, 10]).eval()
    randomize_norms(model, [255 * 300**0.5 * 0.5, 48**0.5, 48**0.5], gen)
    packed = PackedBinaryMLP(model, input_bits=8, first_layer=first_layer)
    x = torch.randint(0, 256, (97, 300), dtype=torch.uint8, generator=gen)
    x[0], x[1] = 255, 0  # the extremes of every bit plane
    signs = torch.where(model.linears[0].weight >= 0, 1, -1).to(torch.int64)
    flip = torch.where(model.norms[0].weight < 0, -1, 1).to(torch.int64)
    exact = x.to(torch.int64) @ (signs * flip[:, None]).T
    assert torch.equal(packed.first_layer(x).to(torch.int64), exact)
    with torch.no_grad():
        assert torch.equal(packed(x), model(x))
    assert bool((model.norms[0].weight < 0).any())


# --------------------------------------------------------------------------- threshold folding


def make_bn(weight, bias, mean, var, eps=1e-5) -> torch.nn.BatchNorm1d:
    bn = torch.nn.BatchNorm1d(len(weight), eps=eps).eval()
    with torch.no_grad():
        for p, v in ((bn.weight, weight), (bn.bias, bias), (bn.running_mean, mean), (bn.running_var, var)):
            p.copy_(torch.tensor(v, dtype=torch.float32))
    return bn


def assert_fold_exact(bn, bound: int):
    t, flip = fold_thresholds(bn, bound)
    a = torch.arange(-bound, bound + 1, dtype=torch.int64)[:, None]
    with torch.no_grad():
        want = bn_eval(a.float(), bn) >= 0  # the sign the model computes (0 -> +1)
    got = torch.where(flip, -a, a) >= t.to(torch.int64)
    assert torch.equal(got, want)
    return t, flip


def test_fold_ties_and_negative_scales():
    # BN(3) == 0 exactly in channels 0 and 1: the tie must give +1 (a >= 3, resp. a <= 3)
    bn = make_bn([2.0, -2.0, 0.0, 0.0, 0.5, -0.5], [0.0, 0.0, -1.0, 1.0, 0.0, 0.25], [3.0, 3.0, 0, 0, -7.5, 2.0], [1.0] * 6, eps=0.0)
    t, flip = assert_fold_exact(bn, 20)
    assert flip.tolist() == [False, True, False, False, False, True]
    assert t[0] == 3 and t[1] == -3  # +1 on a >= 3; +1 on -a >= -3, i.e. a <= 3
    assert t[2] == 21 and t[3] == -20  # zero scale: never / always
    assert t[4] == -7  # mean -7.5: a = -8 is below, -7 above


def test_fold_random_channels_exact_over_every_integer():
    gen = torch.Generator().manual_seed(2)
    n, bound = 512, 300
    weight = torch.randn(n, generator=gen) * torch.rand(n, generator=gen) ** 4  # many magnitudes
    var = torch.rand(n, generator=gen) * 400 + 1e-6
    bias = torch.randn(n, generator=gen) * weight.abs() / var.sqrt() * bound / 4  # shift t by ~bound/4
    mean = torch.randn(n, generator=gen) * bound / 3
    bn = make_bn(weight.tolist(), bias.tolist(), mean.tolist(), var.tolist())
    t, flip = assert_fold_exact(bn, bound)
    assert flip.any() and (~flip).any()
    assert ((t > -bound) & (t <= bound)).sum() > n // 2  # most thresholds fall inside the range


def test_fold_matches_float_rounding_at_half_integer_boundaries():
    """Thresholds come from the float function itself, so a boundary that float rounding moves
    onto an integer is honoured exactly (checked over every integer)."""
    means = [k + 0.5 for k in range(-50, 50)] + [k + 1e-7 * k for k in range(-50, 50)]
    bn = make_bn([1.0, -1.0] * 100, [0.0] * 200, means, [1.0] * 200, eps=0.0)
    assert_fold_exact(bn, 64)


# --------------------------------------------------------------------------- data


def test_idx_round_trip(tmp_path):
    arr = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    write_idx(str(tmp_path / "a"), arr)
    raw = (tmp_path / "a").read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x03" and raw[4:8] == (2).to_bytes(4, "big")
    assert np.array_equal(read_idx(str(tmp_path / "a"), 3), arr)
    labels = np.array([0, 9, 3], dtype=np.uint8)
    write_idx(str(tmp_path / "b"), labels)
    assert np.array_equal(read_idx(str(tmp_path / "b"), 1), labels)


def write_mnist(directory, n_train=5, n_test=3, gz=False):
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, arr in arrays.items():
        path = os.path.join(directory, MNIST_FILES[key])
        write_idx(path, arr)
        if gz:
            with open(path, "rb") as f, gzip.open(path + ".gz", "wb") as g:
                g.write(f.read())
            os.remove(path)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_reads_the_four_files(tmp_path, gz):
    arrays = write_mnist(str(tmp_path), gz=gz)
    split = load_mnist(str(tmp_path))
    assert split.x_train.shape == (5, 784) and split.x_test.shape == (3, 784)
    assert np.array_equal(split.x_train, arrays["train_images"].reshape(5, 784))
    assert np.array_equal(split.y_test, arrays["test_labels"]) and split.y_test.dtype == np.int64
    assert split.input_bits == 8


def _corrupt(tmp_path, key, data: bytes):
    write_mnist(str(tmp_path))
    (tmp_path / MNIST_FILES[key]).write_bytes(data)


@pytest.mark.parametrize(
    "key, data, message",
    [
        ("train_images", b"", "bad magic"),
        ("train_images", b"\x1f\x8b\x08\x03" + b"\x00" * 12, "bad magic"),
        ("train_images", b"\x00\x00\x0d\x03" + b"\x00" * 12, "type 0x0d"),
        ("train_labels", b"\x00\x00\x08\x03" + b"\x00" * 12, "expected 1 dimensions, got 3"),
        ("test_images", b"\x00\x00\x08\x03\x00\x00", "truncated header"),
        ("test_images", b"\x00\x00\x08\x03" + (3).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\x00" * 100, "holds 100"),
        ("test_labels", b"\x00\x00\x08\x01" + (4).to_bytes(4, "big") + b"\x01\x02\x03\x04", "3 images but"),
        ("test_labels", b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"\x01\x0a\x03", "0..9, found 10"),
    ],
)
def test_malformed_idx_files_fail_clearly(tmp_path, key, data, message):
    _corrupt(tmp_path, key, data)
    with pytest.raises(IdxError, match=message):
        load_mnist(str(tmp_path))


def test_missing_mnist_files_named(tmp_path):
    write_mnist(str(tmp_path))
    os.remove(tmp_path / MNIST_FILES["test_labels"])
    with pytest.raises(IdxError, match="t10k-labels-idx1-ubyte"):
        load_mnist(str(tmp_path))
    with pytest.raises(IdxError, match="not a directory"):
        load_mnist(str(tmp_path / "nope"))


def test_digits_split():
    pytest.importorskip("sklearn")
    split = load_digits()
    assert split.x_train.dtype == np.uint8 and split.x_train.shape[1] == 64
    assert len(split.x_train) + len(split.x_test) == 1797 and int(split.x_train.max()) == 16
    assert split.input_bits == 5 and set(np.unique(split.y_test)) == set(range(10))


def test_digits_without_sklearn_says_how_to_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(SystemExit, match="pip install scikit-learn"):
        load_digits()
