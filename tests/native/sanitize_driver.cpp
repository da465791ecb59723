// The sanitizer driver: runs every kernel of every compiled-in KernelTable
// (scalar, and AVX2 and AVX-512 VNNI where built and supported) against tests/native/reference.h
// on ragged and tiny shapes and hostile values. Every buffer is its own heap
// allocation of exactly the size the contract promises, so AddressSanitizer
// reports any read or write past it; UBSan catches overflow and bad shifts.
// Built and run by scripts/sanitize.sh. Exit status 1 on any mismatch.
//
//   sanitize_driver [seed]
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../../csrc/kernels/cpu/cpu_kernels.h"
#include "../../csrc/kernels/cpu/vnni_kernels.h"
#include "../../csrc/kernels/cpu/amx_kernels.h"
#include "../../csrc/kernels/cpu/bf16_gemv.h"
#include "reference.h"

namespace {

using bitops::Epilogue;
using bitops::cpu::KernelTable;
using bitops::cpu::Tile;

// Exactly n elements on the heap; new T[0] is a valid zero-byte allocation that ASan guards too.
template <class T>
struct Buf {
  std::unique_ptr<T[]> p;
  int64_t n;
  explicit Buf(int64_t count) : p(new T[count]), n(count) {}
  Buf(const Buf& o) : Buf(o.n) { std::memcpy(p.get(), o.p.get(), n * sizeof(T)); }
  T* data() { return p.get(); }
  const T* data() const { return p.get(); }
  T& operator[](int64_t i) { return p[i]; }
  const T& operator[](int64_t i) const { return p[i]; }
};

// ---------------------------------------------------------------------------- bookkeeping

struct Report {
  int64_t cases = 0, failures = 0;
  void check(bool ok, const std::string& what) {
    ++cases;
    if (ok) return;
    if (++failures <= 30) std::fprintf(stderr, "FAIL %s\n", what.c_str());
  }
};
Report report;

std::string label(const char* table, const char* kernel, int64_t m, int64_t n, int64_t k, const char* note = "") {
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s.%s M=%lld N=%lld K=%lld %s", table, kernel, (long long)m, (long long)n,
                (long long)k, note);
  return buf;
}

bool same_float(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::memcmp(&a, &b, sizeof a) == 0;  // bit-exact: +0.0 and -0.0 differ
}

// ---------------------------------------------------------------------------- inputs

std::mt19937_64 rng;
int64_t uniform(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); }
float normal() { return std::normal_distribution<float>(0.0f, 1.0f)(rng); }

// One row of float activations of a randomly chosen kind, each a hazard for some path.
void fill_float_row(float* row, int64_t k) {
  const int kind = int(uniform(0, 11));
  const float wide = std::exp(float(uniform(-30, 30)));
  for (int64_t i = 0; i < k; ++i) {
    float v = normal();
    switch (kind) {
      case 0: v *= wide; break;                                        // any magnitude
      case 1: v = 0.0f; break;                                         // all zero: s from eps
      case 2: v = 0.75f; break;                                        // all equal
      case 3: v = (i % 2 ? 3e38f : -3e38f) * (0.5f + 0.5f * std::fabs(std::tanh(v))); break;  // near overflow
      case 4: v *= 1e-40f; break;                                      // denormals
      case 5: v = (i % 3 == 0) ? -0.0f : v; break;                     // signed zeros
      case 6: v = (i == k / 2) ? NAN : v; break;                       // NaN row
      case 7: v = (i == k - 1) ? INFINITY : v; break;                  // +Inf row
      case 8: v = (i == 0) ? -INFINITY : v; break;                     // -Inf row
      case 9: v = float(uniform(-2, 2)) * 0.5f; break;                 // exact halves: rounding ties
      default: break;                                                  // plain normal
    }
    row[i] = v;
  }
}

void fill_int8(Buf<int8_t>& xq, int64_t m, int64_t k) {
  for (int64_t r = 0; r < m; ++r) {
    const int kind = int(uniform(0, 4));
    for (int64_t i = 0; i < k; ++i) {
      int v = int(uniform(-128, 127));
      if (kind == 0) v = -128;                        // saturates int16 pair sums, overflows negation
      if (kind == 1) v = 127;
      if (kind == 2) v = uniform(0, 1) ? -128 : 127;
      xq[r * k + i] = int8_t(v);
    }
  }
}

// Weights in {-1, 0, 1} (ternary) or {-1, +1} (binary), with constant rows mixed in.
void fill_weights(Buf<int8_t>& w, int64_t n, int64_t k, bool ternary) {
  for (int64_t r = 0; r < n; ++r) {
    const int kind = int(uniform(0, 5));
    for (int64_t i = 0; i < k; ++i) {
      int v = ternary ? int(uniform(-1, 1)) : (uniform(0, 1) ? 1 : -1);
      if (kind == 0) v = -1;
      if (kind == 1) v = 1;
      if (kind == 2 && ternary) v = 0;
      w[r * k + i] = int8_t(v);
    }
  }
}

