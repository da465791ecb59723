"""Data for the binary MLP example: scikit-learn's 8x8 digits, or MNIST from its IDX files.

Both loaders return a :class:`Split` of uint8 pixels (one flattened image per row) and int64
labels, plus ``input_bits``: how many bits a pixel needs (digits are 0..16, 5 bits; MNIST
0..255, 8 bits). The packed model splits pixels into that many bit planes.

The IDX format (yann.lecun.com/exdb/mnist): two zero bytes, a type code (0x08 = uint8), the
number of dimensions, then each dimension as a big-endian int32, then the data, row-major.
"""

from __future__ import annotations

import gzip
import os
from typing import NamedTuple

import numpy as np

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_UBYTE = 0x08


class Split(NamedTuple):
    x_train: np.ndarray  # uint8 [n_train, K]
    y_train: np.ndarray  # int64 [n_train]
    x_test: np.ndarray  # uint8 [n_test, K]
    y_test: np.ndarray  # int64 [n_test]
    input_bits: int  # bits per pixel value
    name: str


class IdxError(ValueError):
    """A missing, truncated or mislabelled IDX file."""


# --------------------------------------------------------------------------- IDX


def write_idx(path: str, array: np.ndarray) -> None:
    """Writes a uint8 array as an IDX file (used by the tests; MNIST itself ships this way)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _UBYTE, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with open(path, "wb") as f:
        f.write(header + array.tobytes())


def read_idx(path: str, ndim: int) -> np.ndarray:
    """Reads a uint8 IDX file of ``ndim`` dimensions (``path`` or ``path + '.gz'``)."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path = path + ".gz"
    if not os.path.exists(path):
        raise IdxError(f"IDX file not found: {path} (nor {path}.gz)")
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IdxError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    if data[2] != _UBYTE:
        raise IdxError(f"{path}: expected unsigned-byte data (type 0x08), got type 0x{data[2]:02x}")
    if data[3] != ndim:
        raise IdxError(f"{path}: expected {ndim} dimensions, got {data[3]}")
    start = 4 + 4 * ndim
    if len(data) < start:
        raise IdxError(f"{path}: truncated header ({len(data)} bytes, need {start})")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape, dtype=np.int64))
    if len(data) - start != size:
        raise IdxError(f"{path}: header says shape {shape} ({size} bytes) but the file holds {len(data) - start}")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(shape).copy()  # writable


def _mnist_pair(directory: str, images: str, labels: str):
    x = read_idx(os.path.join(directory, MNIST_FILES[images]), 3)
    y = read_idx(os.path.join(directory, MNIST_FILES[labels]), 1)
    if x.shape[0] != y.shape[0]:
        raise IdxError(f"{MNIST_FILES[images]} has {x.shape[0]} images but {MNIST_FILES[labels]} has {y.shape[0]} labels")
    if y.size and y.max() > 9:
        raise IdxError(f"{MNIST_FILES[labels]}: labels must be digits 0..9, found {int(y.max())}")
    return x.reshape(x.shape[0], -1), y.astype(np.int64)


def load_mnist(directory: str) -> Split:
    """MNIST from the four standard IDX files in ``directory`` (optionally gzipped)."""
    if not os.path.isdir(directory):
        raise IdxError(f"--mnist {directory}: not a directory; it must hold {', '.join(MNIST_FILES.values())}")
    x_train, y_train = _mnist_pair(directory, "train_images", "train_labels")
    x_test, y_test = _mnist_pair(directory, "test_images", "test_labels")
    if x_train.shape[1] != x_test.shape[1]:
        raise IdxError(f"train images have {x_train.shape[1]} pixels but test images have {x_test.shape[1]}")
    return Split(x_train, y_train, x_test, y_test, input_bits=8, name="mnist")


# --------------------------------------------------------------------------- digits


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's bundled 8x8 digits (1797 images, pixels 0..16), a stratified split."""
    try:
        from sklearn.datasets import load_digits as sk_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise SystemExit(
            "the digits data set ships with scikit-learn, which is not installed: "
            "`pip install scikit-learn`, or pass --mnist DIR with the four MNIST IDX files"
        ) from e
    bunch = sk_digits()
    x = bunch.data.astype(np.uint8)  # integers 0..16 stored as float64
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return Split(x_tr, y_tr, x_te, y_te, input_bits=5, name="digits")
