// The RAG call's model set (rag/model_set.h): which stages need a model, load options merged per
// file, binding loaded models into RagModels, and errors that name the stage; RagStageRefs and
// ResolveRagModelRef (the pieces the server resolves request model names with).
#include <gtest/gtest.h>

#include "orchestrator/temp_dir.h"
#include "rag/model_set.h"
#include "rag/models.h"
#include "rag_test_util.h"

namespace qwenmux::rag {
namespace {

const std::map<std::string, std::string> kAll = {
    {"query_understanding", "/m/fast.gguf"}, {"embedding", "/m/emb.gguf"},        {"retrieval_ranking", "/m/rer.gguf"},
    {"context_synthesis", "/m/gen.gguf"},    {"response_generation", "/m/gen.gguf"}, {"quality_scoring", "/m/fast.gguf"}};

TEST(RagModelSet, NeededStagesAndLoadPlan) {
  EXPECT_EQ(NeededRagStages({}), (std::vector<std::string>{"embedding", "response_generation", "query_understanding",
                                                           "retrieval_ranking", "quality_scoring"}));
  EXPECT_EQ(NeededRagStages({.rewrite = false, .rerank = false, .score = false}),
            (std::vector<std::string>{"embedding", "response_generation"}));

  auto plan = RagLoadPlan(kAll, {}, 2048, 3);
  ASSERT_EQ(plan.size(), 4u);  // gen, fast (query + scoring), emb, rer
  EXPECT_EQ(plan["/m/gen.gguf"].n_ctx, 2048);
  EXPECT_EQ(plan["/m/fast.gguf"].n_ctx, 2048);
  EXPECT_EQ(plan["/m/emb.gguf"].n_ctx, 512);
  EXPECT_EQ(plan["/m/rer.gguf"].n_ctx, 1024);
  EXPECT_EQ(plan["/m/rer.gguf"].n_seq, 4);
  for (const auto& [f, o] : plan) EXPECT_EQ(o.n_threads, 3u) << f;
  // Unused stages load nothing.
  EXPECT_EQ(RagLoadPlan(kAll, {.rewrite = false, .rerank = false, .score = false}, 2048, 0).size(), 2u);

  // One file in every stage: the largest context and sequence count of its uses.
  std::map<std::string, std::string> one;
  for (const auto& [stage, f] : kAll) one[stage] = "/m/one.gguf";
  auto merged = RagLoadPlan(one, {}, 512, 0);
  ASSERT_EQ(merged.size(), 1u);
  EXPECT_EQ(merged["/m/one.gguf"].n_ctx, 1024);
  EXPECT_EQ(merged["/m/one.gguf"].n_seq, 4);
}

TEST(RagModelSet, BindCallsTheGetterPerStageAndNamesFailures) {
  engine::Model& tiny = qwenmux::testing::TinyModel();
  std::map<std::string, int> asked;
  auto get = [&](const std::string& f) -> Result<engine::Model*> {
    ++asked[f];
    return &tiny;
  };
  RagModelSet set;
  ASSERT_TRUE(BindRagModels(kAll, {.rewrite = true, .rerank = false, .score = true}, 16, get, &set).ok());
  EXPECT_EQ(set.models.generator, &tiny);
  EXPECT_EQ(set.models.query, &tiny);
  EXPECT_EQ(set.models.scorer, &tiny);
  EXPECT_EQ(set.models.reranker, nullptr);  // stage off
  ASSERT_NE(set.models.embedder, nullptr);
  EXPECT_EQ(set.models.embedder, &*set.embedder);
  EXPECT_EQ(set.embedder->dim(), 16);
  EXPECT_FALSE(asked.count("/m/rer.gguf"));
  EXPECT_EQ(asked["/m/fast.gguf"], 2);  // query and scoring
  EXPECT_EQ(set.files.at("embedding"), "/m/emb.gguf");

  auto no_emb = kAll;
  no_emb.erase("embedding");
  Status s = BindRagModels(no_emb, {}, 0, get, &set);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("embedding"), std::string::npos) << s.ToString();

  Status failing = BindRagModels(kAll, {}, 0, [&](const std::string& f) -> Result<engine::Model*> {
    if (f == "/m/rer.gguf") return Error(StatusCode::kResourceExhausted, "cannot fit");
    return &tiny;
  }, &set);
  ASSERT_FALSE(failing.ok());
  EXPECT_EQ(failing.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(failing.message().find("retrieval_ranking"), std::string::npos) << failing.ToString();

  EXPECT_FALSE(BindRagModels(kAll, {}, 1 << 20, get, &set).ok());  // dimension above the model's
}

TEST(RagModelSet, StageRefsAndOneReference) {
  qwenmux::testing::TempDir dir;
  auto cfg = orchestrator::ParseConfig(R"(
models:
  - name: gen
    file: /models/gen.gguf
    aliases: [answerer]
pipelines:
  rag:
    response_generation: gen
)", "test.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto refs = RagStageRefs(&*cfg);
  ASSERT_TRUE(refs.ok());
  EXPECT_EQ(refs->at("response_generation"), "gen");
  EXPECT_EQ(refs->at("embedding"), DefaultRagAssignments().at("embedding"));
  EXPECT_EQ(RagStageRefs(nullptr).value(), DefaultRagAssignments());
  EXPECT_EQ(ResolveRagModelRef(&*cfg, dir.path(), "answerer", "response_generation").value(), "/models/gen.gguf");
  auto unknown = ResolveRagModelRef(&*cfg, dir.path(), "no-such-model", "embedding");
  ASSERT_FALSE(unknown.ok());
  auto not_pulled = ResolveRagModelRef(nullptr, dir.path(), "qwen3-embedding:0.6b", "embedding");
  ASSERT_FALSE(not_pulled.ok());
  EXPECT_NE(not_pulled.status().message().find("stage embedding"), std::string::npos) << not_pulled.status().ToString();
}

// A stage naming a backend's model ("NAME/MODEL", issue 18) resolves to that name (BindRagModels
// runs it on the backend, tests/rag/rag_backend_test.cc), not to a catalog lookup; a slash name
// that is no configured backend's is looked up as before and fails there, never as a backend.
TEST(RagModelSet, BackendModelsResolveToTheirName) {
  qwenmux::testing::TempDir dir;
  auto cfg = orchestrator::ParseConfig(R"(
backends:
  - name: lms
    url: http://127.0.0.1:1234
)", "test.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto r = ResolveRagModelRef(&*cfg, dir.path(), "lms/qwen3-8b", "response_generation");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, "lms/qwen3-8b");
  auto other = ResolveRagModelRef(&*cfg, dir.path(), "other/x", "embedding");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().message().find("backend"), std::string::npos) << other.status().ToString();
  // Without access to the backend, binding treats the name as a file to load and fails naming the stage.
  RagModelSet set;
  Status s = BindRagModels({{"response_generation", "lms/qwen3-8b"}, {"embedding", "lms/emb"}}, {false, false, false}, 0,
                           [](const std::string& f) -> Result<engine::Model*> {
                             return Error(StatusCode::kNotFound, "no file {}", f);
                           },
                           &set);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("stage response_generation"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace qwenmux::rag