// Fills the padding bits of every binary row with random bits (independently for x and
// w, so their XOR is not zero): kernels must mask them off.
void dirty_binary_padding(Buf<uint8_t>& bits, int64_t rows, int64_t k) {
  const int64_t rb = ref::binary_row_bytes(k);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = k; i < rb * 8; ++i)
      if (uniform(0, 1)) bits[r * rb + i / 8] |= uint8_t(1u << (i % 8));
}

// ---------------------------------------------------------------------------- one shape

struct Problem {
  int64_t m, n, k;
  Buf<float> x;
  Buf<int8_t> xq_rand, xq_ref, wt, wb;
  Buf<float> s_ref, gamma, bias;
  Buf<uint8_t> packed_t, packed_b, xbits;
  Buf<float> s_bits;  // 1, or NaN for a non-finite row (binarised activations)

  Problem(int64_t m_, int64_t n_, int64_t k_)
      : m(m_), n(n_), k(k_), x(m * k), xq_rand(m * k), xq_ref(m * k), wt(n * k), wb(n * k), s_ref(m), gamma(n),
        bias(n), packed_t(n * ref::ternary_row_bytes(k)), packed_b(n * ref::binary_row_bytes(k)),
        xbits(m * ref::binary_row_bytes(k)), s_bits(m) {
    for (int64_t r = 0; r < m; ++r) fill_float_row(x.data() + r * k, k);
    for (int64_t r = 0; r < m; ++r) ref::quantize_row(x.data() + r * k, k, xq_ref.data() + r * k, &s_ref[r]);
    fill_int8(xq_rand, m, k);
    fill_weights(wt, n, k, true);
    fill_weights(wb, n, k, false);
    for (int64_t j = 0; j < n; ++j) gamma[j] = std::fabs(normal()) + 1e-3f, bias[j] = normal();
    ref::pack_ternary(wt.data(), n, k, packed_t.data());
    ref::pack_binary(wb.data(), n, k, packed_b.data());
    dirty_binary_padding(packed_b, n, k);
    // activation signs (x >= 0, so -0.0 is +1), padding dirtied too
    Buf<int8_t> signs(m * k);
    for (int64_t i = 0; i < m * k; ++i) signs[i] = x[i] >= 0.0f ? 1 : -1;
    ref::pack_binary(signs.data(), m, k, xbits.data());
    dirty_binary_padding(xbits, m, k);
    for (int64_t r = 0; r < m; ++r) s_bits[r] = ref::all_finite(x.data() + r * k, k) ? 1.0f : NAN;
  }

  int32_t dot(const Buf<int8_t>& a, int64_t r, const Buf<int8_t>& w, int64_t j) const {
    int64_t acc = 0;
    for (int64_t i = 0; i < k; ++i) acc += int64_t(a[r * k + i]) * w[j * k + i];
    return int32_t(acc);  // |acc| <= 128 * kMaxK < 2^31
  }
  int32_t xnor_dot(int64_t r, int64_t j) const {
    int64_t acc = 0;
    for (int64_t i = 0; i < k; ++i) acc += (x[r * k + i] >= 0.0f ? 1 : -1) * wb[j * k + i];
    return int32_t(acc);
  }
};

// A random non-empty tile of [0, m) x [0, n), or the whole output.
Tile pick_tile(int64_t m, int64_t n, bool whole) {
  if (whole || m == 0) return Tile{0, m, 0, n};
  const int64_t m0 = uniform(0, m - 1), n0 = uniform(0, n - 1);
  return Tile{m0, uniform(m0 + 1, m), n0, uniform(n0 + 1, n)};
}
bool in_tile(const Tile& t, int64_t r, int64_t j) { return r >= t.m0 && r < t.m1 && j >= t.n0 && j < t.n1; }

constexpr int32_t kSentinelInt = 0x5A5A5A5A;
const float kSentinelFloat = -1234.5f;

