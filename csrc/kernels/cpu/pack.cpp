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
                               unpack_binary, validate_ternary, validate_binary,
                               quantize_ternary_weights, quantize_binary_weights};
  return table;
}

}  // namespace bitops::cpu

namespace bitops::cpu {

// transformers' BitNet packing (the 2B4T checkpoints): hf is uint8 [R, K], R = ceil(N / 4);
// bits 2i+1:2i of hf[r, k] hold the code (w + 1) of output row i * R + r. Rows [n0, n1) are
// written in the layout of layout.h directly (no int8 matrix in between). Within a block,
// byte j gathers weights j, j+32, j+64, j+96: four contiguous runs of the source row, so the
// loop over j vectorizes. Returns the first row holding code 3 within K, or -1.
int64_t pack_ternary_from_hf(const uint8_t* hf, int64_t rows_hf, int64_t k, int64_t n0, int64_t n1,
                             uint8_t* packed) {
  const int64_t rb = ternary_row_bytes(k);
  const int64_t full_blocks = k / kTernaryBlockWeights;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* src = hf + (n % rows_hf) * k;
    const int shift = 2 * static_cast<int>(n / rows_hf);
    uint8_t* dst = packed + n * rb;
    uint8_t bad = 0;
    for (int64_t b = 0; b < full_blocks; ++b) {
      const uint8_t* s = src + b * kTernaryBlockWeights;
      uint8_t* d = dst + b * kTernaryBlockBytes;
      for (int j = 0; j < 32; ++j) {
        const uint8_t c0 = (s[j] >> shift) & 3, c1 = (s[j + 32] >> shift) & 3;
        const uint8_t c2 = (s[j + 64] >> shift) & 3, c3 = (s[j + 96] >> shift) & 3;
        bad |= (c0 & (c0 >> 1)) | (c1 & (c1 >> 1)) | (c2 & (c2 >> 1)) | (c3 & (c3 >> 1));
        d[j] = static_cast<uint8_t>((c0 << 6) | (c1 << 4) | (c2 << 2) | c3);
      }
    }
    if (full_blocks * kTernaryBlockWeights < k) {  // the last, partial block: padding is code 1
      std::memset(dst + full_blocks * kTernaryBlockBytes, 0x55, kTernaryBlockBytes);
      for (int64_t i = full_blocks * kTernaryBlockWeights; i < k; ++i) {
        const uint8_t c = (src[i] >> shift) & 3;
        bad |= c & (c >> 1);
        uint8_t& byte = dst[ternary_byte_index(i)];
        const int sh = ternary_shift(i);
        byte = static_cast<uint8_t>((byte & ~(3 << sh)) | (c << sh));
      }
    }
    if (bad & 1) return n;
  }
  return -1;
}

}  // namespace bitops::cpu
