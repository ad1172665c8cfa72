// Stage -> model resolution for the RAG pipeline: defaults, a `rag:` pipeline in qwenmux.yaml,
// flag overrides, and errors that say what to do.
#include <gtest/gtest.h>

#include "base/mapped_file.h"
#include "orchestrator/temp_dir.h"
#include "rag/models.h"

namespace qwenmux::rag {
namespace {

TEST(RagModels, ConfigPipelineFlagsAndErrors) {
  qwenmux::testing::TempDir dir;
  auto cfg = orchestrator::ParseConfig(R"(
models:
  - name: gen
    file: /models/gen.gguf
    role: chat
  - name: emb
    file: /models/emb.gguf
    role: embedding
pipelines:
  rag:
    response_generation: gen
    query_understanding: gen
    embedding: emb
)", "test.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto m = ResolveRagModels(&*cfg, dir.path(), {{"embedding", "/flag/emb.gguf"}}, {"response_generation", "embedding"});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->at("response_generation"), "/models/gen.gguf");
  EXPECT_EQ(m->at("query_understanding"), "/models/gen.gguf");
  EXPECT_EQ(m->at("embedding"), "/flag/emb.gguf");  // the flag wins
  EXPECT_FALSE(m->count("retrieval_ranking"));      // default (qwen3-reranker:0.6b) not pulled, not needed

  auto missing = ResolveRagModels(&*cfg, dir.path(), {}, {"retrieval_ranking"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("qwenmux pull"), std::string::npos) << missing.status().ToString();

  auto bad = orchestrator::ParseConfig("models:\n  - name: g\n    file: /g.gguf\npipelines:\n  rag:\n    answering: g\n",
                                       "bad.yaml");
  ASSERT_TRUE(bad.ok());
  auto r = ResolveRagModels(&*bad, dir.path(), {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("answering"), std::string::npos);

  EXPECT_EQ(DefaultRagAssignments().size(), std::size(kRagStages));
}

}  // namespace
}  // namespace qwenmux::rag
