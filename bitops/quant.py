"""Quantization for training, in one namespace: the configurations (:mod:`bitops.config`), the
straight-through quantizers (:mod:`bitops.ste`), the fused layer on the kernels
(:mod:`bitops.bit_linear`) and its gradient oracle (:mod:`bitops.fake_quant`)."""

from .bit_linear import BitLinearFunction, bit_linear, kernel_linear, quantize_weight
from .config import ACT_BITS, WEIGHT_KINDS, check_config
from .fake_quant import fake_quant_linear
from .ste import (
    BinaryWeightSTE,
    Int8ActivationSTE,
    SignActivationSTE,
    TernaryWeightSTE,
    binary_weight_ste,
    int8_activation_ste,
    sign_activation_ste,
    ternary_weight_ste,
)

__all__ = [
    "WEIGHT_KINDS",
    "ACT_BITS",
    "quantize_weight",
    "check_config",
    "kernel_linear",
    "TernaryWeightSTE",
    "BinaryWeightSTE",
    "Int8ActivationSTE",
    "SignActivationSTE",
    "BitLinearFunction",
    "ternary_weight_ste",
    "binary_weight_ste",
    "int8_activation_ste",
    "sign_activation_ste",
    "bit_linear",
    "fake_quant_linear",
]