// Integer-accumulating kernels: out_int, then the float epilogue, both bit-exact; cells
// outside the tile must keep their sentinel.
template <class Run, class Expect>
void check_exact(const char* table, const char* kernel, const Problem& p, const float* s, Run run, Expect expect) {
  for (int variant = 0; variant < 2; ++variant) {
    const bool to_int = variant == 0;
    const Tile t = pick_tile(p.m, p.n, uniform(0, 1));
    const bool per_channel = uniform(0, 1), with_bias = uniform(0, 1);
    Buf<int32_t> oi(p.m * p.n);
    Buf<float> of(p.m * p.n);
    for (int64_t i = 0; i < p.m * p.n; ++i) oi[i] = kSentinelInt, of[i] = kSentinelFloat;
    Epilogue e;
    e.ldo = p.n;
    e.gamma = p.gamma.data();
    e.gamma_stride = per_channel ? 1 : 0;
    e.s = s;
    e.bias = with_bias ? p.bias.data() : nullptr;
    // one gamma: the glue precomputes gamma / s[m] per row half the time (the same division)
    Buf<float> row_scale(p.m);
    if (!per_channel && s && uniform(0, 1)) {
      for (int64_t r = 0; r < p.m; ++r) row_scale[r] = p.gamma[0] / s[r];
      e.row_scale = row_scale.data();
    }
    if (to_int) e.out_int = oi.data(); else e.out = of.data();
    const bool returned = run(t, e);
    bool ok = returned;
    for (int64_t r = 0; r < p.m && ok; ++r)
      for (int64_t j = 0; j < p.n && ok; ++j) {
        if (!in_tile(t, r, j)) {
          ok = to_int ? oi[r * p.n + j] == kSentinelInt : same_float(of[r * p.n + j], kSentinelFloat);
          continue;
        }
        const int32_t acc = expect(r, j);
        if (to_int) {
          ok = oi[r * p.n + j] == acc;
        } else {
          const float y = ref::epilogue(float(acc), p.gamma[per_channel ? j : 0], s ? s + r : nullptr,
                                        with_bias ? &p.bias[j] : nullptr);
          ok = same_float(of[r * p.n + j], y);
        }
      }
    report.check(ok, label(table, kernel, p.m, p.n, p.k, to_int ? "(int out)" : "(float epilogue)"));
  }
}

// Float-activation kernels: the sum's order is the kernel's, so compare with the exact (double)
// value within the float32 error bound of a K-term sum, plus two roundings in the epilogue.
template <class Run>
void check_float_path(const char* table, const char* kernel, const Problem& p, const Buf<int8_t>& w, Run run) {
  const Tile t = pick_tile(p.m, p.n, uniform(0, 1));
  const bool with_bias = uniform(0, 1);
  Buf<float> out(p.m * p.n);
  for (int64_t i = 0; i < p.m * p.n; ++i) out[i] = kSentinelFloat;
  Epilogue e;
  e.ldo = p.n;
  e.gamma = p.gamma.data();
  e.gamma_stride = 1;
  e.bias = with_bias ? p.bias.data() : nullptr;
  e.out = out.data();
  bool ok = run(t, e);
  const double u = std::ldexp(1.0, -24);
  for (int64_t r = 0; r < p.m && ok; ++r)
    for (int64_t j = 0; j < p.n && ok; ++j) {
      const float y = out[r * p.n + j];
      if (!in_tile(t, r, j)) {
        ok = same_float(y, kSentinelFloat);
        continue;
      }
      double exact = 0.0, mass = 0.0;  // IEEE double: Inf * 0 = NaN, as in float
      for (int64_t i = 0; i < p.k; ++i) {
        const double prod = double(p.x[r * p.k + i]) * w[j * p.k + i];
        exact += prod;
        mass += std::fabs(prod);
      }
      const double g = p.gamma[j], b = with_bias ? p.bias[j] : 0.0;
      const double want = exact * g + b;
      if (!std::isfinite(want)) {
        ok = std::isnan(want) ? std::isnan(y) : same_float(y, float(want));
        continue;
      }
      const double bound = 2.0 * p.k * u * mass * g + 4.0 * u * (std::fabs(exact * g) + std::fabs(b)) +
                           std::ldexp(1.0, -140);
      // near the float range a partial sum, or the product with gamma, may round to Inf
      const bool may_overflow = mass * std::max(g, 1.0) + std::fabs(b) >= 0.5 * 3.4028234663852886e38;
      ok = std::fabs(double(y) - want) <= bound || (may_overflow && !std::isfinite(y));
    }
  report.check(ok, label(table, kernel, p.m, p.n, p.k, "(float activations)"));
}

// The invalid code 3 inside K must make the ternary kernels return false; in the padding it is ignored.
template <class Run>
void check_corrupt(const char* table, const char* kernel, const Problem& p, Run run) {
  if (p.m == 0) return;  // no row of x: a kernel need not read any weight
  const int64_t rb = ref::ternary_row_bytes(p.k);
  const Tile t = pick_tile(p.m, p.n, uniform(0, 1));
  Buf<uint8_t> bad(p.packed_t);
  const int64_t row = uniform(t.n0, t.n1 - 1);
  ref::set_ternary_code(bad.data() + row * rb, uniform(0, p.k - 1), 3);
  Buf<float> out(p.m * p.n);
  Epilogue e;
  e.ldo = p.n;
  e.gamma = p.gamma.data();
  e.out = out.data();
  report.check(!run(bad.data(), t, e), label(table, kernel, p.m, p.n, p.k, "(code 3 inside K not detected)"));
}

