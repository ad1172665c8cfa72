// RAG stages on a backend's model ("NAME/MODEL", issue 18; rag/backend_model.h): another qwenmux
// on loopback serving the tiny model is the backend in both dialects. Query understanding and
// response generation on it give the same queries and answer as the same model run locally
// (greedy); the embedder through its embeddings endpoint gives the local model's vectors;
// reranking and scoring on a backend are refused naming the stage.
#include <cmath>

#include <gtest/gtest.h>

#include "rag/ingest.h"
#include "rag/model_set.h"
#include "rag/rag.h"
#include "rag_test_util.h"
#include "server/upstream_fixture.h"

namespace qwenmux::rag {
namespace {

using qwenmux::testing::kTinyDense;
using qwenmux::testing::TempDir;
using qwenmux::testing::TinyModel;
using qwenmux::testing::WriteFile;

class RagBackendModel : public qwenmux::testing::TinyUpstreamSuite<RagBackendModel> {};

TEST_F(RagBackendModel, AnswerAndRewritesOnABackendAreTheLocalOnes) {
  TempDir dir;
  auto store = Store::Open(dir / "store");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto embedder = Embedder::Create(&TinyModel(), kTinyDense);
  ASSERT_TRUE(embedder.ok());
  std::filesystem::create_directories(dir / "docs");
  WriteFile(dir / "docs/otters.md", "# Otters\n\nSea otters hold hands while sleeping so they do not drift apart.");
  WriteFile(dir / "docs/tea.txt", "Green tea is steamed or pan-fired soon after picking to stop oxidation.");
  IngestOptions io;
  io.collection = "kb";
  ASSERT_TRUE(Ingest(**store, *embedder, std::vector<std::string>{dir / "docs"}, io).ok());
  AnswerOptions o;
  o.sampler.temperature = 0;
  o.max_answer_tokens = 12;
  o.max_rewrites = 2;
  o.generator_ctx = 1024;
  RagModels local;
  local.query = &TinyModel();
  local.embedder = &*embedder;
  local.generator = &TinyModel();
  auto want = Answer(**store, "kb", "Why do sea otters hold hands?", local, o);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  RagModels remote;
  remote.embedder = &*embedder;
  remote.query_backend = "upo/tiny";
  remote.generator_backend = "up/tiny";
  remote.backend = Access();
  std::string streamed;
  std::vector<std::string> stages;
  auto got = Answer(**store, "kb", "Why do sea otters hold hands?", remote, o, [&](const AnswerEvent& e) {
    if (e.kind == AnswerEvent::Kind::kText) streamed += e.text;
    else stages.push_back(e.stage);
    return true;
  });
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->queries, want->queries);
  ASSERT_EQ(got->sources.size(), want->sources.size());  // both sources fit either way
  EXPECT_FALSE(want->answer.empty());
  EXPECT_EQ(got->answer, want->answer);
  EXPECT_EQ(got->answer_tokens, want->answer_tokens);  // the backend's usage
  EXPECT_NE(streamed.find(got->answer), std::string::npos);
  EXPECT_EQ(stages, (std::vector<std::string>{"query_understanding", "retrieval", "context_synthesis", "response_generation"}));
  // A LoRA adapter applies to a local generator only.
  o.generator_adapter = "/x/adapter.gguf";
  auto adapter = Answer(**store, "kb", "otters", remote, o);
  ASSERT_FALSE(adapter.ok());
  EXPECT_NE(adapter.status().message().find("cannot apply to backend model up/tiny"), std::string::npos)
      << adapter.status().ToString();
}

TEST_F(RagBackendModel, EmbeddingThroughABackendIsTheLocalModels) {
  RagModelSet set;
  const std::map<std::string, std::string> paths = {{"embedding", "upo/tiny"}, {"response_generation", "up/tiny"}};
  auto no_file = [](const std::string& f) -> Result<engine::Model*> { return Error(StatusCode::kNotFound, "no file {}", f); };
  ASSERT_TRUE(BindRagModels(paths, {false, false, false}, 0, no_file, &set, Access()).ok());
  ASSERT_TRUE(set.embedder.has_value());
  EXPECT_TRUE(set.embedder->is_backend());
  EXPECT_EQ(set.embedder->dim(), 256);
  EXPECT_EQ(set.embedder->id(), "upo/tiny:E256");
  EXPECT_EQ(set.models.generator, nullptr);
  EXPECT_EQ(set.models.generator_backend, "up/tiny");
  EXPECT_TRUE(RagLoadPlan(paths, {false, false, false}, 1024, 1, Access()).empty());  // nothing to load
  auto local = Embedder::Create(&TinyModel(), kTinyDense);
  ASSERT_TRUE(local.ok());
  for (bool query : {false, true}) {
    auto a = query ? set.embedder->EmbedQuery("sea otters") : set.embedder->EmbedDocuments({"sea otters"}).value().at(0);
    auto b = query ? local->EmbedQuery("sea otters") : local->EmbedDocuments({"sea otters"}).value().at(0);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    ASSERT_TRUE(b.ok());
    ASSERT_EQ(a->size(), b->size());
    double dot = 0;
    for (size_t i = 0; i < a->size(); ++i) dot += static_cast<double>((*a)[i]) * (*b)[i];
    EXPECT_GT(dot, 0.999) << "query " << query;  // both unit length: the cosine
  }
}

TEST_F(RagBackendModel, RerankAndScoreOnABackendAreRefusedNamingTheStage) {
  engine::Model& tiny = TinyModel();
  auto get = [&](const std::string&) -> Result<engine::Model*> { return &tiny; };
  for (const char* stage : {"retrieval_ranking", "quality_scoring"}) {
    std::map<std::string, std::string> paths = {{"embedding", kTinyDense}, {"response_generation", kTinyDense},
                                                {"retrieval_ranking", kTinyDense}, {"quality_scoring", kTinyDense}};
    paths[stage] = "up/tiny";
    RagModelSet set;
    Status s = BindRagModels(paths, {false, true, true}, 0, get, &set, Access());
    ASSERT_FALSE(s.ok()) << stage;
    EXPECT_EQ(s.code(), StatusCode::kUnsupported);
    EXPECT_NE(s.message().find(std::string("stage ") + stage + " names backend model up/tiny"), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find("logits"), std::string::npos) << s.ToString();
  }
}

TEST_F(RagBackendModel, AnUnconfiguredBackendIsNotABackend) {
  const BackendAccess a = Access();
  EXPECT_TRUE(a.Owns("up/tiny"));
  EXPECT_FALSE(a.Owns("nope/tiny"));
  auto r = BackendChat(a, "nope/tiny", "s", "u", {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("backend \"nope\" is not configured"), std::string::npos) << r.status().ToString();
}

}  // namespace
}  // namespace qwenmux::rag
