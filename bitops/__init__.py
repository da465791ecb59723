"""bitops: 1-bit and 1.58-bit (ternary) neural network ops for PyTorch.

Quantize, pack, and multiply with packed weights on native CPU (AVX-512 VNNI, AVX2, portable) and CUDA
kernels; train with straight-through estimators. See README.md and DESIGN.md.
"""

from . import checkpoint, fused_projections, hf, interop, nn, reference
from ._native import backend
from .packed import PackedWeight
from .ops import (
    bf16_linear,
    binarize_activations,
    binary_linear,
    binary_matmul_int,
    binary_quantize,
    pack_binary,
    pack_ternary,
    quantize_activations,
    ternary_linear,
    ternary_matmul_int,
    ternary_quantize,
    unpack_binary,
    unpack_ternary,
)
from .reference import binary_row_bytes, ternary_row_bytes

__version__ = "0.1.0"

__all__ = [
    "backend",
    "PackedWeight",
    "reference",
    "ternary_quantize",
    "binary_quantize",
    "quantize_activations",
    "binarize_activations",
    "pack_ternary",
    "unpack_ternary",
    "pack_binary",
    "unpack_binary",
    "ternary_matmul_int",
    "binary_matmul_int",
    "ternary_linear",
    "binary_linear",
    "bf16_linear",
    "ternary_row_bytes",
    "binary_row_bytes",
]
