// Packing, unpacking and validation of the formats in layout.h: the portable
// versions, one weight at a time (the fallback, and the oracle of avx2_pack.cpp).
#include <cstring>
#include "cpu_kernels.h"

namespace bitops::cpu {

int64_t pack_ternary(const int8_t* wq, int64_t k, int64_t n0, int64_t n1, uint8_t* packed) {
  const int64_t rb = ternary_row_bytes(k);
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* src = wq + n * k;
    uint8_t* dst = packed + n * rb;
    std::memset(dst, 0x55, rb);  // 0b01010101: four zero weights (code 1)
    for (int64_t i = 0; i < k; ++i) {
      const int v = src[i];
      if (v < -1 || v > 1) return n * k + i;
      const int shift = ternary_shift(i);
      uint8_t& byte = dst[ternary_byte_index(i)];
      byte = static_cast<uint8_t>((byte & ~(3 << shift)) | ((v + 1) << shift));
    }
  }
  return -1;
}

int64_t unpack_ternary(const uint8_t* packed, int64_t k, int64_t n0, int64_t n1, int8_t* wq) {
  const int64_t rb = ternary_row_bytes(k);
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = packed + n * rb;
    for (int64_t i = 0; i < k; ++i) {
      const int code = ternary_code_at(row, i);
      if (code == kTernaryBadCode) return n;
      wq[n * k + i] = static_cast<int8_t>(code - 1);
    }
  }
  return -1;
}

int64_t pack_binary(const int8_t* wq, int64_t k, int64_t n0, int64_t n1, uint8_t* packed) {
  const int64_t rb = binary_row_bytes(k);
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* src = wq + n * k;
    uint8_t* dst = packed + n * rb;
    std::memset(dst, 0, rb);
    for (int64_t i = 0; i < k; ++i) {
      if (src[i] != 1 && src[i] != -1) return n * k + i;
      if (src[i] > 0) dst[i >> 3] |= static_cast<uint8_t>(1u << (i & 7));
    }
  }
  return -1;
}

void unpack_binary(const uint8_t* packed, int64_t k, int64_t n0, int64_t n1, int8_t* wq) {
  const int64_t rb = binary_row_bytes(k);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t i = 0; i < k; ++i) wq[n * k + i] = binary_bit_at(packed + n * rb, i) ? 1 : -1;
}

int64_t validate_ternary(const uint8_t* packed, int64_t k, int64_t n0, int64_t n1) {
  const int64_t rb = ternary_row_bytes(k);
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = packed + n * rb;
    for (int64_t i = 0; i < rb * 4; ++i) {
      const int code = ternary_code_at(row, i);
      if (i < k ? code == kTernaryBadCode : code != kTernaryZeroCode) return n;
    }
  }
  return -1;
}

int64_t validate_binary(const uint8_t* packed, int64_t k, int64_t n0, int64_t n1) {
  const int64_t rb = binary_row_bytes(k);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t i = k; i < rb * 8; ++i)
      if (binary_bit_at(packed + n * rb, i)) return n;
  return -1;
}

const PackTable& scalar_pack_kernels() {
  static const PackTable table{"cpu-scalar", pack_ternary,     unpack_ternary, pack_binary,
                               unpack_binary, validate_ternary, validate_binary};
  return table;
}

}  // namespace bitops::cpu
