#include "quant/quality.h"

#include <cmath>
#include <random>

#include "quant/quant.h"

namespace qwenmux::quant {

std::vector<float> GaussianData(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  // Uniform in (0, 1]: 32 random bits, never 0 so log() stays finite.
  auto uniform = [&rng] { return (static_cast<double>(rng()) + 1.0) / 4294967296.0; };
  std::vector<float> out(n);
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  for (size_t i = 0; i < n; i += 2) {
    const double r = std::sqrt(-2.0 * std::log(uniform()));
    const double t = kTwoPi * uniform();
    out[i] = static_cast<float>(r * std::cos(t));
    if (i + 1 < n) out[i + 1] = static_cast<float>(r * std::sin(t));
  }
  return out;
}

Result<double> RoundTripRelativeRmse(gguf::TensorType type, const std::vector<float>& x,
                                     int64_t rows, int64_t n_per_row, ThreadPool* pool) {
  if (rows < 0 || n_per_row < 0 || static_cast<size_t>(rows * n_per_row) != x.size()) {
    return Error(StatusCode::kInvalidArgument, "quant: data size {} != {} rows x {}", x.size(),
                 rows, n_per_row);
  }
  QM_RETURN_IF_ERROR(CheckRow(type, n_per_row));
  std::vector<uint8_t> q(RowSize(type, n_per_row) * static_cast<size_t>(rows));
  std::vector<float> y(x.size());
  QM_RETURN_IF_ERROR(QuantizeTensor(type, x.data(), q.data(), rows, n_per_row, pool));
  QM_RETURN_IF_ERROR(DequantizeTensor(type, q.data(), y.data(), rows, n_per_row, pool));
  double err = 0, ref = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x[i]) - y[i];
    err += d * d;
    ref += static_cast<double>(x[i]) * x[i];
  }
  if (ref == 0) return Error(StatusCode::kInvalidArgument, "quant: all-zero input");
  return std::sqrt(err / ref);
}

}  // namespace qwenmux::quant
