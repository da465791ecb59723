"""The ops fit PyTorch's machinery: opcheck (schema, fake tensors, dispatch) and torch.compile."""

import pytest
import torch

import bitops

pytestmark = pytest.mark.skipif(bitops.backend() == "reference", reason="native extension not built")

K, N = 70, 5


def op_cases():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, K, generator=g)
    wq, gamma = bitops.ternary_quantize(torch.randn(N, K, generator=g))
    wb, beta = bitops.binary_quantize(torch.randn(N, K, generator=g))
    packed, packed_b = bitops.pack_ternary(wq).qdata, bitops.pack_binary(wb).qdata  # the ops take raw bytes
    xq, _ = bitops.quantize_activations(x)
    xbits, _ = bitops.binarize_activations(x)
    bias = torch.randn(N, generator=g)
    o = torch.ops.bitops
    return [
        (o.quantize_activations, (x,)),
        (o.binarize_activations, (x,)),
        (o.pack_ternary, (wq,)),
        (o.pack_ternary_from_hf, (bitops.interop.hf_bitnet_pack(wq), N)),
        (o.unpack_ternary, (packed, K)),
        (o.pack_binary, (wb,)),
        (o.unpack_binary, (packed_b, K)),
        (o.ternary_matmul_int, (xq, packed, K)),
        (o.binary_matmul_int, (xbits, packed_b, K)),
        (o.ternary_linear_i8, (x, packed, gamma, bias)),
        (o.ternary_linear_i8_and_act, (x, packed, gamma, bias, None, 0.0)),
        (o.ternary_linear_i8_and_act, (x, packed, gamma, None, torch.rand(K, generator=g), 1e-6)),
        (o.binary_linear_i8_and_act, (x, packed_b, beta, None, None, 0.0)),
        (o.quantize_pack_ternary, (torch.randn(N, K, generator=g), gamma, False)),
        (o.quantize_pack_ternary, (torch.randn(N, K, generator=g), gamma, True)),
        (o.quantize_pack_binary, (torch.randn(N, K, generator=g), True)),
        (o.dequantize_ternary, (packed, K, gamma)),
        (o.dequantize_activations, bitops.quantize_activations(x)),
        (o.rms_norm_backward, (torch.randn(3, K, generator=g), x, torch.rand(K, generator=g), 1e-6)),
        (o.dequantize_binary, (packed_b, K, torch.rand(N, generator=g))),
        (o.ternary_linear_f, (x, packed, gamma, None)),
        (o.binary_linear_i8, (x, packed_b, beta, bias)),
        (o.binary_linear_f, (x, packed_b, beta, None)),
        (o.binary_linear_b1, (x.unsqueeze(0), packed_b, beta, bias)),
        # differentiable: opcheck also checks the registered (straight-through) autograd
        (o.ternary_linear_i8, (x.clone().requires_grad_(), packed, gamma, bias.clone().requires_grad_())),
        (o.ternary_linear_f, (x.clone().requires_grad_(), packed, gamma, None)),
        (o.binary_linear_i8, (x.clone().requires_grad_(), packed_b, beta, bias)),
        (o.binary_linear_f, (x.clone().requires_grad_(), packed_b, beta, bias.clone().requires_grad_())),
        (o.binary_linear_b1, (x.clone().requires_grad_(), packed_b, beta, bias.clone().requires_grad_())),
    ]


@pytest.mark.parametrize("case", op_cases(), ids=lambda c: getattr(c, "__name__", None) or str(c)[:20])
def test_opcheck(case):
    op, args = case
    torch.library.opcheck(op, args)  # raises on any failing check


def _layer_inputs():
    x = torch.randn(4, 6, K)
    wq, gamma = bitops.ternary_quantize(torch.randn(N, K))
    return x, bitops.pack_ternary(wq), gamma, torch.randn(N)


def _two_layers(x, packed, gamma, bias):
    h = torch.relu(bitops.ternary_linear(x, packed, gamma, bias))
    return bitops.ternary_linear(torch.cat([h, x[..., N:]], dim=-1), packed, gamma, act_bits=None)


def test_compile_fullgraph_aot_eager_matches_eager():
    args = _layer_inputs()
    compiled = torch.compile(_two_layers, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(*args), _two_layers(*args))


def test_compile_fullgraph_inductor_matches_eager():
    args = _layer_inputs()
    compiled = torch.compile(_two_layers, fullgraph=True)
    assert torch.equal(compiled(*args), _two_layers(*args))
