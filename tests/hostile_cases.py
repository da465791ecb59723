"""Hostile inputs for the public API, run by tests/test_hostile.py in a subprocess.

Each case either raises a clear exception (type + a message naming the problem)
or returns exactly what bitops.reference returns (README "Limits and policies").
None repeats tests/test_errors.py, which runs the gentler bad-input cases in process.
"""

import torch

import bitops
from bitops import reference as ref

from .hostile_runner import Case, Raises, SameAs, Satisfies

I8, U8, F32 = torch.int8, torch.uint8, torch.float32
K = 200  # two ternary blocks (the second ragged), one binary block
N = 5


def gen(seed):
    return torch.Generator().manual_seed(seed)


def wq_t(n=N, k=K, seed=1):
    return torch.randint(-1, 2, (n, k), generator=gen(seed), dtype=I8)


def wq_b(n=N, k=K, seed=2):
    return (torch.randint(0, 2, (n, k), generator=gen(seed), dtype=I8) * 2 - 1).to(I8)


def pt(n=N, k=K):
    """Raw packed bytes (these cases bend strides and storage; the ops then need in_features=)."""
    return ref.pack_ternary(wq_t(n, k)).qdata


def pb(n=N, k=K):
    return ref.pack_binary(wq_b(n, k)).qdata


def xf(m=3, k=K, seed=3):
    return torch.randn(m, k, generator=gen(seed))


def xi8(m=3, k=K, seed=4):
    return torch.randint(-128, 128, (m, k), generator=gen(seed), dtype=I8)


G = torch.tensor(0.75)
GN = torch.rand(N, generator=gen(5)) + 0.1
BIAS = torch.randn(N, generator=gen(6))


def case(name, fn, rtol=0.0):
    """fn(bitops) must return what fn(bitops.reference) returns."""
    return Case(name, lambda: fn(bitops), SameAs(lambda: fn(ref), rtol))


def shrunk(t, nbytes):
    """t with its storage shrunk under it (as FSDP frees parameters): shape says more than is there."""
    t = t.clone()
    t.untyped_storage().resize_(nbytes)
    return t


def misaligned_f32(src):
    """A float32 copy of src whose data pointer is 1 byte off 4-byte alignment."""
    buf = bytearray(src.numel() * 4 + 1)
    t = torch.frombuffer(buf, dtype=F32, offset=1, count=src.numel()).view(src.shape)
    t.copy_(src)
    assert t.data_ptr() % 4 == 1
    t._keep = buf  # the bytearray must outlive the tensor
    return t


