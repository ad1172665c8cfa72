// The shared tiny models on the GPU (engine::Model with device cuda) against the transformers
// references, with the same bars as tests/engine/golden_test.cc on the CPU. Skips without a CUDA
// device or when the device call did not carry the model (64 MiB a call: one tiny model at a time).
#include <filesystem>
#include <iostream>

#include "base/mapped_file.h"
#include "common/testdata.h"
#include "cuda/cuda_test_util.h"
#include "engine/refcheck.h"

namespace qwenmux::engine {
namespace {

struct GoldenCase {
  const char* name;
  const char* model;
  const char* ref;
  bool moe;
  int32_t n_batch;
};

class CudaGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(CudaGolden, MeetsTheBars) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  const GoldenCase& c = GetParam();
  const std::string path = qwenmux::testing::ModelPath(c.model);
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "test model " << c.model << " not here";
  LoadOptions lo;
  lo.n_ctx = 512;
  lo.n_batch = c.n_batch;
  lo.n_threads = 2;
  lo.device = runtime::DeviceChoice::kCuda;
  auto model = Model::Load(path, lo);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto text = ReadFileToString(qwenmux::testing::RefPath(c.ref));
  ASSERT_TRUE(text.ok());
  const auto ref = nlohmann::json::parse(*text);
  auto r = RunRefCheck(**model, ref, RefCheckOptions{});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::cout << c.name << " (cuda): " << r->ToJson().dump() << "\n";
  EXPECT_GE(r->top1, 0.98);
  EXPECT_LE(r->probe_rms, c.moe ? 0.35 : 0.12);
  EXPECT_GE(r->greedy_match, 90);
  if (!c.moe) {
    EXPECT_GE(r->embedding_min_cos, 0.999);
    EXPECT_LE(r->rerank_max_diff, 0.01);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Refs, CudaGolden,
    ::testing::Values(GoldenCase{"dense", "tiny-dense.q8_0.gguf", "tiny-dense.hf-q8_0.json", false, 512},
                      GoldenCase{"dense_chunked", "tiny-dense.q8_0.gguf", "tiny-dense.hf-q8_0.json", false, 37},
                      GoldenCase{"moe", "tiny-moe.q4_k_m.gguf", "tiny-moe.hf-q4_k_m.json", true, 512}),
    [](const ::testing::TestParamInfo<GoldenCase>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace qwenmux::engine
