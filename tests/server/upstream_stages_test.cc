// A server whose pipeline jobs and POST /v1/rag name its backend's model ("NAME/MODEL", issue
// 18): another qwenmux on loopback is the backend "up". A pipeline job whose extract stage is
// "up/tiny" runs there; a RAG call whose embedding, rewriting and answer stages are "up/tiny"
// answers from a collection ingested with the backend's embeddings.
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "orchestrator/temp_dir.h"
#include "rag/ingest.h"
#include "rag/store.h"
#include "server/http_client.h"
#include "server/upstream_fixture.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::TempDir;

TEST(UpstreamStages, PipelineJobsAndRagCallsRunOnTheBackend) {
  std::unique_ptr<App> upstream = qwenmux::testing::StartTinyUpstream(1024);
  ASSERT_NE(upstream, nullptr);
  const std::string url = qwenmux::testing::LoopbackUrl(upstream->port());
  TempDir dir;
  {  // the collection, embedded by the backend
    auto direct = qwenmux::testing::MakeUpstreams({"up=" + url}, {"up/tiny"});
    auto store = rag::Store::Open(dir / "rag");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto embedder = rag::Embedder::CreateBackend(BackendAccessOf(direct.get()), "up/tiny");
    ASSERT_TRUE(embedder.ok()) << embedder.status().ToString();
    std::filesystem::create_directories(dir / "docs");
    std::ofstream(dir / "docs/otters.md") << "# Otters\n\nSea otters hold hands while sleeping so they do not drift apart.\n";
    rag::IngestOptions io;
    io.collection = "kb";
    auto ingested = rag::Ingest(**store, *embedder, std::vector<std::string>{dir / "docs"}, io);
    ASSERT_TRUE(ingested.ok()) << ingested.status().ToString();
  }
  AppOptions o;
  o.backend_flags = {"up=" + url};
  o.http.port = 0;
  o.jobs.max_running = 1;
  o.jobs.work_dir = dir / "work";
  o.rag.store_dir = dir / "rag";
  for (const char* st : {"query_understanding", "embedding", "response_generation"}) o.rag.stage_models[st] = "up/tiny";
  auto front = App::Create(std::move(o), [](const std::string&) {});
  ASSERT_TRUE(front.ok()) << front.status().ToString();
  ASSERT_TRUE((*front)->Start().ok());
  const uint16_t port = (*front)->port();

  const json def = json::parse(R"({"name": "remote", "context": 1024, "stages": [
      {"name": "read", "type": "read"},
      {"name": "extract", "type": "extract", "model": "up/tiny", "max_tokens": 48,
       "schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}]})");
  const json job{{"id", "remote-1"}, {"pipeline", def},
                 {"documents", json::array({json{{"name", "a.txt"}, {"text", "Order 7 for 9 units."}}})}};
  auto posted = Call(port, "POST", "/v1/pipelines/jobs", job.dump());
  ASSERT_EQ(posted.status, 202) << posted.body;
  json state;
  ASSERT_TRUE(qwenmux::testing::WaitUntil([&] {
    state = json::parse(Call(port, "GET", "/v1/pipelines/jobs/remote-1").body, nullptr, false);
    return state.is_object() && state.value("finished", false);
  }, std::chrono::seconds(60))) << state.dump();
  EXPECT_EQ(state["state"], "done") << state.dump();
  EXPECT_EQ(state["ok"], 1) << state.dump();
  const auto lines = Call(port, "GET", "/v1/pipelines/jobs/remote-1/results");
  ASSERT_EQ(lines.status, 200);
  const json line = json::parse(lines.body.substr(0, lines.body.find('\n')));
  EXPECT_EQ(line["models"]["extract"], "up/tiny") << line.dump();
  EXPECT_TRUE(line["extracted"]["n"].is_number_integer()) << line.dump();

  const json ask{{"collection", "kb"}, {"question", "Why do sea otters hold hands?"}, {"max_tokens", 8},
                 {"temperature", 0},   {"rerank_top", 0},  {"score", false}, {"max_rewrites", 1}};
  auto r = Call(port, "POST", "/v1/rag", ask.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["models"]["response_generation"], "up/tiny") << j.dump();
  EXPECT_EQ(j["models"]["embedding"], "up/tiny") << j.dump();
  EXPECT_FALSE(j["answer"].get<std::string>().empty()) << j.dump();
  EXPECT_EQ(j["citations"].size(), 1u) << j.dump();
  (*front)->Shutdown();
}

}  // namespace
}  // namespace qwenmux::server
