// Quantization quality measurement shared by the tests and bench/quant_bench.cc.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "base/thread_pool.h"
#include "gguf/gguf.h"

namespace qwenmux::quant {

// n samples of N(0, 1) from std::mt19937(seed) and Box-Muller written here, so the data do not
// depend on the standard library's distribution implementation.
std::vector<float> GaussianData(size_t n, uint32_t seed);

// Relative RMSE of a quantize -> dequantize round trip: RMSE(x - x') / RMS(x), accumulated in
// double over rows * n_per_row values.
Result<double> RoundTripRelativeRmse(gguf::TensorType type, const std::vector<float>& x,
                                     int64_t rows, int64_t n_per_row, ThreadPool* pool);

}  // namespace qwenmux::quant