void check_table(const KernelTable& kt, const Problem& p) {
  const char* tn = kt.name;
  const int64_t m = p.m, n = p.n, k = p.k, rb_b = ref::binary_row_bytes(k);

  {  // quantize_rows on a sub-range: exact xq and s, rows outside untouched
    Buf<int8_t> xq(m * k);
    Buf<float> s(m);
    std::memset(xq.data(), 0x77, m * k);
    for (int64_t r = 0; r < m; ++r) s[r] = kSentinelFloat;
    const Tile t = pick_tile(m, 1, uniform(0, 1));
    kt.quantize_rows(p.x.data(), k, t.m0, t.m1, xq.data(), s.data());
    bool ok = true;
    for (int64_t r = 0; r < m && ok; ++r) {
      const bool inside = r >= t.m0 && r < t.m1;
      ok = same_float(s[r], inside ? p.s_ref[r] : kSentinelFloat);
      for (int64_t i = 0; i < k && ok; ++i) ok = xq[r * k + i] == (inside ? p.xq_ref[r * k + i] : int8_t(0x77));
    }
    report.check(ok, label(tn, "quantize_rows", m, 0, k));
  }
  {  // binarize_rows: the sign bits within K and s; padding bits are 0, as pack_binary writes them
    Buf<uint8_t> bits(m * rb_b);
    Buf<float> s(m);
    kt.binarize_rows(p.x.data(), k, 0, m, bits.data(), s.data());
    bool ok = true;
    for (int64_t r = 0; r < m && ok; ++r) {
      ok = same_float(s[r], p.s_bits[r]);
      for (int64_t i = 0; i < rb_b * 8 && ok; ++i) {
        const int want = i < k ? (p.x[r * k + i] >= 0.0f) : 0;
        ok = ((bits[r * rb_b + i / 8] >> (i % 8)) & 1) == want;
      }
    }
    report.check(ok, label(tn, "binarize_rows", m, 0, k));
  }

  const uint8_t* pt = p.packed_t.data();
  const uint8_t* pb = p.packed_b.data();
  // Integer activations from the caller (with -128/127 extremes), then the quantised x with its s.
  for (int src = 0; src < 2; ++src) {
    const Buf<int8_t>& xq = src ? p.xq_ref : p.xq_rand;
    const float* s = src ? p.s_ref.data() : nullptr;
    check_exact(tn, "ternary_gemm_i8", p, s, [&](Tile t, const Epilogue& e) { return kt.ternary_gemm_i8(xq.data(), pt, k, t, e); },
                [&](int64_t r, int64_t j) { return p.dot(xq, r, p.wt, j); });
    check_exact(tn, "binary_gemm_i8", p, s,
                [&](Tile t, const Epilogue& e) { kt.binary_gemm_i8(xq.data(), pb, k, t, e); return true; },
                [&](int64_t r, int64_t j) { return p.dot(xq, r, p.wb, j); });
  }
  check_exact(tn, "binary_gemm_bits", p, p.s_bits.data(),
              [&](Tile t, const Epilogue& e) { kt.binary_gemm_bits(p.xbits.data(), pb, k, t, e); return true; },
              [&](int64_t r, int64_t j) { return p.xnor_dot(r, j); });

  check_float_path(tn, "ternary_gemm_f32", p, p.wt,
                   [&](Tile t, const Epilogue& e) { return kt.ternary_gemm_f32(p.x.data(), pt, k, t, e); });
  check_float_path(tn, "binary_gemm_f32", p, p.wb,
                   [&](Tile t, const Epilogue& e) { kt.binary_gemm_f32(p.x.data(), pb, k, t, e); return true; });

  check_corrupt(tn, "ternary_gemm_i8", p,
                [&](const uint8_t* w, Tile t, Epilogue& e) { return kt.ternary_gemm_i8(p.xq_rand.data(), w, k, t, e); });
  check_corrupt(tn, "ternary_gemm_f32", p,
                [&](const uint8_t* w, Tile t, Epilogue& e) { return kt.ternary_gemm_f32(p.x.data(), w, k, t, e); });

  if (k % 128 != 0 && m > 0) {  // code 3 in the padding of every row: ignored, results unchanged
    Buf<uint8_t> padded(p.packed_t);
    const int64_t rb = ref::ternary_row_bytes(k);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = k; i < rb * 4; ++i) ref::set_ternary_code(padded.data() + j * rb, i, 3);
    check_exact(tn, "ternary_gemm_i8", p, nullptr,
                [&](Tile t, const Epilogue& e) { return kt.ternary_gemm_i8(p.xq_rand.data(), padded.data(), k, t, e); },
                [&](int64_t r, int64_t j) { return p.dot(p.xq_rand, r, p.wt, j); });
    check_float_path(tn, "ternary_gemm_f32", p, p.wt, [&](Tile t, const Epilogue& e) {
      return kt.ternary_gemm_f32(p.x.data(), padded.data(), k, t, e);
    });
  }
}