def with_code3(packed, row, weight):
    p = packed.clone()
    byte = weight // 128 * 32 + weight % 32
    p[row, byte] |= 3 << (6 - 2 * (weight % 128 // 32))
    return p


def row_is_nan(y, rows):
    return bool(y[rows].isnan().all()) and not bool(y[[r for r in range(y.shape[0]) if r not in rows]].isnan().any())


def x_with(rows):
    """xf() with some rows overwritten: {row: value or list}."""
    x = xf(4)
    for r, v in rows.items():
        x[r] = torch.as_tensor(v, dtype=F32)
    return x


def aliased_x_and_packed():
    """x (float32) and packed (uint8) carved out of one storage."""
    nb = N * ref.ternary_row_bytes(K)
    buf = torch.zeros(nb + 3 * K * 4, dtype=U8)
    buf[:nb] = pt().reshape(-1)
    x = buf[nb:].view(F32).view(3, K)
    x.copy_(xf())
    return x, buf[:nb].view(N, -1)


def xq_aliasing_packed():
    """xq [1, K] int8 reading the first K bytes of packed's own storage."""
    packed = pt()
    xq = packed.view(I8).reshape(-1)[:K].view(1, K)
    assert xq.untyped_storage().data_ptr() == packed.untyped_storage().data_ptr()
    return xq, packed


def inplace_safe(m):
    """The inputs are not written: x, packed and gamma keep their bytes across a call."""
    x, p, g = xf(), pt(), GN.clone()
    before = (x.clone(), p.clone(), g.clone())
    m.ternary_linear(x, p, g, BIAS, in_features=K)
    return all(torch.equal(a, b) for a, b in zip(before, (x, p, g)))


def _at(t, idx, v):
    t = t.clone()
    t[idx] = v
    return t


def _last_is(t, v):
    return _at(t, (t.shape[0] - 1, t.shape[1] - 1), v)


def _dirty_pad(bits):
    bits = bits.clone()
    bits[:, K // 8] |= 0xFF << (K % 8) & 0xFF  # bits K.. of the byte holding weight K
    bits[:, K // 8 + 1 :] = 0xA5
    return bits


BIG_K = ref.MAX_K  # the largest K allowed: xq = -128 against w = -1 sums to 128 * K < 2^31


def at_k_limit():
    xq = torch.full((1, BIG_K), -128, dtype=I8)
    packed = torch.zeros(1, ref.ternary_row_bytes(BIG_K), dtype=U8)  # code 0 everywhere: w = -1
    return bitops.ternary_matmul_int(xq, packed, BIG_K)


def plus_one_weights(k, m=1):
    # code 2 (w = +1) everywhere: the largest per-lane sums in kernels that accumulate codes
    # (the VNNI kernels' run accumulators); 5 rows: a 4-row register tile and a single row;
    # m > 1 rows of x: the VNNI few-row kernel
    xq = torch.full((m, k), -128, dtype=I8)
    packed = torch.full((5, ref.ternary_row_bytes(k)), 0xAA, dtype=U8)
    return bitops.ternary_matmul_int(xq, packed, k)


# 2^13 whole blocks and a tail: the VNNI GEMV's largest chunk (its tail block joins the last chunk)
FULL_CHUNK_K = 2**20 + 127


CASES = [
    # ---- corrupt and truncated packed buffers
    Case("ternary all bytes 0xFF (every code 3)", lambda: bitops.ternary_linear(xf(), torch.full((N, 64), 255, dtype=U8), G, in_features=K),
         Raises(ValueError, "corrupt.*code 3")),
    Case("ternary code 3 at the last weight of the last row", lambda: bitops.ternary_matmul_int(xi8(), with_code3(pt(), N - 1, K - 1), K),
         Raises(ValueError, "corrupt")),
    Case("ternary code 3 at weight 0, float activations", lambda: bitops.ternary_linear(xf(), with_code3(pt(), 0, 0), G, act_bits=None, in_features=K),
         Raises(ValueError, "corrupt")),
    case("ternary code 3 only in the padding, int path", lambda m: m.ternary_matmul_int(xi8(), with_code3(with_code3(pt(), 0, K), 4, 255), K)),
    case("binary random garbage bytes", lambda m: m.binary_linear(xf(), torch.randint(0, 256, (N, 32), generator=gen(7), dtype=U8), G, act_bits=1, in_features=K)),
    Case("packed storage shrunk under it", lambda: bitops.ternary_linear(xf(), shrunk(pt(), 40), G, in_features=K),
         Raises(ValueError, "packed .*storage")),
    Case("x storage freed (resized to 0)", lambda: bitops.quantize_activations(shrunk(xf(), 0)), Raises(ValueError, "x .*storage")),
    Case("gamma storage freed", lambda: bitops.ternary_linear(xf(), pt(), shrunk(GN, 0), in_features=K), Raises(ValueError, "gamma .*storage")),
    Case("packed wider than k needs", lambda: bitops.ternary_linear(xf(), torch.cat([pt(), pt()], 1), G, in_features=K),
         Raises(ValueError, "128 bytes, but k=200 needs 64")),
    Case("binary rows too narrow for k=300", lambda: bitops.unpack_binary(pb(), 300), Raises(ValueError, "k=300 needs 64")),
    Case("packed 0-d", lambda: bitops.unpack_ternary(torch.tensor(7, dtype=U8), 4), Raises(ValueError, "2-D")),
    # ---- K: negative, huge, beyond int64, not matching
    Case("k beyond int64", lambda: bitops.unpack_ternary(pt(), 2**64), Raises(ValueError, "k must be in")),
    Case("k most negative int64", lambda: bitops.ternary_matmul_int(xi8(), pt(), -(2**63)), Raises(ValueError, "k must be in")),
    Case("k = 2^24 (sum could reach 2^31)", lambda: bitops.binary_matmul_int(torch.zeros(1, 2**21, dtype=U8), torch.zeros(1, 2**21, dtype=U8), 2**24),
         Raises(ValueError, "k must be in")),
    Case("k a bool", lambda: bitops.unpack_binary(pb(), True), Raises(TypeError, "k must be an int")),
    Case("k a tensor", lambda: bitops.ternary_matmul_int(xi8(), pt(), torch.tensor(K)), Raises(TypeError, "k must be an int")),
    Case("k at the int32 limit, every product +128", at_k_limit,
         Satisfies(lambda y: y.dtype == torch.int32 and y.item() == 128 * BIG_K, "128 * K exactly")),
    Case("k at the int32 limit, every product -128, 5 rows", lambda: plus_one_weights(BIG_K),
         Satisfies(lambda y: y.shape == (1, 5) and bool((y == -128 * BIG_K).all()), "-128 * K exactly in every row")),
    Case("k = 2^20 + 127 (one full chunk plus a tail), every product -128", lambda: plus_one_weights(FULL_CHUNK_K),
         Satisfies(lambda y: y.shape == (1, 5) and bool((y == -128 * FULL_CHUNK_K).all()), "-128 * K exactly")),
    Case("k at the int32 limit, every product -128, 4 rows of x", lambda: plus_one_weights(BIG_K, 4),
         Satisfies(lambda y: y.shape == (4, 5) and bool((y == -128 * BIG_K).all()), "-128 * K exactly everywhere")),
    Case("k = 2^20 + 127, every product -128, 3 rows of x", lambda: plus_one_weights(FULL_CHUNK_K, 3),
         Satisfies(lambda y: y.shape == (3, 5) and bool((y == -128 * FULL_CHUNK_K).all()), "-128 * K exactly")),
    Case("xbits k mismatch (64 bytes for k=200)", lambda: bitops.binary_matmul_int(torch.zeros(2, 64, dtype=U8), pb(), K),
         Raises(ValueError, "xbits must have rows of 32 bytes for k=200")),
    # ---- aliasing, views, strides
    case("x and packed share one storage", lambda m: m.ternary_linear(*aliased_x_and_packed(), G, in_features=K)),
    case("xq is an int8 view of packed's own bytes", lambda m: m.ternary_matmul_int(*xq_aliasing_packed(), K)),
    case("bias is the same tensor as gamma", lambda m: m.ternary_linear(xf(), pt(), GN, GN, in_features=K)),
    case("x transposed (non-contiguous)", lambda m: m.ternary_linear(xf(k=3, m=K).t(), pt(), G, BIAS, in_features=K)),
    case("x zero-stride expand of one row", lambda m: m.ternary_linear(xf(m=1).expand(6, K), pt(), GN, in_features=K)),
    case("x zero-stride in the last dimension", lambda m: m.binary_linear(torch.tensor([[0.5], [-2.0]]).expand(2, K), pb(), G, act_bits=None, in_features=K), rtol=1e-6),
    case("x as_strided with overlapping rows", lambda m: m.ternary_linear(torch.randn(K + 8, generator=gen(8)).as_strided((9, K), (1, 1)), pt(), G, in_features=K)),
    case("x sliced (storage offset, row stride)", lambda m: m.binary_linear(xf(m=6, k=K + 5)[1::2, 5:], pb(), GN, BIAS, in_features=K)),
    case("x float32 misaligned by one byte", lambda m: m.ternary_linear(misaligned_f32(xf()), pt(), G, in_features=K)),
    case("gamma and bias misaligned by one byte", lambda m: m.binary_linear(xf(), pb(), misaligned_f32(GN), misaligned_f32(BIAS), in_features=K)),
    case("packed transposed view", lambda m: m.ternary_linear(xf(), pt().t().contiguous().t(), G, in_features=K)),
    case("packed zero-stride expand of one row", lambda m: m.binary_linear(xf(), pb(1).expand(N, -1), G, act_bits=1, in_features=K)),
    case("gamma per-channel with stride 2", lambda m: m.ternary_linear(xf(), pt(), torch.rand(2 * N, generator=gen(9))[::2], in_features=K)),
    case("gamma shaped [1, 1, 1]", lambda m: m.binary_linear(xf(), pb(), torch.full((1, 1, 1), 0.3), in_features=K)),
    Case("inputs are never written", lambda: inplace_safe(bitops), Satisfies(bool, "True")),
    # ---- devices
    Case("gamma on meta, x and packed on cpu", lambda: bitops.ternary_linear(xf(), pt(), G.to("meta"), in_features=K), Raises(ValueError, "one device")),
    Case("bias on meta", lambda: bitops.binary_linear(xf(), pb(), G, BIAS.to("meta"), in_features=K), Raises(ValueError, "one device")),
    Case("xbits on meta, wbits on cpu", lambda: bitops.binary_matmul_int(torch.zeros(1, 32, dtype=U8, device="meta"), pb(), K),
         Raises(ValueError, "one device")),
    case("all on meta: shapes only", lambda m: m.ternary_linear(xf().to("meta"), pt().to("meta"), G.to("meta"), in_features=K)),
    case("pack on meta", lambda m: m.pack_binary(wq_b().to("meta"))),
    Case("meta still checks shapes", lambda: bitops.ternary_linear(xf(k=300).to("meta"), pt().to("meta"), G.to("meta"), in_features=K),
         Raises(ValueError, "300 features.*in_features=200")),
    # ---- dtypes
    Case("x complex64", lambda: bitops.ternary_linear(xf().to(torch.complex64), pt(), G, in_features=K), Raises(TypeError, "x must be float32")),
    Case("x int8 into quantize_activations", lambda: bitops.quantize_activations(xi8()), Raises(TypeError, "x must be float32")),
    Case("xq float16", lambda: bitops.ternary_matmul_int(xi8().half(), pt(), K), Raises(TypeError, "xq must be int8")),
    Case("gamma float16", lambda: bitops.ternary_linear(xf(), pt(), G.half(), in_features=K), Raises(TypeError, "gamma must be float32")),
    Case("beta bfloat16 per channel", lambda: bitops.binary_linear(xf(), pb(), GN.bfloat16(), in_features=K), Raises(TypeError, "beta must be float32")),
    Case("beta shaped [N, 1]", lambda: bitops.binary_linear(xf(), pb(), GN[:, None], in_features=K), Raises(ValueError, "beta must hold")),
    Case("gamma empty", lambda: bitops.ternary_linear(xf(), pt(), torch.ones(0), in_features=K), Raises(ValueError, "gamma must hold")),
    case("x bfloat16, bias float16", lambda m: m.ternary_linear(xf().bfloat16(), pt(), G, BIAS.half(), in_features=K)),
    Case("x sparse COO", lambda: bitops.ternary_linear(xf().to_sparse(), pt(), G, in_features=K), Raises(TypeError, "x must be a dense .*sparse_coo")),
    Case("packed sparse CSR", lambda: bitops.unpack_ternary(pt().to_sparse_csr(), K), Raises(TypeError, "packed must be a dense")),
    Case("gamma sparse", lambda: bitops.binary_linear(xf(), pb(), GN.to_sparse(), act_bits=1, in_features=K), Raises(TypeError, "beta must be a dense")),
    Case("x nested", lambda: bitops.ternary_linear(torch.nested.nested_tensor([xf(m=2), xf(m=3)]), pt(), G, in_features=K),
         Raises(TypeError, "x must be a dense .*nested")),
    Case("x quantized qint8", lambda: bitops.quantize_activations(torch.quantize_per_tensor(xf(), 0.1, 0, torch.qint8)),
         Raises(TypeError, "x must be a dense .*quantized")),
    Case("pack_ternary from uint8", lambda: bitops.pack_ternary(wq_t().abs().to(U8)), Raises(TypeError, "wq must be int8")),
    # ---- empty and 0-d
    case("x with zero rows", lambda m: m.ternary_linear(xf(m=0), pt(), G, in_features=K)),
    case("x [2, 0, K]", lambda m: m.binary_linear(torch.ones(2, 0, K), pb(), G, act_bits=1, in_features=K)),
    case("packed with zero rows and gamma [0]", lambda m: m.ternary_linear(xf(), pt(n=0), torch.ones(0), in_features=K)),
    case("pack zero rows", lambda m: m.pack_ternary(wq_t(n=0))),
    Case("pack zero columns", lambda: bitops.pack_binary(torch.ones(3, 0, dtype=I8)), Raises(ValueError, "k must be in")),
    Case("x 0-d into ternary_linear", lambda: bitops.ternary_linear(torch.tensor(1.0), pt(), G, in_features=K), Raises(ValueError, "dimension")),
    Case("xq 0-d", lambda: bitops.ternary_matmul_int(torch.tensor(1, dtype=I8), pt(), K), Raises(ValueError, "xq must have k=200")),
    Case("xbits 0-d", lambda: bitops.binary_matmul_int(torch.tensor(1, dtype=U8), pb(), K), Raises(ValueError, "xbits must have rows of 32 bytes")),
    # ---- pack functions given values outside their format
    Case("pack_ternary -128", lambda: bitops.pack_ternary(torch.full((2, 5), -128, dtype=I8)), Raises(ValueError, "found -128 at row 0, column 0")),
    Case("pack_ternary 127 at the very end", lambda: bitops.pack_ternary(_last_is(wq_t(), 127)),
         Raises(ValueError, f"found 127 at row {N - 1}, column {K - 1}")),
    Case("pack_ternary 2 in a transposed view", lambda: bitops.pack_ternary(_last_is(wq_t(), 2).t().contiguous().t()), Raises(ValueError, "found 2")),
    Case("pack_binary 0 mid-row", lambda: bitops.pack_binary(_at(wq_b(), (2, 100), 0)), Raises(ValueError, "found 0 at row 2, column 100")),
    Case("pack_binary 2", lambda: bitops.pack_binary(_at(wq_b(), (0, 0), 2)), Raises(ValueError, "-1 and \\+1")),
    Case("pack_binary -128", lambda: bitops.pack_binary(_at(wq_b(), (4, 199), -128)), Raises(ValueError, "found -128")),
    case("pack_ternary of a transposed in-range view", lambda m: m.pack_ternary(wq_t(n=K, k=N).t())),
    # ---- int8 extremes
    case("xq all -128 against w all -1", lambda m: m.ternary_matmul_int(torch.full((2, 1000), -128, dtype=I8), ref.pack_ternary(torch.full((3, 1000), -1, dtype=I8)), 1000)),
    case("xq alternating -128 / 127", lambda m: m.ternary_matmul_int(torch.tensor([-128, 127], dtype=I8).repeat(3, 150), pt(k=300), 300)),
    case("xbits with garbage padding bits", lambda m: m.binary_matmul_int(_dirty_pad(m.binarize_activations(xf())[0]), pb(), K)),
    # ---- NaN / Inf / denormals / -0.0 (policy: a non-finite row gives a NaN row)
    Case("NaN row, int8 path", lambda: bitops.ternary_linear(x_with({1: float("nan")}), pt(), G, BIAS, in_features=K),
         Satisfies(lambda y: row_is_nan(y, [1]), "NaN in row 1 only")),
    case("+Inf row, XNOR path", lambda m: m.binary_linear(x_with({2: [float("inf")] + [1.0] * (K - 1)}), pb(), G, act_bits=1, in_features=K)),
    case("-Inf row, binary int8 path", lambda m: m.binary_linear(x_with({0: [-float("inf")] * K}), pb(), GN, BIAS, in_features=K)),
    case("Inf row, float16 x", lambda m: m.ternary_linear(x_with({3: [float("inf")] * K}).half(), pt(), G, in_features=K)),
    case("denormal row", lambda m: m.ternary_linear(x_with({0: 1e-40, 1: [3e-45] * K}), pt(), GN, BIAS, in_features=K)),
    case("-0.0 row signs to +1", lambda m: m.binary_linear(x_with({1: -0.0}), pb(), G, act_bits=1, in_features=K)),
    case("3e38 magnitudes", lambda m: m.ternary_linear(x_with({0: 3e38, 2: [-3e38, 3e38] * (K // 2)}), pt(), G, in_features=K)),
    case("NaN in bias", lambda m: m.ternary_linear(xf(), pt(), G, torch.tensor([0.0, float("nan"), 1.0, 2.0, 3.0]), in_features=K)),
    case("NaN activation, float path", lambda m: m.ternary_linear(x_with({1: [float("nan")] + [0.0] * (K - 1)}), pt(), G, act_bits=None, in_features=K), rtol=1e-5),
    # ---- very large M or N with tiny K
    case("M = 2^18, K = 1", lambda m: m.ternary_linear(torch.randn(2**18, 1, generator=gen(10)), pt(k=1), GN, in_features=1)),
    case("N = 2^16, K = 3", lambda m: m.binary_linear(xf(m=2, k=3), pb(n=2**16, k=3), G, act_bits=1, in_features=3)),
    Case("2^62 rows by expand", lambda: bitops.ternary_linear(torch.ones(1, 1).expand(2**62, 1), pt(k=1), G, in_features=1), Raises(RuntimeError, "overflow")),
]

