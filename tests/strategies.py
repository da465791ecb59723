"""Hypothesis strategies shared by the kernel tests: shapes that hit every tail."""

import torch
from hypothesis import strategies as st

# K values that straddle every block size the kernels use (4, 8, 32, 64, 128, 256)
SPECIAL_K = [1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 383, 1000]

ks = st.one_of(st.sampled_from(SPECIAL_K), st.integers(1, 1100))
ms = st.one_of(st.sampled_from([0, 1, 2, 3]), st.integers(0, 40))
ns = st.one_of(st.sampled_from([1, 2, 3, 17]), st.integers(1, 70))
seeds = st.integers(0, 2**31 - 1)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def random_ternary(n, k, seed, zero_fraction=None):
    g = gen(seed)
    wq = torch.randint(-1, 2, (n, k), generator=g, dtype=torch.int8)
    if zero_fraction == 1.0:
        wq.zero_()
    return wq


def random_binary(n, k, seed):
    return (torch.randint(0, 2, (n, k), generator=gen(seed), dtype=torch.int8) * 2 - 1).to(torch.int8)


def random_int8(m, k, seed, extremes=False):
    g = gen(seed)
    xq = torch.randint(-128, 128, (m, k), generator=g, dtype=torch.int8)
    if extremes and m * k:
        # the values that saturate int16 pair sums (maddubs) or overflow negation (sign_epi8)
        pick = torch.randint(0, 3, (m, k), generator=g)
        xq = torch.where(pick == 0, torch.full_like(xq, -128), torch.where(pick == 1, torch.full_like(xq, 127), xq))
    return xq


def random_float(m, k, seed, kind="normal"):
    g = gen(seed)
    x = torch.randn(m, k, generator=g)
    if kind == "wide":
        x = x * torch.exp(torch.randn(m, 1, generator=g) * 4)
    elif kind == "zero_rows" and m:
        x[:: max(1, m // 2)] = 0.0
    return x
