// Golden parity of the engine against the transformers references, with the bars of
// ../shared/testdata/README.md, on the single-sequence path, with the prompt split in chunks, and
// with two sequences sharing each batch.
#include <gtest/gtest.h>

#include "base/mapped_file.h"
#include "common/testdata.h"
#include "engine/refcheck.h"

namespace qwenmux::engine {
namespace {

using qwenmux::testing::ModelPath;
using qwenmux::testing::RefPath;

struct Case {
  const char* name;
  const char* model;
  const char* ref;
  bool moe;
  int32_t n_batch;
  bool pair;
};

class Golden : public ::testing::TestWithParam<Case> {};

TEST_P(Golden, MeetsTheBars) {
  const Case& c = GetParam();
  LoadOptions lo;
  lo.n_ctx = 512;
  lo.n_seq = c.pair ? 2 : 1;
  lo.n_batch = c.n_batch;
  lo.n_threads = 2;
  auto model = Model::Load(ModelPath(c.model), lo);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto text = ReadFileToString(RefPath(c.ref));
  ASSERT_TRUE(text.ok());
  const auto ref = nlohmann::json::parse(*text);
  RefCheckOptions opt;
  opt.pair = c.pair;
  auto r = RunRefCheck(**model, ref, opt);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  RecordProperty("result", r->ToJson().dump());
  std::cout << c.name << ": " << r->ToJson().dump() << "\n";
  EXPECT_EQ(r->positions, 446);
  EXPECT_GE(r->top1, 0.98);
  EXPECT_LE(r->probe_rms, c.moe ? 0.35 : 0.12);
  EXPECT_GE(r->greedy_match, 90);
  EXPECT_EQ(r->greedy_total, 96);
  if (!c.moe) {
    ASSERT_EQ(r->embeddings, 3);
    EXPECT_GE(r->embedding_min_cos, 0.999);
    ASSERT_EQ(r->reranks, 2);
    EXPECT_LE(r->rerank_max_diff, 0.01);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Refs, Golden,
    ::testing::Values(Case{"dense", "tiny-dense.q8_0.gguf", "tiny-dense.hf-q8_0.json", false, 512, false},
                      Case{"dense_chunked", "tiny-dense.q8_0.gguf", "tiny-dense.hf-q8_0.json", false, 37, false},
                      Case{"dense_pair", "tiny-dense.q8_0.gguf", "tiny-dense.hf-q8_0.json", false, 64, true},
                      Case{"moe", "tiny-moe.q4_k_m.gguf", "tiny-moe.hf-q4_k_m.json", true, 512, false},
                      Case{"moe_chunked", "tiny-moe.q4_k_m.gguf", "tiny-moe.hf-q4_k_m.json", true, 37, false},
                      Case{"moe_pair", "tiny-moe.q4_k_m.gguf", "tiny-moe.hf-q4_k_m.json", true, 64, true}),
    [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace qwenmux::engine
