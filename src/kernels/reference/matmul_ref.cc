// Scalar oracle for MatMul: dequantize each weight row with quant::DequantizeRow (bit-exact with
// the reference GGUF dequantizer), then a plain f32 dot product in index order.
#include <vector>

#include "kernels/matmul.h"
#include "quant/quant.h"

namespace qwenmux::kernels {

bool MatMulSupports(gguf::TensorType type) {
  switch (type) {
    case gguf::TensorType::kF32:
    case gguf::TensorType::kF16:
    case gguf::TensorType::kBF16:
    case gguf::TensorType::kQ8_0:
    case gguf::TensorType::kQ4_0:
    case gguf::TensorType::kQ4_K:
    case gguf::TensorType::kQ5_K:
    case gguf::TensorType::kQ6_K:
      return true;
    default:
      return false;
  }
}

void DequantizeRowTo(const WeightView& w, int64_t row, float* out) {
  const uint8_t* src = w.data + static_cast<size_t>(row) * w.row_bytes;
  // Preconditions are checked when the model is loaded; a failure here means a caller bug.
  // Leave a defined result (zeros) rather than garbage.
  if (!quant::DequantizeRow(w.type, src, out, w.cols).ok()) {
    for (int64_t i = 0; i < w.cols; ++i) out[i] = 0.0f;
  }
}

void MatMulReference(const WeightView& w, const float* x, int64_t ldx, float* y, int64_t ldy,
                     int64_t n_tokens) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    DequantizeRowTo(w, r, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * ldx;
      float sum = 0.0f;
      for (int64_t k = 0; k < w.cols; ++k) sum += row[static_cast<size_t>(k)] * xt[k];
      y[t * ldy + r] = sum;
    }
  }
}

}  // namespace qwenmux::kernels
