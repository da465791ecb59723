// The portable kernels: plain C++ that any x86-64 (or other) CPU runs.
// Each decodes one weight row into int8 once and reuses it for every row of x
// in the tile. They are the fallback and the baseline the AVX2 set is tested
// against; clarity over speed.
#include <cmath>
#include <cstring>
#include <vector>
#include "cpu_kernels.h"
#include "quantize_common.h"

namespace bitops::cpu {
namespace {

void quantize_rows(const float* x, int64_t k, int64_t m0, int64_t m1, int8_t* xq, float* s) {
  for (int64_t m = m0; m < m1; ++m) {
    const float* row = x + m * k;
    int8_t* q = xq + m * k;
    float amax = 0.0f;
    bool finite = true;
    for (int64_t i = 0; i < k; ++i) {
      finite &= std::isfinite(row[i]);
      amax = std::fmax(amax, std::fabs(row[i]));
    }
    if (!finite) {
      s[m] = NAN;
      std::memset(q, 0, k);
      continue;
    }
    const float scale = absmax_scale(amax);
    s[m] = scale;
    for (int64_t i = 0; i < k; ++i) q[i] = quantize_value(row[i], scale);
  }
}

void binarize_rows(const float* x, int64_t k, int64_t m0, int64_t m1, uint8_t* bits, float* s) {
  const int64_t rb = binary_row_bytes(k);
  for (int64_t m = m0; m < m1; ++m) {
    const float* row = x + m * k;
    uint8_t* dst = bits + m * rb;
    std::memset(dst, 0, rb);
    bool finite = true;
    for (int64_t i = 0; i < k; ++i) {
      finite &= std::isfinite(row[i]);
      if (row[i] >= 0.0f) dst[i >> 3] |= static_cast<uint8_t>(1u << (i & 7));
    }
    s[m] = finite ? 1.0f : NAN;
  }
}

inline void store(const Epilogue& e, int64_t m, int64_t n, int32_t acc) {
  if (e.out_int)
    e.out_int[m * e.ldo + n] = acc;
  else
    e.out[m * e.ldo + n] = epilogue_value(static_cast<float>(acc), e, m, n);
}

// Decodes ternary row n into w[0, k); false on the invalid code 3.
bool decode_ternary_row(const uint8_t* row, int64_t k, int8_t* w) {
  for (int64_t i = 0; i < k; ++i) {
    const int code = ternary_code_at(row, i);
    if (code == kTernaryBadCode) return false;
    w[i] = static_cast<int8_t>(code - 1);
  }
  return true;
}

void decode_binary_row(const uint8_t* row, int64_t k, int8_t* w) {
  for (int64_t i = 0; i < k; ++i) w[i] = binary_bit_at(row, i) ? 1 : -1;
}

int32_t dot_i8(const int8_t* a, const int8_t* b, int64_t k) {
  int32_t acc = 0;
  for (int64_t i = 0; i < k; ++i) acc += int32_t(a[i]) * int32_t(b[i]);
  return acc;
}

float dot_f32(const float* x, const int8_t* w, int64_t k) {
  float acc = 0.0f;
  for (int64_t i = 0; i < k; ++i) acc += x[i] * static_cast<float>(w[i]);
  return acc;
}

bool ternary_gemm_i8(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  std::vector<int8_t> row(k);
  const int64_t rb = ternary_row_bytes(k);
  for (int64_t n = t.n0; n < t.n1; ++n) {
    if (!decode_ternary_row(w + n * rb, k, row.data())) return false;
    for (int64_t m = t.m0; m < t.m1; ++m) store(e, m, n, dot_i8(xq + m * k, row.data(), k));
  }
  return true;
}

bool ternary_gemm_f32(const float* x, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  std::vector<int8_t> row(k);
  const int64_t rb = ternary_row_bytes(k);
  for (int64_t n = t.n0; n < t.n1; ++n) {
    if (!decode_ternary_row(w + n * rb, k, row.data())) return false;
    for (int64_t m = t.m0; m < t.m1; ++m)
      e.out[m * e.ldo + n] = epilogue_value(dot_f32(x + m * k, row.data(), k), e, m, n);
  }
  return true;
}

void binary_gemm_i8(const int8_t* xq, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  std::vector<int8_t> row(k);
  const int64_t rb = binary_row_bytes(k);
  for (int64_t n = t.n0; n < t.n1; ++n) {
    decode_binary_row(w + n * rb, k, row.data());
    for (int64_t m = t.m0; m < t.m1; ++m) store(e, m, n, dot_i8(xq + m * k, row.data(), k));
  }
}

void binary_gemm_f32(const float* x, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  std::vector<int8_t> row(k);
  const int64_t rb = binary_row_bytes(k);
  for (int64_t n = t.n0; n < t.n1; ++n) {
    decode_binary_row(w + n * rb, k, row.data());
    for (int64_t m = t.m0; m < t.m1; ++m)
      e.out[m * e.ldo + n] = epilogue_value(dot_f32(x + m * k, row.data(), k), e, m, n);
  }
}

uint64_t load_word(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);  // little-endian x86: bit k % 64 is weight k
  return v;
}

// sum of sign products over the first k bits: agreements - disagreements.
int32_t xnor_dot(const uint8_t* a, const uint8_t* b, int64_t k) {
  int64_t differ = 0;
  const int64_t words = k / 64;
  for (int64_t i = 0; i < words; ++i) differ += __builtin_popcountll(load_word(a + 8 * i) ^ load_word(b + 8 * i));
  if (const int64_t tail = k % 64) {
    const uint64_t mask = (uint64_t(1) << tail) - 1;  // ignore the padding bits
    differ += __builtin_popcountll((load_word(a + 8 * words) ^ load_word(b + 8 * words)) & mask);
  }
  return static_cast<int32_t>(k - 2 * differ);
}

void binary_gemm_bits(const uint8_t* xbits, const uint8_t* w, int64_t k, Tile t, const Epilogue& e) {
  const int64_t rb = binary_row_bytes(k);
  for (int64_t n = t.n0; n < t.n1; ++n)
    for (int64_t m = t.m0; m < t.m1; ++m) store(e, m, n, xnor_dot(xbits + m * rb, w + n * rb, k));
}

}  // namespace

const KernelTable& scalar_kernels() {
  static const KernelTable table{
      "cpu-scalar",    quantize_rows,   binarize_rows,   ternary_gemm_i8,
      ternary_gemm_f32, binary_gemm_i8, binary_gemm_f32, binary_gemm_bits,
  };
  return table;
}

}  // namespace bitops::cpu
