// Memory estimator: the estimate of a model matches the RSS growth of really loading it and
// serving its full context (load, touch every weight page, prefill every position) within 10%,
// on the tiny dense and MoE models and on a synthesized model with real Qwen3-0.6B layer shapes.
#include <malloc.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/sysinfo.h"
#include "common/testdata.h"
#include "engine/engine.h"
#include "model/shapes.h"
#include "orchestrator/manager/memory_estimate.h"
#include "orchestrator/manager/model_manager.h"
#include "runtime/kv_cache.h"
#include "quant/synth_model.h"
#include "tokenizer/tokenizer.h"

namespace qwenmux::orchestrator {
namespace {

using qwenmux::testing::ModelPath;

engine::LoadOptions SmallContext() {
  engine::LoadOptions o;
  o.n_ctx = 512;
  o.n_seq = 1;
  o.n_batch = 64;
  o.n_threads = 2;
  return o;
}

struct Measured {
  MemoryEstimate estimate;
  int64_t growth = 0;
};

Measured LoadAndMeasure(const std::string& path, const engine::LoadOptions& o) {
  Measured m;
  auto est = EstimateModelMemory(path, o);
  EXPECT_TRUE(est.ok()) << est.status().ToString();
  if (!est.ok()) return m;
  m.estimate = *est;
  tokenizer::Tokenizer::ClearSharedCache();  // the estimate counts the model's own tokenizer
  malloc_trim(0);  // hand freed heap back so that reuse of it does not hide growth
  const uint64_t before = CurrentRssBytes();
  {
    auto model = engine::Model::Load(path, o);
    EXPECT_TRUE(model.ok()) << model.status().ToString();
    if (!model.ok()) return m;
    (void)TouchWeights((*model)->file());
    // Fill the whole context: every KV position written, full n_batch chunks of scratch.
    std::vector<int32_t> prompt((*model)->options().n_ctx);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 7919) % 150000);
    std::vector<float> logits;
    Status s = (*model)->Prefill(0, prompt, &logits);
    EXPECT_TRUE(s.ok()) << s.ToString();
    m.growth = static_cast<int64_t>(CurrentRssBytes()) - static_cast<int64_t>(before);
  }
  return m;
}

// Sanitizer runtimes add shadow memory and quarantines to the RSS, so the comparison with the
// estimate only means something in uninstrumented builds.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kRssIsMeaningful = false;
#else
constexpr bool kRssIsMeaningful = true;
#endif
#define QM_SKIP_UNLESS_RSS_MEANINGFUL() \
  if (!kRssIsMeaningful) GTEST_SKIP() << "RSS is not comparable under a sanitizer"

void ExpectWithin10Percent(const Measured& m, const std::string& what) {
  const double est = static_cast<double>(m.estimate.total());
  const double got = static_cast<double>(m.growth);
  ASSERT_GT(got, 0) << what;
  std::printf("%s: estimate %s, RSS growth %s, ratio %.3f\n", what.c_str(), m.estimate.ToString().c_str(),
              FormatBytes(m.growth).c_str(), est / got);
  EXPECT_NEAR(est / got, 1.0, 0.10) << what << ": estimate " << m.estimate.ToString() << ", measured RSS growth "
                                    << FormatBytes(m.growth);
}

TEST(ManagerEstimate, TinyDenseWithin10Percent) {
  QM_SKIP_UNLESS_RSS_MEANINGFUL();
  ExpectWithin10Percent(LoadAndMeasure(ModelPath("tiny-dense.q8_0.gguf"), SmallContext()), "tiny-dense");
}

TEST(ManagerEstimate, TinyMoeWithin10Percent) {
  QM_SKIP_UNLESS_RSS_MEANINGFUL();
  ExpectWithin10Percent(LoadAndMeasure(ModelPath("tiny-moe.q4_k_m.gguf"), SmallContext()), "tiny-moe");
}

TEST(ManagerEstimate, SynthQwen3_0_6bTwoLayersWithin10Percent) {
  QM_SKIP_UNLESS_RSS_MEANINGFUL();
  const std::string path = ::testing::TempDir() + "/mgr-est-0.6b-2l.gguf";
  auto shape = model::FindShape("qwen3-0.6b");
  ASSERT_TRUE(shape.ok());
  quant::SynthOptions so;
  so.ftype = quant::FileType::kQ8_0;
  so.vocab_path = ModelPath("qwen3-vocab.gguf");
  so.n_layer = 2;
  so.threads = 2;
  ASSERT_TRUE(quant::SynthesizeModel(**shape, path, so).ok());
  auto o = SmallContext();
  o.n_ctx = 1024;
  ExpectWithin10Percent(LoadAndMeasure(path, o), "synth qwen3-0.6b x2 layers");
  std::filesystem::remove(path);
}

TEST(ManagerEstimate, PartsFollowTheFormulas) {
  auto file = gguf::File::Open(ModelPath("tiny-dense.q8_0.gguf"));
  ASSERT_TRUE(file.ok());
  auto config = model::ReadConfig(*file);
  ASSERT_TRUE(config.ok());
  auto o = SmallContext();
  const MemoryEstimate a = EstimateMemory(*file, *config, o);
  // KV: layers x KV heads x head_dim x 2 (K, V) x context x 2 bytes x sequences.
  EXPECT_EQ(a.kv_cache, uint64_t{config->n_layer} * config->n_head_kv * config->head_dim * 2 * 512 * 2);
  EXPECT_EQ(a.kv_cache, runtime::KvCache::BytesFor(*config, 512, 1));
  EXPECT_GE(a.weights, model::WeightBytes(*file));
  o.n_seq = 4;
  o.n_ctx = 1024;
  const MemoryEstimate b = EstimateMemory(*file, *config, o);
  EXPECT_EQ(b.kv_cache, 8 * a.kv_cache);
  EXPECT_EQ(b.weights, a.weights);
  EXPECT_GT(b.compute, a.compute);  // more logits rows and longer score rows
  // The context is clipped to the training context, as Model::Load does.
  o.n_ctx = 1 << 30;
  EXPECT_EQ(EstimateMemory(*file, *config, o).kv_cache, runtime::KvCache::BytesFor(*config, config->n_ctx_train, 4));
}

TEST(ManagerEstimate, BadFilesAreErrors) {
  auto r = EstimateModelMemory("/nonexistent/model.gguf", SmallContext());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/nonexistent/model.gguf"), std::string::npos) << r.status().message();
  // A vocab-only file has no model hyper-parameters.
  EXPECT_FALSE(EstimateModelMemory(ModelPath("qwen3-vocab.gguf"), SmallContext()).ok());
}

TEST(ManagerEstimate, SystemMemoryParsers) {
  EXPECT_EQ(ParseMemAvailable("MemTotal:  100 kB\nMemFree: 5 kB\nMemAvailable:    2048 kB\n"), uint64_t{2048} * 1024);
  EXPECT_EQ(ParseMemAvailable("MemTotal: 100 kB\n"), std::nullopt);
  EXPECT_EQ(ParseMemAvailable("MemAvailable: x kB\n"), std::nullopt);
  EXPECT_EQ(ParseCgroupBytes("max\n"), std::nullopt);
  EXPECT_EQ(ParseCgroupBytes("1073741824\n"), uint64_t{1} << 30);
  EXPECT_EQ(ParseCgroupBytes(""), std::nullopt);
  EXPECT_EQ(ParseCgroupBytes("12abc"), std::nullopt);
  EXPECT_GT(ReadSystemAvailableBytes(), 0u);
}

}  // namespace
}  // namespace qwenmux::orchestrator
