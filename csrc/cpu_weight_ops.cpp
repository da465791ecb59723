// CPU glue of the training step's weight quantisation: quantize and pack a float
// weight in one pass over it (and, for grad_x through the packed kernels, its
// transpose in the same pass). The math is in kernels/cpu/weight_quantize.h.
#include <ATen/Parallel.h>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>
#include "checks.h"
#include "kernels/cpu/cpu_kernels.h"

namespace bitops::glue {
namespace {

const cpu::PackTable& P() { return cpu::active_pack_kernels(); }

// Rows go in chunks of 256: a whole block of the transposed rows for both formats
// (ternary 2 x 128 weights, binary 256 bits), so each chunk owns the bytes it writes.
constexpr int64_t kChunkRows = 256;
// Columns of a chunk transposed at a time: the transposed codes (cols x 256 bytes) stay in L1.
constexpr int64_t kTransposeCols = 64;

// Runs fn(n0, n1) over the chunks of [0, n), dynamically (a thread on a busy core takes fewer);
// one thread below ~1 MiB of weights, where waking a second costs more than it saves.
template <class F>
void for_chunks(int64_t n, int64_t k, F&& fn) {
  const int64_t chunks = (n + kChunkRows - 1) / kChunkRows;
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  if (chunks <= 1 || threads == 1 || n * k * 4 < (int64_t(1) << 20)) {
    for (int64_t c = 0; c < chunks; ++c) fn(c * kChunkRows, std::min(n, (c + 1) * kChunkRows));
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min(threads, chunks), 1, [&](int64_t, int64_t) {
    for (int64_t c = next++; c < chunks; c = next++) fn(c * kChunkRows, std::min(n, (c + 1) * kChunkRows));
  });
}

at::Tensor checked_weights(const at::Tensor& w_in) {
  check_cpu(w_in, "w");
  check_float_input(w_in, "w");
  TORCH_CHECK_VALUE(w_in.dim() == 2, "bitops: w must be 2-D [N, K], got shape ", w_in.sizes());
  check_k(w_in.size(1));
  return w_in.contiguous();
}

// Rows [n0, n1) of w as float32: a pointer into w when it is float32, else converted into buf
// (a chunk at a time, so a bfloat16 weight is never copied whole).
const float* float_rows(const at::Tensor& w, int64_t n0, int64_t n1, std::vector<float>& buf) {
  const int64_t k = w.size(1);
  if (w.scalar_type() == at::kFloat) return w.data_ptr<float>() + n0 * k;
  buf.resize((n1 - n0) * k);
  if (w.scalar_type() == at::kBFloat16) {
    const auto* src = w.data_ptr<c10::BFloat16>() + n0 * k;
    for (int64_t i = 0; i < (n1 - n0) * k; ++i) buf[i] = static_cast<float>(src[i]);
  } else {
    const auto* src = w.data_ptr<c10::Half>() + n0 * k;
    for (int64_t i = 0; i < (n1 - n0) * k; ++i) buf[i] = static_cast<float>(src[i]);
  }
  return buf.data();
}

// Quantises w with quantize(rows, k, 0, count, codes) a chunk of rows at a time, packs rows [n0, n1) into packed and, if
// packed_t is defined, the same weights as columns [n0, n1) of packed W^T.
template <class Quantize>
std::vector<at::Tensor> quantize_pack(const at::Tensor& w, bool ternary, bool transposed, Quantize&& quantize) {
  const int64_t n = w.size(0), k = w.size(1);
  if (transposed) {
    TORCH_CHECK_VALUE(n >= 1 && n <= kMaxK, "bitops: w has ", n, " rows; its transpose reduces over them, so k=", n,
                      " must be in [1, ", kMaxK, "]");
  }
  auto row_bytes = [&](int64_t len) { return ternary ? ternary_row_bytes(len) : binary_row_bytes(len); };
  auto pack = ternary ? P().pack_ternary : P().pack_binary;
  at::Tensor packed = at::empty({n, row_bytes(k)}, w.options().dtype(at::kByte));
  at::Tensor packed_t = transposed ? at::empty({k, row_bytes(n)}, w.options().dtype(at::kByte)) : at::Tensor();
  uint8_t* dst = packed.data_ptr<uint8_t>();
  uint8_t* dst_t = transposed ? packed_t.data_ptr<uint8_t>() : nullptr;
  const int64_t rb = row_bytes(k), rb_t = transposed ? row_bytes(n) : 0;
  // byte offset of column n0 in a transposed row: n0 is a multiple of 256
  const int64_t bits_per_weight = ternary ? 2 : 1;
  for_chunks(n, k, [&](int64_t n0, int64_t n1) {
    const int64_t rows = n1 - n0;
    std::vector<float> converted;
    std::vector<int8_t> codes(rows * k);
    quantize(float_rows(w, n0, n1, converted), k, 0, rows, codes.data());
    pack(codes.data(), k, 0, rows, dst + n0 * rb);  // values are in the format: never fails
    if (!transposed) return;
    // kTransposeCols columns at a time: transposed codes, packed as kc rows of `rows` weights in
    // one call, then each packed piece copied to its row of W^T
    std::vector<int8_t> cols(kTransposeCols * rows);
    const int64_t piece = row_bytes(rows);
    std::vector<uint8_t> pieces(kTransposeCols * piece);
    uint8_t* out = dst_t + n0 * bits_per_weight / 8;
    for (int64_t k0 = 0; k0 < k; k0 += kTransposeCols) {
      const int64_t kc = std::min(kTransposeCols, k - k0);
      cpu::transpose_bytes(codes.data() + k0, k, rows, kc, cols.data(), rows);
      pack(cols.data(), rows, 0, kc, pieces.data());
      for (int64_t j = 0; j < kc; ++j) std::memcpy(out + (k0 + j) * rb_t, pieces.data() + j * piece, piece);
    }
  });
  if (transposed) return {packed, packed_t};
  return {packed};
}

std::vector<at::Tensor> quantize_pack_ternary(const at::Tensor& w_in, const at::Tensor& divisor, bool transposed) {
  auto w = checked_weights(w_in);
  check_cpu(divisor, "divisor");
  check_dtype(divisor, at::kFloat, "divisor");
  TORCH_CHECK_VALUE(divisor.numel() == 1, "bitops: divisor must hold one value, got shape ", divisor.sizes());
  const float d = divisor.item<float>();
  return quantize_pack(w, true, transposed, [&](const float* src, int64_t k, int64_t n0, int64_t n1, int8_t* codes) {
    P().quantize_ternary_weights(src, k, d, n0, n1, codes);
  });
}

std::vector<at::Tensor> quantize_pack_binary(const at::Tensor& w_in, bool transposed) {
  auto w = checked_weights(w_in);
  return quantize_pack(w, false, transposed, [&](const float* src, int64_t k, int64_t n0, int64_t n1, int8_t* codes) {
    P().quantize_binary_weights(src, k, n0, n1, codes);
  });
}

// scale[n] * Wq[n, k] as float32 [N, K]: the weight grad_x multiplies (exact backward).
// Each row is unpacked into a small buffer and scaled on its way out: one pass, no int8 matrix.
at::Tensor dequantize(const at::Tensor& packed_in, int64_t k, const at::Tensor& scale_in,
                      std::optional<at::ScalarType> dtype, bool ternary) {
  const at::ScalarType out_type = dtype.value_or(at::kFloat);
  TORCH_CHECK_TYPE(out_type == at::kFloat || out_type == at::kBFloat16,
                   "bitops: dequantize writes float32 or bfloat16, got ", dtype_name(out_type));
  check_k(k);
  check_cpu(packed_in, "packed");
  check_cpu(scale_in, "scale");
  check_packed(packed_in, k, ternary ? ternary_row_bytes(k) : binary_row_bytes(k), "packed");
  auto packed = packed_in.contiguous();
  const int64_t n = packed.size(0), rb = packed.size(1);
  const int64_t scale_stride = check_scale(scale_in, n, "scale");
  auto scale = scale_in.contiguous();
  auto out = at::empty({n, k}, packed.options().dtype(out_type));
  const uint8_t* src = packed.data_ptr<uint8_t>();
  const float* sc = scale.data_ptr<float>();
  std::atomic<int64_t> bad{-1};
  at::parallel_for(0, n, std::max<int64_t>(1, (int64_t(1) << 18) / k), [&](int64_t n0, int64_t n1) {
    std::vector<int8_t> row(k);
    for (int64_t r = n0; r < n1; ++r) {
      if (ternary) {
        if (P().unpack_ternary(src + r * rb, k, 0, 1, row.data()) >= 0) bad = r;
      } else {
        P().unpack_binary(src + r * rb, k, 0, 1, row.data());
      }
      const float g = sc[r * scale_stride];
      if (out_type == at::kFloat) {
        float* o = out.data_ptr<float>() + r * k;
        for (int64_t i = 0; i < k; ++i) o[i] = float(row[i]) * g;
      } else {  // rounded once, as .to(torch.bfloat16) of the float32 value
        c10::BFloat16* o = out.data_ptr<c10::BFloat16>() + r * k;
        for (int64_t i = 0; i < k; ++i) o[i] = c10::BFloat16(float(row[i]) * g);
      }
    }
  });
  TORCH_CHECK_VALUE(bad.load() < 0, "bitops: packed is corrupt: row ", bad.load(), " holds the invalid 2-bit code 3");
  return out;
}

at::Tensor dequantize_ternary(const at::Tensor& packed, int64_t k, const at::Tensor& scale,
                              std::optional<at::ScalarType> dtype) {
  return dequantize(packed, k, scale, dtype, true);
}

at::Tensor dequantize_binary(const at::Tensor& packed, int64_t k, const at::Tensor& scale,
                             std::optional<at::ScalarType> dtype) {
  return dequantize(packed, k, scale, dtype, false);
}

}  // namespace

TORCH_LIBRARY_IMPL(bitops, CPU, m) {
  m.impl("quantize_pack_ternary", quantize_pack_ternary);
  m.impl("quantize_pack_binary", quantize_pack_binary);
  m.impl("dequantize_ternary", dequantize_ternary);
  m.impl("dequantize_binary", dequantize_binary);
}

}  // namespace bitops::glue
