// Pipeline stages naming a backend's model ("NAME/MODEL", issue 18; pipeline/job.h "Backend
// models"). Another qwenmux on loopback serving the tiny model is the backend, in both dialects
// ("up" OpenAI, "upo" Ollama): an extract stage on it gives the same objects as the same stage
// on the same model run locally (greedy, schema-constrained), classify answers one of its labels
// (confidence 1), embed stores the backend's vectors; validate and a chunk stage with a model are
// refused naming the stage and what a backend lacks; an unconfigured backend name is a clear
// error; a backend that dies mid-pipeline fails the remaining documents at their stage, and a
// rerun keeps the finished ones.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "orchestrator/config/config.h"
#include "orchestrator/temp_dir.h"
#include "pipeline/job.h"
#include "rag/store.h"
#include "server/upstream_fixture.h"

namespace qwenmux::pipeline {
namespace {

using qwenmux::testing::ModelPath;
using qwenmux::testing::TempDir;
using Json = nlohmann::ordered_json;

constexpr const char* kExtract = R"(name: backend-extract
context: 1024
stages:
  - {name: read, type: read}
  - name: extract
    type: extract
    model: MODEL
    batch: 2
    max_tokens: 48
    schema: {type: object, properties: {n: {type: integer}, who: {type: string, maxLength: 12}}, required: [n, who]}
)";

std::string WithModel(std::string yaml, const std::string& model) {
  const size_t at = yaml.find("MODEL");
  return yaml.replace(at, 5, model);
}

void WriteDocs(const std::string& dir, int n) {
  std::filesystem::create_directories(dir);
  for (int i = 0; i < n; ++i) {
    std::ofstream(fmt::format("{}/d{}.txt", dir, i)) << fmt::format("Order {} for {} units, placed by Ann{}.", i, i + 2, i);
  }
}

// Runs `yaml` over the files in `docs`; the results by document file name.
std::map<std::string, Json> RunJob(const std::string& yaml, RunOptions o, Json* summary = nullptr) {
  auto def = ParsePipeline(yaml, "test.yaml");
  EXPECT_TRUE(def.ok()) << def.status().ToString();
  if (!def.ok()) return {};
  o.threads = 1;
  auto job = Job::Start(*def, std::move(o));
  EXPECT_TRUE(job.ok()) << job.status().ToString();
  if (!job.ok()) return {};
  auto s = (*job)->Wait();
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  if (summary && s.ok()) *summary = *s;
  std::map<std::string, Json> out;
  for (const Json& r : (*job)->Results()) out[std::filesystem::path(r["document"].get<std::string>()).filename()] = r;
  return out;
}

class PipelineBackendModel : public qwenmux::testing::TinyUpstreamSuite<PipelineBackendModel> {};

TEST_F(PipelineBackendModel, ExtractOnABackendIsTheLocalOutput) {
  TempDir dir;
  WriteDocs(dir / "docs", 3);
  RunOptions local;
  local.inputs = {dir / "docs"};
  local.models = {{"local", ModelPath("tiny-dense.q8_0.gguf")}};
  const auto want = RunJob(WithModel(kExtract, "local"), local);
  ASSERT_EQ(want.size(), 3u);
  for (const std::string model : {"up/tiny", "upo/tiny"}) {
    RunOptions o;
    o.inputs = {dir / "docs"};
    o.backend = Access();
    Json summary;
    const auto got = RunJob(WithModel(kExtract, model), o, &summary);
    ASSERT_EQ(got.size(), 3u) << model;
    for (const auto& [doc, w] : want) {
      const Json& g = got.at(doc);
      ASSERT_EQ(w["status"], "ok") << w.dump();
      EXPECT_EQ(g["status"], "ok") << model << ": " << g.dump();
      EXPECT_EQ(g["extracted"], w["extracted"]) << model << " " << doc;
      EXPECT_EQ(g["models"]["extract"], model);
    }
    EXPECT_EQ(summary["stages"][1]["model"], model);
    EXPECT_GT(summary["stages"][1]["tokens"].get<int64_t>(), 0) << model;  // the backend's usage
  }
}

TEST_F(PipelineBackendModel, ClassifyOnABackendAnswersOneOfItsLabels) {
  TempDir dir;
  WriteDocs(dir / "docs", 2);
  RunOptions o;
  o.inputs = {dir / "docs"};
  o.backend = Access();
  const auto got = RunJob(R"(name: backend-classify
context: 1024
stages:
  - {name: read, type: read}
  - name: classify
    type: classify
    model: upo/tiny
    labels:
      order: {description: an order}
      other: {description: anything else}
)", o);
  ASSERT_EQ(got.size(), 2u);
  for (const auto& [doc, r] : got) {
    ASSERT_EQ(r["status"], "ok") << r.dump();
    const std::string label = r["class"];
    EXPECT_TRUE(label == "order" || label == "other") << label;
    EXPECT_EQ(r["confidence"], 1.0);
    EXPECT_EQ(r["scores"][label], 1.0);
    EXPECT_EQ(r["scores"][label == "order" ? "other" : "order"], 0.0);
  }
}

TEST_F(PipelineBackendModel, EmbedStoresTheBackendsVectors) {
  TempDir dir;
  WriteDocs(dir / "docs", 2);
  RunOptions o;
  o.inputs = {dir / "docs"};
  o.backend = Access();
  o.store_dir = dir / "store";
  const auto got = RunJob(R"(name: backend-embed
context: 512
stages:
  - {name: read, type: read}
  - {name: chunk, type: chunk, chunk_tokens: 64, chunk_overlap: 8}
  - {name: embed, type: embed, model: up/tiny, collection: kb}
)", o);
  ASSERT_EQ(got.size(), 2u);
  for (const auto& [doc, r] : got) {
    ASSERT_EQ(r["status"], "ok") << r.dump();
    EXPECT_EQ(r["embedding_dim"], 256);  // the tiny model's hidden size
    EXPECT_EQ(r["collection"], "kb");
    EXPECT_EQ(r["models"]["embed"], "up/tiny");
  }
  auto store = rag::Store::Open(dir / "store");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto kb = (*store)->GetCollection("kb");
  ASSERT_TRUE(kb.ok()) << kb.status().ToString();
  EXPECT_EQ(kb->embed_model, "up/tiny:E256");
  EXPECT_EQ(kb->dim, 256);
}

TEST_F(PipelineBackendModel, StagesABackendCannotRunAreRefusedNamingWhatIsMissing) {
  TempDir dir;
  WriteDocs(dir / "docs", 1);
  RunOptions o;
  o.inputs = {dir / "docs"};
  o.backend = Access();
  auto validate = ParsePipeline(R"(name: v
stages:
  - {name: read, type: read}
  - {name: extract, type: extract, model: up/tiny, schema: {type: object, properties: {n: {type: integer}}}}
  - {name: check, type: validate, model: up/tiny}
)", "v.yaml");
  ASSERT_TRUE(validate.ok()) << validate.status().ToString();
  auto v = Job::Start(*validate, o);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(v.status().message().find("stage 'check' (validate) names backend model \"up/tiny\""), std::string::npos)
      << v.status().ToString();
  EXPECT_NE(v.status().message().find("log-probabilities"), std::string::npos) << v.status().ToString();
  auto chunk = ParsePipeline(R"(name: c
stages:
  - {name: read, type: read}
  - {name: chunk, type: chunk, model: upo/tiny}
)", "c.yaml");
  ASSERT_TRUE(chunk.ok()) << chunk.status().ToString();
  auto c = Job::Start(*chunk, o);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("stage 'chunk' (chunk) names backend model \"upo/tiny\""), std::string::npos)
      << c.status().ToString();
  EXPECT_NE(c.status().message().find("tokenizer"), std::string::npos) << c.status().ToString();
}

