// Helpers of the CUDA model tests: synthesized Qwen3 shapes (cached under the test temp dir)
// and the GPU-vs-CPU logit comparison with its near-tie-aware top-1 count.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>

#include "base/status.h"
#include "common/testdata.h"
#include "model/shapes.h"
#include "quant/synth_model.h"

namespace qwenmux::runtime {

// A synthesized model of `shape` ("qwen3-0.6b"), file type `ftype` ("q8_0") and `layers` layers
// (0: all), made once per test run.
inline std::string SynthModelFile(const char* shape_name, const char* ftype, uint32_t layers) {
  const std::string dir = ::testing::TempDir() + "/qwenmux-cuda-synth";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/" + shape_name + "-" + ftype + "-l" + std::to_string(layers) + ".gguf";
  if (std::filesystem::exists(path)) return path;
  auto shape = model::FindShape(shape_name);
  EXPECT_TRUE(shape.ok());
  quant::SynthOptions o;
  auto ft = quant::ParseFileType(ftype);
  EXPECT_TRUE(ft.ok());
  o.ftype = *ft;
  o.vocab_path = qwenmux::testing::ModelPath("qwen3-vocab.gguf");
  o.n_layer = layers;
  o.seed = 7;
  const Status s = quant::SynthesizeModel(**shape, path, o);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return path;
}

// Logits of the GPU against the CPU's. Random-weight models have near-ties at the top, so next to
// the raw top-1 agreement it counts the rows where the GPU's pick is clearly wrong: its CPU logit
// is below the CPU's best by more than 4x that row's RMS logit difference (a gap the two
// backends' rounding cannot explain).
struct Compare {
  int64_t rows = 0, top1 = 0, clear_misses = 0;
  double sum_sq_diff = 0, sum_sq_ref = 0, max_abs = 0;
  void Add(const float* gpu, const float* cpu, int64_t n) {
    int64_t ag = 0, ac = 0;
    double row_sq = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (gpu[i] > gpu[ag]) ag = i;
      if (cpu[i] > cpu[ac]) ac = i;
      const double d = gpu[i] - cpu[i];
      row_sq += d * d;
      sum_sq_ref += static_cast<double>(cpu[i]) * cpu[i];
      max_abs = std::max(max_abs, std::fabs(d));
    }
    sum_sq_diff += row_sq;
    ++rows;
    top1 += ag == ac;
    clear_misses += cpu[ac] - cpu[ag] > 4 * std::sqrt(row_sq / static_cast<double>(n));
  }
  double rel_rms() const { return std::sqrt(sum_sq_diff / std::max(sum_sq_ref, 1e-30)); }
};

}  // namespace qwenmux::runtime
