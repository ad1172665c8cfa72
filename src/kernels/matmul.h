// Matrix products of quantized weights with float activations: the hot path of the engine.
//
//   y[t, r] = sum_k W[r, k] * x[t, k]      for t < n_tokens, r < w.rows
//
// W is a GGUF tensor of `rows` rows of `cols` elements (ne0 = cols, contiguous), stored as
// F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K or Q6_K blocks. x is [n_tokens, cols] f32 with row stride
// ldx (floats), y is [n_tokens, rows] f32 with row stride ldy. The implementation may quantize x
// to 8 bits internally (as llama.cpp does) for the quantized weight types.
//
// Thread-safety: pure functions; `pool` (may be nullptr = calling thread) must not be running
// another job. Work is split over output rows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/status.h"
#include "base/thread_pool.h"
#include "gguf/gguf.h"

namespace qwenmux::kernels {

struct WeightView {
  gguf::TensorType type = gguf::TensorType::kF32;
  const uint8_t* data = nullptr;  // first row
  int64_t rows = 0;               // output features
  int64_t cols = 0;               // input features (ne0)
  size_t row_bytes = 0;           // bytes per row

  // Rows [begin, begin + count) as a view (e.g. one expert of a stacked MoE tensor).
  WeightView Slice(int64_t begin, int64_t count) const {
    WeightView v = *this;
    v.data = data + static_cast<size_t>(begin) * row_bytes;
    v.rows = count;
    return v;
  }
};

// True when MatMul handles this weight type.
bool MatMulSupports(gguf::TensorType type);

// The fast path (SIMD, dynamic dispatch). Preconditions (checked by the caller when the model is
// loaded): supported type, cols a multiple of the type's block size.
void MatMul(const WeightView& w, const float* x, int64_t ldx, float* y, int64_t ldy,
            int64_t n_tokens, ThreadPool* pool);

// One of several products of the same x (MatMulMany): y [n_tokens, ldy] = x W^T.
struct MatMulOut {
  WeightView w;
  float* y = nullptr;
  int64_t ldy = 0;
};
// The products of one x with several weights (a layer's q/k/v or gate/up projections), as MatMul
// each, but x is quantized once per activation block size and all output rows are split over the
// pool in one call (one fork/join instead of one per weight). Every w.cols must be equal.
void MatMulMany(std::span<const MatMulOut> outs, const float* x, int64_t ldx, int64_t n_tokens,
                ThreadPool* pool);
// The scalar oracle: dequantize each row, dot in double-free f32 order. Slow; for tests.
void MatMulReference(const WeightView& w, const float* x, int64_t ldx, float* y, int64_t ldy,
                     int64_t n_tokens);

// Copies row `row` of W dequantized into out[cols] (embedding lookup).
void DequantizeRowTo(const WeightView& w, int64_t row, float* out);

}  // namespace qwenmux::kernels
