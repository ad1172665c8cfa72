// Quantization quality and throughput on N(0,1) rows of 4096; prints one JSON object.
//   ./build/bench/quant_bench [--rows N] [--threads T]
// rel_rmse = RMSE / RMS(input); reference = the reference quantizer's figure (<= 1.02x is the
// bar). MB/s counts float32 input bytes for quantize and float32 output bytes for dequantize.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quant/quality.h"
#include "quant/quant.h"

using qwenmux::ThreadPool;
using qwenmux::gguf::TensorType;
namespace quant = qwenmux::quant;

namespace {

template <typename Fn>
double BestSeconds(int reps, Fn&& fn) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 256;
  size_t threads = ThreadPool::DefaultThreadCount();
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--rows") == 0) rows = std::atoll(argv[i + 1]);
    if (std::strcmp(argv[i], "--threads") == 0) threads = std::strtoull(argv[i + 1], nullptr, 10);
  }
  constexpr int64_t kCols = 4096;
  const auto x = quant::GaussianData(static_cast<size_t>(rows * kCols), 1234);
  ThreadPool pool(threads);
  const double mb = static_cast<double>(x.size() * sizeof(float)) / 1e6;

  struct Case {
    TensorType type;
    double reference;  // < 0: no reference figure
  };
  const Case cases[] = {{TensorType::kF16, -1},      {TensorType::kBF16, -1},
                        {TensorType::kQ8_0, 0.00536}, {TensorType::kQ4_0, 0.0859},
                        {TensorType::kQ4_K, 0.0714},  {TensorType::kQ5_K, 0.0361},
                        {TensorType::kQ6_K, 0.0177}};
  nlohmann::json out;
  out["rows"] = rows;
  out["cols"] = kCols;
  out["threads"] = pool.size();
  bool all_ok = true;
  for (const Case& c : cases) {
    const size_t rb = quant::RowSize(c.type, kCols);
    std::vector<uint8_t> q(rb * static_cast<size_t>(rows));
    std::vector<float> y(x.size());
    auto rel = quant::RoundTripRelativeRmse(c.type, x, rows, kCols, &pool);
    if (!rel.ok()) {
      std::fprintf(stderr, "%s\n", rel.status().ToString().c_str());
      return 1;
    }
    const int reps = 3;
    auto run_q = [&](ThreadPool* p) {
      return BestSeconds(reps, [&] {
        if (!quant::QuantizeTensor(c.type, x.data(), q.data(), rows, kCols, p).ok()) std::abort();
      });
    };
    auto run_d = [&](ThreadPool* p) {
      return BestSeconds(reps, [&] {
        if (!quant::DequantizeTensor(c.type, q.data(), y.data(), rows, kCols, p).ok()) std::abort();
      });
    };
    nlohmann::json j;
    j["rel_rmse"] = *rel;
    j["bytes_per_weight"] = static_cast<double>(rb) / kCols;
    if (c.reference > 0) {
      j["reference_rel_rmse"] = c.reference;
      j["ratio_to_reference"] = *rel / c.reference;
      j["within_1_02x"] = *rel <= 1.02 * c.reference;
      all_ok = all_ok && *rel <= 1.02 * c.reference;
    }
    j["quantize_mb_s_1t"] = mb / run_q(nullptr);
    j["quantize_mb_s_mt"] = mb / run_q(&pool);
    j["dequantize_mb_s_1t"] = mb / run_d(nullptr);
    j["dequantize_mb_s_mt"] = mb / run_d(&pool);
    out["types"][qwenmux::gguf::TensorTypeName(c.type)] = j;
  }
  out["all_within_1_02x"] = all_ok;
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