TEST_F(PipelineBackendModel, AnUnconfiguredBackendIsAClearError) {
  TempDir dir;
  RunOptions o;
  o.backend = Access();
  o.models_dir = dir.path();
  auto r = ResolveModelPath("nope/tiny", o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("\"nope/tiny\" names backend \"nope\", which is not configured"), std::string::npos)
      << r.status().ToString();
  WriteDocs(dir / "docs", 1);
  o.inputs = {dir / "docs"};
  auto def = ParsePipeline(WithModel(kExtract, "nope/tiny"), "x.yaml");
  ASSERT_TRUE(def.ok());
  auto job = Job::Start(*def, o);
  ASSERT_FALSE(job.ok());
  EXPECT_NE(job.status().message().find("backend \"nope\""), std::string::npos) << job.status().ToString();
}

// A backend configured in qwenmux.yaml that this run cannot reach (no RunOptions::backend) is a
// clear error naming it, not a catalog lookup miss.
TEST(PipelineBackendModelWithoutAccess, IsAClearErrorNamingTheBackend) {
  TempDir dir;
  auto cfg = orchestrator::ParseConfig("backends:\n  - name: lms\n    url: http://127.0.0.1:1234\n", "test.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  RunOptions o;
  o.config = &*cfg;
  o.models_dir = dir.path();
  auto r = ResolveModelPath("lms/qwen3-8b", o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("\"lms/qwen3-8b\" is a model of backend lms (http://127.0.0.1:1234)"), std::string::npos)
      << r.status().ToString();
  o.models["lms/qwen3-8b"] = "/models/x.gguf";  // an explicit --model mapping still wins
  EXPECT_EQ(ResolveModelPath("lms/qwen3-8b", o).value(), "/models/x.gguf");
}

// The backend goes away after its first answer: the other documents fail at the extract stage
// with the backend named, the job ends normally with every document reported, and a rerun keeps
// the finished document and retries the failed ones.
TEST(PipelineBackendModelDies, RemainingDocumentsFailAtTheirStage) {
  std::unique_ptr<server::App> upstream = qwenmux::testing::StartTinyUpstream(1024);
  ASSERT_NE(upstream, nullptr);
  auto upstreams = qwenmux::testing::MakeUpstreams({"dying=" + qwenmux::testing::LoopbackUrl(upstream->port())},
                                                   {"dying/tiny"});
  const rag::BackendAccess real = server::BackendAccessOf(upstreams.get());
  std::mutex mu;
  int calls = 0;
  rag::BackendAccess dying = real;
  dying.call = [&](rag::BackendCallKind kind, const std::string& model, Json body) {
    {
      std::lock_guard lock(mu);
      if (++calls == 2) upstream.reset();  // the upstream stops before the second request
    }
    return real.call(kind, model, std::move(body));
  };
  TempDir dir;
  WriteDocs(dir / "docs", 3);
  RunOptions o;
  o.inputs = {dir / "docs"};
  o.backend = dying;
  o.results_path = dir / "results.jsonl";
  std::string yaml = WithModel(kExtract, "dying/tiny");
  yaml.replace(yaml.find("batch: 2"), 8, "batch: 1");
  Json summary;
  const auto got = RunJob(yaml, o, &summary);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(summary["ok"], 1);
  EXPECT_EQ(summary["failed"], 2);
  for (const auto& [doc, r] : got) {
    if (r["status"] == "ok") continue;
    EXPECT_EQ(r["stage"], "extract") << r.dump();
    EXPECT_EQ(r["reason"], "backend error") << r.dump();
    EXPECT_NE(r["error"].get<std::string>().find("stage 'extract': backend dying"), std::string::npos) << r.dump();
  }
  std::ifstream in(dir / "results.jsonl");
  int lines = 0;
  for (std::string line; std::getline(in, line);) lines += !line.empty();
  EXPECT_EQ(lines, 3);
  Json again;
  (void)RunJob(yaml, o, &again);  // the backend is still gone
  EXPECT_EQ(again["skipped"], 1);
  EXPECT_EQ(again["failed"], 2);
}

}  // namespace
}  // namespace qwenmux::pipeline