// ---------------------------------------------------------------------------- packing

using bitops::cpu::PackTable;

// First row r in [n0, n1) for which pred(r) is false, or -1.
template <class Pred>
int64_t first_row_not(int64_t n0, int64_t n1, Pred pred) {
  for (int64_t r = n0; r < n1; ++r)
    if (!pred(r)) return r;
  return -1;
}

void check_packing(const PackTable& pt, const Problem& p) {
  const char* tn = pt.name;
  const int64_t n = p.n, k = p.k, rbt = ref::ternary_row_bytes(k), rbb = ref::binary_row_bytes(k);
  {  // whole matrix: bit-exact with the reference both ways, and canonical
    Buf<uint8_t> packed(n * rbt);
    Buf<int8_t> back(n * k);
    const bool ok = pt.pack_ternary(p.wt.data(), k, 0, n, packed.data()) == -1 &&
                    std::memcmp(packed.data(), p.packed_t.data(), n * rbt) == 0 &&
                    pt.unpack_ternary(packed.data(), k, 0, n, back.data()) == -1 &&
                    std::memcmp(back.data(), p.wt.data(), n * k) == 0 &&
                    pt.validate_ternary(packed.data(), k, 0, n) == -1;
    report.check(ok, label(tn, "pack/unpack/validate_ternary", 0, n, k));
  }
  {
    Buf<uint8_t> packed(n * rbb);
    Buf<int8_t> back(n * k);
    Buf<uint8_t> clean(n * rbb);
    ref::pack_binary(p.wb.data(), n, k, clean.data());
    pt.unpack_binary(p.packed_b.data(), k, 0, n, back.data());  // dirty padding is ignored
    const bool ok = pt.pack_binary(p.wb.data(), k, 0, n, packed.data()) == -1 &&
                    std::memcmp(packed.data(), clean.data(), n * rbb) == 0 &&
                    std::memcmp(back.data(), p.wb.data(), n * k) == 0 &&
                    pt.validate_binary(clean.data(), k, 0, n) == -1 &&
                    pt.validate_binary(p.packed_b.data(), k, 0, n) ==
                        first_row_not(0, n, [&](int64_t r) { return ref::canonical_binary(p.packed_b.data() + r * rbb, k); });
    report.check(ok, label(tn, "pack/unpack/validate_binary", 0, n, k, "(dirty padding)"));
  }
  {  // a sub-range of rows: only those rows are written
    const int64_t n0 = uniform(0, n - 1), n1 = uniform(n0 + 1, n);
    Buf<uint8_t> packed(n * rbt), packed_b(n * rbb);
    Buf<int8_t> back(n * k), back_b(n * k);
    std::memset(packed.data(), 0xA7, n * rbt);
    std::memset(packed_b.data(), 0xA7, n * rbb);
    std::memset(back.data(), 0x77, n * k);
    std::memset(back_b.data(), 0x77, n * k);
    pt.pack_ternary(p.wt.data(), k, n0, n1, packed.data());
    pt.pack_binary(p.wb.data(), k, n0, n1, packed_b.data());
    pt.unpack_ternary(p.packed_t.data(), k, n0, n1, back.data());
    pt.unpack_binary(p.packed_b.data(), k, n0, n1, back_b.data());
    Buf<uint8_t> clean(n * rbb);
    ref::pack_binary(p.wb.data(), n, k, clean.data());
    bool ok = true;
    for (int64_t r = 0; r < n && ok; ++r) {
      const bool in = r >= n0 && r < n1;
      for (int64_t b = 0; b < rbt && ok; ++b) ok = packed[r * rbt + b] == (in ? p.packed_t[r * rbt + b] : 0xA7);
      for (int64_t b = 0; b < rbb && ok; ++b) ok = packed_b[r * rbb + b] == (in ? clean[r * rbb + b] : 0xA7);
      for (int64_t i = 0; i < k && ok; ++i) ok = back[r * k + i] == (in ? p.wt[r * k + i] : int8_t(0x77));
      for (int64_t i = 0; i < k && ok; ++i) ok = back_b[r * k + i] == (in ? p.wb[r * k + i] : int8_t(0x77));
    }
    report.check(ok, label(tn, "pack/unpack", 0, n, k, "(row sub-range)"));
  }
  {  // the weight quantisers on a sub-range, against their definitions (ties at +-0.5 d and
     // +-1.5 d, the float hazards of fill_float_row), and the byte transpose
    Buf<float> w(n * k);
    for (int64_t r = 0; r < n; ++r) fill_float_row(w.data() + r * k, k);
    const float d = std::fabs(normal()) + 1e-5f;
    for (int64_t i = 0; i < n * k; i += 5) w[i] = d * 0.5f * float(int(uniform(-3, 3)));
    const int64_t n0 = uniform(0, n - 1), n1 = uniform(n0 + 1, n), rows = n1 - n0;
    Buf<int8_t> qt(rows * k), qb(rows * k), tr(rows * k);
    pt.quantize_ternary_weights(w.data(), k, d, n0, n1, qt.data());
    pt.quantize_binary_weights(w.data(), k, n0, n1, qb.data());
    bool ok = true;
    for (int64_t r = n0; r < n1 && ok; ++r)
      for (int64_t i = 0; i < k && ok; ++i) {
        const float v = w[r * k + i], q = std::nearbyint(v / d);
        const int8_t want = std::isnan(q) ? 0 : q > 1.0f ? 1 : q < -1.0f ? -1 : int8_t(q);
        ok = qt[(r - n0) * k + i] == want && qb[(r - n0) * k + i] == (v >= 0.0f ? 1 : -1);
      }
    report.check(ok, label(tn, "quantize_{ternary,binary}_weights", 0, n, k, "(row sub-range)"));
    bitops::cpu::transpose_bytes(qt.data(), k, rows, k, tr.data(), rows);
    ok = true;
    for (int64_t r = 0; r < rows && ok; ++r)
      for (int64_t i = 0; i < k && ok; ++i) ok = tr[i * rows + r] == qt[r * k + i];
    report.check(ok, label(tn, "transpose_bytes", 0, rows, k));
  }
  {  // values outside the format: the first offending flat index, with a later one too
    const int64_t at = uniform(0, n * k - 1), later = uniform(at, n * k - 1);
    Buf<int8_t> w(p.wt);
    w[later] = int8_t(uniform(0, 1) ? -2 : 127);
    w[at] = int8_t(uniform(0, 1) ? 2 : -128);
    Buf<uint8_t> packed(n * rbt);
    report.check(pt.pack_ternary(w.data(), k, 0, n, packed.data()) == at,
                 label(tn, "pack_ternary", 0, n, k, "(out-of-format value)"));
    Buf<int8_t> wb(p.wb);
    wb[later] = int8_t(uniform(0, 1) ? -128 : 2);
    wb[at] = int8_t(uniform(0, 1) ? 0 : 127);
    Buf<uint8_t> packed_b(n * rbb);
    report.check(pt.pack_binary(wb.data(), k, 0, n, packed_b.data()) == at,
                 label(tn, "pack_binary", 0, n, k, "(out-of-format value)"));
    Buf<int8_t> last(p.wt);  // the very last element
    last[n * k - 1] = 2;
    report.check(pt.pack_ternary(last.data(), k, 0, n, packed.data()) == n * k - 1,
                 label(tn, "pack_ternary", 0, n, k, "(bad last value)"));
  }
  {  // code 3 within K: unpack and validate name the first such row
    Buf<uint8_t> bad(p.packed_t);
    const int64_t row = uniform(0, n - 1), i = uniform(0, 1) ? k - 1 : uniform(0, k - 1);
    ref::set_ternary_code(bad.data() + row * rbt, i, 3);
    if (row + 1 < n) ref::set_ternary_code(bad.data() + (n - 1) * rbt, uniform(0, k - 1), 3);
    Buf<int8_t> back(n * k);
    report.check(pt.unpack_ternary(bad.data(), k, 0, n, back.data()) == row,
                 label(tn, "unpack_ternary", 0, n, k, "(code 3)"));
    report.check(pt.validate_ternary(bad.data(), k, 0, n) == row, label(tn, "validate_ternary", 0, n, k, "(code 3)"));
  }
  if (k % 128 != 0) {  // a padding weight off code 1: unpack ignores it, validate flags it
    Buf<uint8_t> dirty(p.packed_t);
    const int64_t row = uniform(0, n - 1);
    const int off_codes[] = {0, 2, 3};
    ref::set_ternary_code(dirty.data() + row * rbt, uniform(k, rbt * 4 - 1), off_codes[uniform(0, 2)]);
    const int64_t want = first_row_not(0, n, [&](int64_t r) { return ref::canonical_ternary(dirty.data() + r * rbt, k); });
    Buf<int8_t> back(n * k);
    const bool ok = pt.unpack_ternary(dirty.data(), k, 0, n, back.data()) == -1 &&
                    std::memcmp(back.data(), p.wt.data(), n * k) == 0 && want == row &&
                    pt.validate_ternary(dirty.data(), k, 0, n) == want;
    report.check(ok, label(tn, "unpack/validate_ternary", 0, n, k, "(bad code in the padding)"));
  }
  {  // random bytes: validate == the reference's canonical test, on every sub-range start
    Buf<uint8_t> junk(n * rbt), junk_b(n * rbb);
    for (int64_t i = 0; i < n * rbt; ++i) junk[i] = uniform(0, 3) ? p.packed_t[i] : uint8_t(uniform(0, 255));
    for (int64_t i = 0; i < n * rbb; ++i) junk_b[i] = uniform(0, 7) ? p.packed_b[i] : uint8_t(uniform(0, 255));
    const int64_t n0 = uniform(0, n - 1);
    const int64_t want = first_row_not(n0, n, [&](int64_t r) { return ref::canonical_ternary(junk.data() + r * rbt, k); });
    const int64_t want_b = first_row_not(n0, n, [&](int64_t r) { return ref::canonical_binary(junk_b.data() + r * rbb, k); });
    report.check(pt.validate_ternary(junk.data(), k, n0, n) == want && pt.validate_binary(junk_b.data(), k, n0, n) == want_b,
                 label(tn, "validate_*", 0, n, k, "(random bytes)"));
  }
  if (n > 0) {  // transformers' BitNet layout (output row i*R + r in bits 2i+1:2i of row r) -> ours
    const int64_t rows = (n + 3) / 4;
    Buf<uint8_t> hf(rows * k), packed(n * rbt);
    for (int64_t i = 0; i < rows * k; ++i) hf[i] = 0;
    for (int64_t row = 0; row < n; ++row)
      for (int64_t c = 0; c < k; ++c)
        hf[(row % rows) * k + c] |= uint8_t((p.wt[row * k + c] + 1) << (2 * (row / rows)));
    bool ok = bitops::cpu::pack_ternary_from_hf(hf.data(), rows, k, 0, n, packed.data()) == -1;
    for (int64_t i = 0; ok && i < n * rbt; ++i) ok = packed[i] == p.packed_t[i];
    const int64_t bad_row = uniform(0, n - 1);
    hf[(bad_row % rows) * k + uniform(0, k - 1)] |= uint8_t(3 << (2 * (bad_row / rows)));
    ok = ok && bitops::cpu::pack_ternary_from_hf(hf.data(), rows, k, 0, n, packed.data()) == bad_row;
    report.check(ok, label(tn, "pack_ternary_from_hf", 0, n, k));
  }
}

