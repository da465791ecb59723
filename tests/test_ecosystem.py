"""bitops inside the tools users already have: torch.compile, Hugging Face models, DDP."""

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bitops
from bitops.nn import BitLinear, convert

pytestmark = pytest.mark.skipif(bitops.backend() == "reference", reason="native extension not built")


def small_model(weight="ternary", act_bits=8):
    torch.manual_seed(0)
    return nn.Sequential(BitLinear(24, 32, weight=weight, act_bits=act_bits), nn.ReLU(),
                         BitLinear(32, 8, weight=weight, act_bits=act_bits, norm=True))


@pytest.mark.parametrize(
    "weight,act_bits,backend",
    [("ternary", 8, "aot_eager"), ("binary", 1, "aot_eager"), ("ternary", None, "aot_eager"), ("ternary", 8, "inductor")],
)
def test_compile_fullgraph_matches_eager_in_train_and_eval(weight, act_bits, backend):
    model = small_model(weight, act_bits)
    x = torch.randn(5, 24)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    # train mode: forward and gradients
    y_eager = model(x)
    y_eager.square().sum().backward()
    grads_eager = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    y_comp = compiled(x)
    y_comp.square().sum().backward()
    # aot_eager runs the same kernels in the same order: identical bits. Inductor fuses and
    # reorders the float reductions around the kernels (mean|W|, RMSNorm), which moves scales by
    # an ulp or so: a float32-rounding tolerance.
    exact = backend == "aot_eager"
    close = torch.equal if exact else (lambda a, b: torch.allclose(a, b, rtol=1e-5, atol=1e-6))
    assert close(y_comp, y_eager)
    for g_c, g_e in zip((p.grad for p in model.parameters()), grads_eager):
        assert torch.allclose(g_c, g_e, rtol=1e-5, atol=1e-6)
    # eval mode (packed kernels)
    model.eval()
    with torch.no_grad():
        assert close(compiled(x), model(x))


def test_convert_a_transformers_model_and_generate():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    convert(model, skip=["lm_head"])
    assert sum(isinstance(m, BitLinear) for m in model.modules()) == n_linear - 1
    assert type(model.lm_head) is nn.Linear
    model.eval()
    prompt = torch.tensor([[1, 5, 9, 2]])
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=6, do_sample=False)
        logits = model(prompt).logits
    assert out.shape == (1, 10) and torch.equal(out[:, :4], prompt)
    assert torch.isfinite(logits).all()


# ----------------------------------------------------------------------------- DDP


def _data():
    g = torch.Generator().manual_seed(123)
    return torch.randn(8, 24, generator=g), torch.randn(8, 8, generator=g)


def _train(model, x, y, steps=5):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()


def _ddp_worker(rank, world, out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    # A file store, not TCP: no store server thread in rank 0 to outlive its peer at exit
    # (a CI run once saw rank 0 abort in teardown, "terminate called without an active exception").
    store = os.path.join(out_dir, "ddp_store")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        model = DDP(small_model())
        x, y = _data()
        shard = slice(rank * 4, rank * 4 + 4)  # equal shards: mean of shard means = full-batch mean
        _train(model, x[shard], y[shard])
        torch.save(model.module.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # both ranks done before either tears its process group down
    finally:
        dist.destroy_process_group()


def test_ddp_gloo_two_processes_matches_single_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name in r0:
        assert torch.equal(r0[name], r1[name]), f"replicas diverged at {name}"
    single = small_model()
    x, y = _data()
    _train(single, x, y)
    for name, value in single.state_dict().items():
        # all-reduce sums gradients in another order than one full-batch backward: float rounding only
        assert torch.allclose(r0[name], value, rtol=1e-5, atol=1e-6), name