// The int32 limit: K = kMaxK with every product +128 (xq = -128, w = -1) must still be exact.
void check_k_limit(const KernelTable& kt) {
  const int64_t k = bitops::kMaxK;
  Buf<int8_t> xq(k), w(k);
  std::memset(xq.data(), 0x80, k);  // -128
  std::memset(w.data(), 0xFF, k);   // -1
  Buf<uint8_t> pt(ref::ternary_row_bytes(k)), pb(ref::binary_row_bytes(k));
  ref::pack_ternary(w.data(), 1, k, pt.data());
  ref::pack_binary(w.data(), 1, k, pb.data());
  Buf<int32_t> out(1);
  Epilogue e;
  e.out_int = out.data();
  e.ldo = 1;
  const int64_t want = 128 * k;
  report.check(kt.ternary_gemm_i8(xq.data(), pt.data(), k, Tile{0, 1, 0, 1}, e) && out[0] == want,
               label(kt.name, "ternary_gemm_i8", 1, 1, k, "(K at the int32 limit)"));
  kt.binary_gemm_i8(xq.data(), pb.data(), k, Tile{0, 1, 0, 1}, e);
  report.check(out[0] == want, label(kt.name, "binary_gemm_i8", 1, 1, k, "(K at the int32 limit)"));
}

// The bf16 GEMV on small integers (every partial sum exact in float32, so every summation
// order gives the integer dot), x split by parity, over a random tile; out of the tile untouched.
void check_bf16_gemv(const char* name, bitops::cpu::Bf16GemvFn fn, int64_t m, int64_t n, int64_t k) {
  const int64_t kh = (k + 1) / 2;
  Buf<uint16_t> w(n * k);
  Buf<int32_t> wi(n * k), xi(m * k);
  Buf<float> xe(m * kh), xo(m * kh), bias(n), out(m * n);
  for (int64_t i = 0; i < n * k; ++i) {
    wi[i] = int32_t(uniform(-8, 8));
    const float f = float(wi[i]);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    w[i] = uint16_t(u >> 16);  // small integers are exact in bf16
  }
  for (int64_t r = 0; r < m; ++r) {
    xo[r * kh + kh - 1] = 0.0f;
    for (int64_t i = 0; i < k; ++i) {
      xi[r * k + i] = int32_t(uniform(-8, 8));
      ((i & 1) ? xo : xe)[r * kh + i / 2] = float(xi[r * k + i]);
    }
  }
  for (int64_t j = 0; j < n; ++j) bias[j] = float(uniform(-4, 4));
  for (int64_t i = 0; i < m * n; ++i) out[i] = -1e30f;
  const Tile t = pick_tile(m, n, uniform(0, 1) == 0);
  fn(xe.data(), xo.data(), w.data(), k, t, bias.data(), out.data(), n);
  bool ok = true;
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < n; ++j) {
      int64_t dot = 0;
      for (int64_t i = 0; i < k; ++i) dot += int64_t(xi[r * k + i]) * wi[j * k + i];
      const float want = in_tile(t, r, j) ? float(dot) + bias[j] : -1e30f;
      ok = ok && out[r * n + j] == want;
    }
  report.check(ok, label(name, "bf16_gemv", m, n, k));
}

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 20240901;
  rng.seed(seed);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines survive a sanitizer abort

  std::vector<const KernelTable*> tables{&bitops::cpu::scalar_kernels()};
  if (bitops::cpu::avx2_kernels() && cpu_has_avx2()) tables.push_back(bitops::cpu::avx2_kernels());
  if (bitops::cpu::avx512vnni_kernels() && cpu_has_avx2() && bitops::cpu::vnni::usable())
    tables.push_back(bitops::cpu::avx512vnni_kernels());
  std::printf("sanitize: seed %llu, tables:", (unsigned long long)seed);
  for (auto* t : tables) std::printf(" %s", t->name);
  std::printf("%s\n", bitops::cpu::avx2_kernels() ? "" : " (no AVX2 set compiled in)");
  std::vector<const bitops::cpu::PackTable*> pack_tables{&bitops::cpu::scalar_pack_kernels()};
  if (bitops::cpu::avx2_pack_kernels() && cpu_has_avx2()) pack_tables.push_back(bitops::cpu::avx2_pack_kernels());

  // Ragged K around every block size (32, 64, 128, 256 and wider words), tiny and odd M and N.
  const int64_t ks[] = {1,   2,   3,   4,   5,   7,   8,   9,   15,  16,  17,   31,   32,   33,   63,  64,
                        65,  95,  96,  97,  127, 128, 129, 191, 255, 256, 257,  383,  384,  511,  512, 513,
                        640, 1000, 1023, 1024, 1025, 2047, 2049, 4097};
  // AVX2 decodes panels from 8 rows of x, the AVX-512 VNNI ternary kernels from 16
  const int64_t ms[] = {0, 1, 1, 2, 3, 4, 5, 7, 8, 13, 15, 16, 31};
  const int64_t ns[] = {1, 1, 2, 3, 5, 8, 17, 33, 64, 65};
  auto run = [&](int64_t k) {
    const Problem p(ms[uniform(0, std::size(ms) - 1)], ns[uniform(0, std::size(ns) - 1)], k);
    for (auto* t : pack_tables) check_packing(*t, p);
    for (auto* t : tables) check_table(*t, p);
    const int64_t gm = std::min<int64_t>(p.m, 5);
    check_bf16_gemv("cpu-scalar", &bitops::cpu::bf16_gemv, gm, p.n, k);
    if (tables.size() > 1) check_bf16_gemv("cpu-avx2", &bitops::cpu::avx2::bf16_gemv, gm, p.n, k);
    if (tables.back() == bitops::cpu::avx512vnni_kernels())
      check_bf16_gemv("cpu-avx512vnni", &bitops::cpu::avx512::bf16_gemv, gm, p.n, k);
    if (tables.back() == bitops::cpu::avx512vnni_kernels()) {  // its other M = 1 read order too
      const auto order = bitops::cpu::vnni::gemv_order();
      bitops::cpu::vnni::set_gemv_order(order == bitops::cpu::vnni::kGemvTiles4 ? bitops::cpu::vnni::kGemvRowsInOrder
                                                                              : bitops::cpu::vnni::kGemvTiles4);
      check_table(*tables.back(), p);
      bitops::cpu::vnni::set_gemv_order(order);
      if (bitops::cpu::amx::usable()) {  // and the ternary GEMM without its AMX panels
        bitops::cpu::amx::set_enabled(0);
        check_table(*tables.back(), p);
        bitops::cpu::amx::set_enabled(-1);
      }
    }
  };
  for (int64_t k : ks)
    for (int rep = 0, shapes = k > 1024 ? 3 : 8; rep < shapes; ++rep) run(k);
  for (int rep = 0; rep < 40; ++rep) run(uniform(1, 3000));  // K off the list
  // Many rows, few features; one row, many outputs; several weight panels with ragged
  // register tiles (M % 3, N % 4 != 0) and int16 flushes along K.
  for (auto* t : tables) {
    check_table(*t, Problem(301, 3, 1));
    check_table(*t, Problem(1, 257, 7));
    check_table(*t, Problem(67, 129, 1100));
    check_k_limit(*t);
  }
  for (auto* t : pack_tables) {  // many rows, and rows of one weight
    check_packing(*t, Problem(0, 257, 7));
    check_packing(*t, Problem(0, 300, 1));
    check_packing(*t, Problem(0, 129, 2560));
  }

  std::printf("sanitize: %lld cases, %lld failures\n", (long long)report.cases, (long long)report.failures);
  return report.failures == 0 ? 0 : 1;
}
