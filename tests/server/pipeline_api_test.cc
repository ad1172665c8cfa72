// The pipeline job endpoints (/v1/pipelines/jobs) with the server in-process and the tiny
// models: inline documents and server-side paths run to the end with a result line per
// document; resume by id; what the network may not name (paths outside the data roots, file
// paths as models, bad definitions) is refused with the right status; cancellation, the cap on
// running jobs and shutdown with a job running (PipelineApiConcurrent: TSan runs those).
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "orchestrator/temp_dir.h"
#include "rag/store.h"
#include "server/app.h"
#include "server/http_client.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::ModelPath;
using qwenmux::testing::TempDir;
namespace fs = std::filesystem;

// The pipeline of tests/pipeline/job_concurrent_test.cc (tiers mapped to the tiny models), with
// validation that passes every schema-valid extraction.
constexpr const char* kDef = R"(name: api-test
context: 512
stages:
  - {name: read, type: read, concurrency: 2}
  - name: classify
    type: classify
    model: fast
    batch: 2
    labels:
      order: {description: an order, schema: {type: object, properties: {n: {type: integer}, who: {type: string, maxLength: 12}}, required: [n, who], additionalProperties: false}}
      other: {description: anything else, schema: {type: object, properties: {topic: {type: string, maxLength: 12}}, required: [topic], additionalProperties: false}}
  - {name: extract, type: extract, model: quality, batch: 2, max_tokens: 48}
  - {name: validate, type: validate, model: balanced, batch: 2, threshold: 0.0}
)";

const json kModels = {{"fast", "tiny"}, {"quality", "tiny"}, {"balanced", "moe"}};

struct Server {
  TempDir dir;
  std::unique_ptr<App> app;
  uint16_t port() const { return app->port(); }
  std::string data() const { return dir / "data"; }
};

std::unique_ptr<Server> StartServer(int32_t max_running = 2, bool data_root = true, int32_t keep_finished = 32,
                                    std::vector<std::string> write_collections = {}) {
  auto s = std::make_unique<Server>();
  fs::create_directories(s->data() + "/docs");
  fs::create_directories(s->dir / "pipelines");
  std::ofstream(s->dir / "pipelines/api-test.yaml") << kDef;
  AppOptions o;
  o.model_flags = {ModelPath("tiny-dense.q8_0.gguf") + "=tiny", ModelPath("tiny-moe.q4_k_m.gguf") + "=moe"};
  o.http.port = 0;
  o.http.security.check_host = true;
  o.models.n_ctx = 512;
  o.models.parallel = 2;
  o.models.threads = 1;
  o.shutdown_grace = std::chrono::milliseconds(500);
  if (data_root) o.jobs.data_roots = {s->data()};
  o.jobs.pipeline_dirs = {s->dir / "pipelines"};
  o.jobs.work_dir = s->dir / "work";
  o.rag.store_dir = s->dir / "rag";  // allowed pipeline collections go where POST /v1/rag reads
  o.jobs.write_collections = std::move(write_collections);
  for (const char* st : {"query_understanding", "embedding", "retrieval_ranking", "context_synthesis",
                         "response_generation", "quality_scoring"}) {
    o.rag.stage_models[st] = "tiny";
  }
  o.jobs.max_running = max_running;
  o.jobs.keep_finished = keep_finished;
  auto app = App::Create(std::move(o), [](const std::string&) {});
  EXPECT_TRUE(app.ok()) << app.status().ToString();
  if (!app.ok()) return nullptr;
  s->app = std::move(*app);
  EXPECT_TRUE(s->app->Start().ok());
  return s;
}

json Body(const qwenmux::testing::HttpResult& r) { return json::parse(r.body, nullptr, false); }

json Post(uint16_t port, const json& body, int want) {
  auto r = Call(port, "POST", "/v1/pipelines/jobs", body.dump());
  EXPECT_EQ(r.status, want) << r.body;
  return Body(r);
}

// Polls the job until its workers stopped (or 60 s pass); returns its last JSON.
json WaitDone(uint16_t port, const std::string& id) {
  json j;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = Call(port, "GET", "/v1/pipelines/jobs/" + id);
    EXPECT_EQ(r.status, 200) << r.body;
    j = Body(r);
    if (j.value("finished", false)) {
      EXPECT_NE(j["state"], "running") << j.dump();
      return j;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  ADD_FAILURE() << "job " << id << " still running: " << j.dump();
  return j;
}

std::vector<json> ResultLines(uint16_t port, const std::string& id) {
  auto r = Call(port, "GET", "/v1/pipelines/jobs/" + id + "/results");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "application/x-ndjson");
  std::vector<json> out;
  size_t pos = 0;
  while (pos < r.body.size()) {
    const size_t nl = r.body.find('\n', pos);
    if (nl == std::string::npos) break;
    out.push_back(json::parse(r.body.substr(pos, nl - pos)));
    pos = nl + 1;
  }
  EXPECT_EQ(pos, r.body.size()) << "a partial line";
  return out;
}

std::string Base(const json& line) { return fs::path(line["document"].get<std::string>()).filename().string(); }

json InlineDocs(int n) {
  json docs = json::array();
  for (int i = 0; i < n; ++i) {
    docs.push_back({{"name", fmt::format("order{}.txt", i)},
                    {"text", fmt::format("Order {} for {} units from shop {}.\n", i, i + 2, i * 3)}});
  }
  docs.push_back({{"name", "empty"}, {"text", ""}});  // no extension: saved as empty.txt
  return docs;
}

void CheckResults(const std::vector<json>& lines, const std::set<std::string>& want, const std::string& empty_name) {
  std::set<std::string> got;
  for (const json& l : lines) {
    got.insert(Base(l));
    EXPECT_EQ(l["hash"].get<std::string>().size(), 64u) << l.dump();
    if (Base(l) == empty_name) {
      EXPECT_EQ(l["status"], "skipped");  // no text: reported, not a failure
      EXPECT_EQ(l["stage"], "read");
      EXPECT_EQ(l["reason"], "empty document");
      EXPECT_FALSE(l.value("error", "").empty());
      continue;
    }
    EXPECT_TRUE(l.contains("class")) << l.dump();
    if (l["status"] == "ok") {
      EXPECT_TRUE(l["extracted"].is_object()) << l.dump();
      EXPECT_EQ(l["validation"]["verdict"], "pass") << l.dump();
      EXPECT_EQ(l["validation"]["schema_valid"], true) << l.dump();
    } else {
      EXPECT_FALSE(l.value("stage", "").empty()) << l.dump();
      EXPECT_FALSE(l.value("reason", "").empty()) << l.dump();
    }
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(lines.size(), want.size());
}

TEST(PipelineApi, InlineDocumentsRunToTheEndAndResume) {
  auto s = StartServer();
  ASSERT_NE(s, nullptr);
  const json def = json::parse(R"({"name": "inline", "context": 512, "stages": [
      {"name": "read", "type": "read"},
      {"name": "classify", "type": "classify", "model": "fast", "batch": 2, "labels": {
          "order": {"description": "an order", "schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}},
          "other": {"description": "anything else", "schema": {"type": "object", "properties": {"topic": {"type": "string", "maxLength": 12}}, "required": ["topic"]}}}},
      {"name": "extract", "type": "extract", "model": "quality", "max_tokens": 48},
      {"name": "validate", "type": "validate", "model": "balanced", "threshold": 0.0}]})");
  json body = {{"id", "inline-1"}, {"pipeline", def}, {"documents", InlineDocs(3)}, {"models", kModels}};
  json started = Post(s->port(), body, 202);
  EXPECT_EQ(started["id"], "inline-1");
  EXPECT_EQ(started["pipeline"], "inline");
  EXPECT_EQ(started["progress_url"], "/v1/pipelines/jobs/inline-1");
  EXPECT_EQ(started["documents"], 4);
  json done = WaitDone(s->port(), "inline-1");
  EXPECT_EQ(done["state"], "done") << done.dump();
  EXPECT_EQ(done["done"], 4);
  EXPECT_EQ(done["empty"], 1);
  EXPECT_EQ(done["ok"].get<int>() + done["failed"].get<int>(), 3);
  EXPECT_EQ(done["ok"], 3) << done.dump();  // the three orders pass (validate threshold 0)
  ASSERT_TRUE(done.contains("summary")) << done.dump();
  EXPECT_EQ(done["summary"]["pipeline"], "inline");
  EXPECT_FALSE(done["summary"]["stages"][0]["failures"].contains("empty document"));
  auto lines = ResultLines(s->port(), "inline-1");
  CheckResults(lines, {"order0.txt", "order1.txt", "order2.txt", "empty.txt"}, "empty.txt");
  // The results file lives in the job's own directory under the work dir.
  EXPECT_TRUE(fs::exists(s->dir / "work/inline-1/results.jsonl"));

  // The same id again: documents with an "ok" or "skipped" line are skipped; failed ones are
  // retried and get a new line.
  const int failed1 = done["failed"].get<int>();
  json again = Post(s->port(), body, 202);
  json done2 = WaitDone(s->port(), "inline-1");
  EXPECT_EQ(done2["state"], "done");
  EXPECT_EQ(done2["skipped"], 4 - failed1);
  EXPECT_EQ(done2["done"], failed1);
  EXPECT_EQ(ResultLines(s->port(), "inline-1").size(), static_cast<size_t>(4 + failed1));

  // Listed; DELETE of a finished job forgets it and its directory.
  auto list = Body(Call(s->port(), "GET", "/v1/pipelines/jobs"));
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["id"], "inline-1");
  auto del = Call(s->port(), "DELETE", "/v1/pipelines/jobs/inline-1");
  EXPECT_EQ(del.status, 200);
  EXPECT_EQ(Body(del)["deleted"], true);
  EXPECT_EQ(Call(s->port(), "GET", "/v1/pipelines/jobs/inline-1").status, 404);
  EXPECT_FALSE(fs::exists(s->dir / "work/inline-1"));
}

// Counts the SSE events of each name in a stream's text.
std::map<std::string, int> Events(const std::string& text, std::vector<json>* data_of_results = nullptr) {
  std::map<std::string, int> n;
  size_t pos = 0;
  while ((pos = text.find("event: ", pos)) != std::string::npos) {
    const size_t nl = text.find('\n', pos);
    const std::string name = text.substr(pos + 7, nl - pos - 7);
    ++n[name];
    const size_t data = text.find("data: ", nl);
    const size_t end = text.find("\n\n", data);
    if (name == "result" && data_of_results) data_of_results->push_back(json::parse(text.substr(data + 6, end - data - 6)));
    pos = end;
  }
  return n;
}

TEST(PipelineApi, EventStreamSendsProgressResultsAndDone) {
  auto s = StartServer();
  ASSERT_NE(s, nullptr);
  json started = Post(s->port(), {{"pipeline", "api-test"}, {"documents", InlineDocs(4)}, {"models", kModels}}, 202);
  // The stream ends by itself when the job finishes: Call reads it to the end.
  auto r = Call(s->port(), "GET", started["progress_url"].get<std::string>() + "/events");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "text/event-stream");
  std::vector<json> results;
  auto n = Events(r.body, &results);
  EXPECT_EQ(n["result"], 5) << r.body;
  EXPECT_EQ(n["done"], 1) << r.body;
  EXPECT_EQ(results.size(), 5u);
  for (const json& l : results) EXPECT_TRUE(l.contains("status")) << l.dump();
  const size_t done = r.body.rfind("event: done\ndata: ");
  ASSERT_NE(done, std::string::npos);
  const json last = json::parse(r.body.substr(done + 18, r.body.find('\n', done + 18) - done - 18));
  EXPECT_EQ(last["state"], "done");
  EXPECT_EQ(last["finished"], true);
  EXPECT_EQ(last["done"], 5);
  // A stream of a finished job: every line, then done at once.
  auto again = Call(s->port(), "GET", started["progress_url"].get<std::string>() + "/events");
  EXPECT_EQ(Events(again.body)["result"], 5);
  EXPECT_EQ(Events(again.body)["done"], 1);
  EXPECT_EQ(Call(s->port(), "GET", "/v1/pipelines/jobs/nope/events").status, 404);
  EXPECT_EQ(Call(s->port(), "DELETE", started["progress_url"].get<std::string>() + "/events").status, 404);
}

TEST(PipelineApi, ServerSidePathsUnderTheDataRootByPipelineName) {
  auto s = StartServer();
  ASSERT_NE(s, nullptr);
  std::ofstream(s->data() + "/docs/a.txt") << "Order 7 for 3 units from shop 12.\n";
  std::ofstream(s->data() + "/docs/b.md") << "# Memo\n\nThe weekly report about the shop.\n";
  std::ofstream(s->data() + "/docs/skip.bin") << "not a document format";
  std::ofstream(s->data() + "/c.txt") << "Order 9 for 1 unit.\n";
  // The named pipelines are listed.
  auto named = Body(Call(s->port(), "GET", "/v1/pipelines"));
  ASSERT_EQ(named["data"].size(), 1u);
  EXPECT_EQ(named["data"][0]["name"], "api-test");
  // A directory relative to the data root, a file by absolute path; the name with '_'.
  json started = Post(s->port(), {{"pipeline", "api_test"}, {"inputs", {"docs", s->data() + "/c.txt"}}, {"models", kModels}}, 202);
  const std::string id = started["id"];
  EXPECT_TRUE(id.starts_with("job-")) << id;
  EXPECT_EQ(started["pipeline"], "api-test");
  json done = WaitDone(s->port(), id);
  EXPECT_EQ(done["state"], "done") << done.dump();
  EXPECT_EQ(done["documents"], 3);
  CheckResults(ResultLines(s->port(), id), {"a.txt", "b.md", "c.txt"}, "");
}

TEST(PipelineApi, KeepsOnlyTheLastFinishedJobs) {
  auto s = StartServer(/*max_running=*/2, /*data_root=*/true, /*keep_finished=*/1);
  ASSERT_NE(s, nullptr);
  for (const char* id : {"first", "second"}) {
    Post(s->port(), {{"id", id}, {"pipeline", "api-test"}, {"documents", InlineDocs(1)}, {"models", kModels}}, 202);
    EXPECT_EQ(WaitDone(s->port(), id)["state"], "done");
  }
  EXPECT_TRUE(fs::exists(s->dir / "work/first/results.jsonl"));
  // A third submission leaves one finished job beside it: "first" goes, with its directory.
  Post(s->port(), {{"id", "third"}, {"pipeline", "api-test"}, {"documents", InlineDocs(1)}, {"models", kModels}}, 202);
  EXPECT_EQ(Call(s->port(), "GET", "/v1/pipelines/jobs/first").status, 404);
  EXPECT_EQ(Call(s->port(), "GET", "/v1/pipelines/jobs/first/results").status, 404);
  EXPECT_FALSE(fs::exists(s->dir / "work/first"));
  EXPECT_EQ(Call(s->port(), "GET", "/v1/pipelines/jobs/second").status, 200);
  WaitDone(s->port(), "third");
  auto list = Body(Call(s->port(), "GET", "/v1/pipelines/jobs"));
  ASSERT_EQ(list["data"].size(), 2u);
  EXPECT_EQ(list["data"][0]["id"], "third");  // newest first
  EXPECT_EQ(list["data"][1]["id"], "second");
}

TEST(PipelineApi, RefusesWhatTheNetworkMayNotName) {
  auto s = StartServer();
  ASSERT_NE(s, nullptr);
  const uint16_t port = s->port();
  fs::create_directories(s->dir / "outside");
  std::ofstream(s->dir / "outside/secret.txt") << "secret";
  fs::create_symlink(s->dir / "outside/secret.txt", s->data() + "/docs/link.txt");
  const json base = {{"pipeline", "api-test"}, {"models", kModels}};
  auto with = [&](json extra) {
    json b = base;
    for (auto it = extra.begin(); it != extra.end(); ++it) b[it.key()] = it.value();
    return b;
  };
  // Paths outside the data root: absolute, climbing out, through a symlink (alone or inside a
  // directory) -> 403 naming the input.
  for (const json& inputs : {json{s->dir / "outside/secret.txt"}, json{"../outside/secret.txt"}, json{"/etc/hostname"},
                             json{"docs/link.txt"}, json{"docs"}}) {
    json e = Post(port, with({{"inputs", inputs}}), 403);
    EXPECT_EQ(e["error"]["param"], "inputs[0]") << inputs.dump();
    EXPECT_NE(e["error"]["message"].get<std::string>().find("outside"), std::string::npos) << e.dump();
  }
  // A model override naming a file path, or a model the server does not have -> 400.
  json e = Post(port, with({{"documents", InlineDocs(1)}, {"models", {{"fast", ModelPath("tiny-dense.q8_0.gguf")}}}}), 400);
  EXPECT_EQ(e["error"]["param"], "models.fast");
  EXPECT_NE(e["error"]["message"].get<std::string>().find("file paths are not accepted"), std::string::npos) << e.dump();
  e = Post(port, with({{"documents", InlineDocs(1)}, {"models", {{"fast", "no-such-model"}}}}), 400);
  EXPECT_EQ(e["error"]["param"], "models.fast");
  // A stage model nobody mapped -> 400 naming it.
  e = Post(port, {{"pipeline", "api-test"}, {"documents", InlineDocs(1)}, {"models", {{"fast", "tiny"}}}}, 400);
  EXPECT_NE(e["error"]["message"].get<std::string>().find("quality"), std::string::npos) << e.dump();
  // Bad definitions -> 400 naming the key.
  json bad = json::parse(R"({"name": "x", "stages": [{"name": "read", "type": "read"},
      {"name": "c", "type": "bogus", "model": "fast"}]})");
  e = Post(port, {{"pipeline", bad}, {"documents", InlineDocs(1)}}, 400);
  EXPECT_NE(e["error"]["message"].get<std::string>().find("stages[1].type"), std::string::npos) << e.dump();
  EXPECT_EQ(e["error"]["param"], "pipeline");
  e = Post(port, {{"yaml", "name: y\nstages:\n  - {name: read, type: read, colour: red}\n"}, {"documents", InlineDocs(1)}}, 400);
  EXPECT_NE(e["error"]["message"].get<std::string>().find("stages[0].colour"), std::string::npos) << e.dump();
  EXPECT_EQ(e["error"]["param"], "yaml");
  // Unknown pipeline name -> 404; a path as a name -> 400.
  Post(port, {{"pipeline", "no-such-pipeline"}, {"documents", InlineDocs(1)}}, 404);
  Post(port, {{"pipeline", "../pipelines/api-test"}, {"documents", InlineDocs(1)}}, 400);
  // Request shape.
  Post(port, {{"pipeline", "api-test"}}, 400);                                           // nothing to process
  Post(port, with({{"documents", {{{"name", "../x.txt"}, {"text", "t"}}}}}), 400);       // a path as a name
  Post(port, with({{"documents", {{{"name", "a"}, {"text", "t"}}, {{"name", "a.txt"}, {"text", "u"}}}}}), 400);  // twice
  Post(port, with({{"documents", InlineDocs(1)}, {"colour", "red"}}), 400);              // unknown field
  Post(port, with({{"documents", InlineDocs(1)}, {"id", "../../etc"}}), 400);
  EXPECT_EQ(Call(port, "POST", "/v1/pipelines/jobs", "{not json").status, 400);
  // Unknown ids -> 404 on every job route.
  EXPECT_EQ(Call(port, "GET", "/v1/pipelines/jobs/nope").status, 404);
  EXPECT_EQ(Call(port, "GET", "/v1/pipelines/jobs/nope/results").status, 404);
  EXPECT_EQ(Call(port, "DELETE", "/v1/pipelines/jobs/nope").status, 404);
  EXPECT_EQ(Call(port, "GET", "/v1/pipelines/jobs/").status, 404);
  EXPECT_EQ(Call(port, "GET", "/v1/pipelines/jobs/x/other").status, 404);
  // Nothing was started by any of these.
  EXPECT_EQ(Body(Call(port, "GET", "/v1/pipelines/jobs"))["data"].size(), 0u);

  // A server without data roots refuses every server-side path.
  auto inline_only = StartServer(2, /*data_root=*/false);
  ASSERT_NE(inline_only, nullptr);
  e = Post(inline_only->port(), with({{"inputs", {inline_only->data() + "/docs"}}}), 403);
  EXPECT_NE(e["error"]["message"].get<std::string>().find("--data-root"), std::string::npos) << e.dump();
}

TEST(PipelineApiConcurrent, CancelCapAndShutdown) {
  auto s = StartServer(/*max_running=*/2);
  ASSERT_NE(s, nullptr);
  const uint16_t port = s->port();
  // Two long jobs fill the cap; a third gets 429 with Retry-After.
  json a = Post(port, {{"pipeline", "api-test"}, {"documents", InlineDocs(60)}, {"models", kModels}}, 202);
  json b = Post(port, {{"pipeline", "api-test"}, {"documents", InlineDocs(60)}, {"models", kModels}}, 202);
  auto over = Call(port, "POST", "/v1/pipelines/jobs",
                   json{{"pipeline", "api-test"}, {"documents", InlineDocs(1)}, {"models", kModels}}.dump());
  EXPECT_EQ(over.status, 429) << over.body;
  EXPECT_FALSE(over.Header("retry-after").empty());
  // Readers poll while the jobs run and get cancelled.
  std::atomic<bool> stop{false};
  std::atomic<int> polls{0};
  std::vector<std::thread> readers;
  for (const json* j : {&a, &b}) {
    const std::string id = (*j)["id"];
    readers.emplace_back([&stop, &polls, port, id] {
      int64_t last = 0;
      while (!stop) {
        auto r = Call(port, "GET", "/v1/pipelines/jobs/" + id);
        EXPECT_EQ(r.status, 200);
        const json p = Body(r);
        EXPECT_GE(p["done"].get<int64_t>(), last);
        last = p["done"].get<int64_t>();
        EXPECT_EQ(Call(port, "GET", "/v1/pipelines/jobs/" + id + "/results").status, 200);
        ++polls;
      }
    });
  }
  // Cancel once the readers are polling (a few rounds each), not after a fixed pause.
  while (polls.load() < 6) std::this_thread::yield();
  auto del = Call(port, "DELETE", "/v1/pipelines/jobs/" + a["id"].get<std::string>());
  ASSERT_EQ(del.status, 200) << del.body;
  EXPECT_EQ(Body(del)["state"], "cancelled");
  json done = WaitDone(port, a["id"]);
  EXPECT_EQ(done["state"], "cancelled");
  EXPECT_LT(done["done"].get<int>(), 61);
  // With one job gone there is room again.
  json c = Post(port, {{"pipeline", "api-test"}, {"documents", InlineDocs(60)}, {"models", kModels}}, 202);
  // The same id as a running job: 409.
  Post(port, {{"id", c["id"]}, {"pipeline", "api-test"}, {"documents", InlineDocs(1)}, {"models", kModels}}, 409);
  stop = true;
  for (auto& t : readers) t.join();
  // An event stream open on a running job (read raw: up to its first progress event now, the
  // rest after the shutdown).
  qwenmux::testing::RawSocket sock;
  ASSERT_TRUE(sock.Connect(port));
  sock.SetReadTimeout(10000);
  ASSERT_TRUE(sock.Send("GET " + c["progress_url"].get<std::string>() + "/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
  std::string got;
  auto read_more = [&] { return sock.Read(got) > 0; };
  while (got.find("event: progress") == std::string::npos && read_more()) {
  }
  EXPECT_NE(got.find("event: progress"), std::string::npos) << got;
  EXPECT_EQ(qwenmux::testing::RawStatus(got), 200);
  // Shutdown with jobs running cancels and joins them and ends the stream properly.
  // (How long this takes is server_bench's business; here: it returns, with no job left running.)
  s->app->Shutdown();
  EXPECT_EQ(s->app->jobs().running(), 0);
  while (!got.ends_with("0\r\n\r\n") && read_more()) {
  }
  EXPECT_TRUE(got.ends_with("0\r\n\r\n")) << "the chunked stream was not ended: " << got.substr(got.size() - std::min<size_t>(got.size(), 200));
}

TEST(PipelineApiConcurrent, OneJobAtATimeWritesTheDocumentStore) {
  auto s = StartServer(/*max_running=*/2, /*data_root=*/true, /*keep_finished=*/32, /*write_collections=*/{"docs"});
  ASSERT_NE(s, nullptr);
  const json def = json::parse(R"({"name": "store", "context": 512, "stages": [
      {"name": "read", "type": "read"},
      {"name": "chunk", "type": "chunk", "chunk_tokens": 64, "chunk_overlap": 8},
      {"name": "embed", "type": "embed", "model": "fast", "batch": 4, "collection": "docs"}]})");
  json a = Post(s->port(), {{"pipeline", def}, {"documents", InlineDocs(40)}, {"models", kModels}}, 202);
  // A second store writer waits its turn (429); a job that does not write the store may run.
  auto busy = Call(s->port(), "POST", "/v1/pipelines/jobs",
                   json{{"pipeline", def}, {"documents", InlineDocs(1)}, {"models", kModels}}.dump());
  EXPECT_EQ(busy.status, 429) << busy.body;
  EXPECT_NE(busy.body.find("document store"), std::string::npos) << busy.body;
  json other = Post(s->port(), {{"pipeline", "api-test"}, {"documents", InlineDocs(1)}, {"models", kModels}}, 202);
  EXPECT_EQ(Call(s->port(), "DELETE", a["progress_url"].get<std::string>()).status, 200);
  WaitDone(s->port(), a["id"]);
  json b = Post(s->port(), {{"pipeline", def}, {"documents", InlineDocs(2)}, {"models", kModels}}, 202);
  json done = WaitDone(s->port(), b["id"]);
  EXPECT_EQ(done["state"], "done") << done.dump();
  int stored = 0;
  for (const json& l : ResultLines(s->port(), b["id"])) {
    if (l["status"] == "ok") {
      EXPECT_EQ(l["collection"], "docs") << l.dump();
      EXPECT_GT(l["chunks"].get<int>(), 0) << l.dump();
      ++stored;
    }
  }
  EXPECT_GT(stored, 0) << "no document reached the store, so nothing above was checked";
  EXPECT_TRUE(fs::exists(s->dir / "rag/store.db"));
  WaitDone(s->port(), other["id"]);
  // What the pipeline stored is searchable right away through POST /v1/rag.
  auto ask = Call(s->port(), "POST", "/v1/rag",
                  json{{"collection", "docs"}, {"question", "What is in the documents?"}, {"max_tokens", 8},
                       {"max_rewrites", 0}, {"score", false}}.dump());
  ASSERT_EQ(ask.status, 200) << ask.body;
  const json answer = json::parse(ask.body);
  ASSERT_FALSE(answer["citations"].empty()) << ask.body;
  for (const json& c : answer["citations"]) EXPECT_NE(c["source"].get<std::string>().find("/work/"), std::string::npos) << c.dump();
}

const json kEmbedDef = json::parse(R"({"name": "store", "context": 512, "stages": [
    {"name": "read", "type": "read"},
    {"name": "chunk", "type": "chunk", "chunk_tokens": 64, "chunk_overlap": 8},
    {"name": "embed", "type": "embed", "model": "fast", "batch": 4, "collection": "docs"}]})");

int64_t StoredDocuments(const std::string& store_dir, const std::string& collection) {
  auto store = rag::Store::Open(store_dir);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  if (!store.ok()) return -1;
  auto st = (*store)->Stats(collection);
  return st.ok() ? st->documents : -1;
}

// Issue 20 item 1: by default a job's embed stage writes into the job's own store, never into
// the one POST /v1/rag answers from; deleting the job removes that store.
TEST(PipelineApiStore, JobsWriteTheirOwnStoreByDefault) {
  auto s = StartServer();
  ASSERT_NE(s, nullptr);
  json a = Post(s->port(), {{"pipeline", kEmbedDef}, {"documents", InlineDocs(2)}, {"models", kModels}}, 202);
  EXPECT_EQ(a["store"], "job") << a.dump();
  json done = WaitDone(s->port(), a["id"]);
  EXPECT_EQ(done["state"], "done") << done.dump();
  EXPECT_EQ(done["ok"], 2) << done.dump();
  const std::string own = s->dir / ("work/" + a["id"].get<std::string>() + "/store");
  EXPECT_EQ(StoredDocuments(own, "docs"), 2);
  // Nothing planted where RAG answers from.
  auto ask = Call(s->port(), "POST", "/v1/rag", json{{"collection", "docs"}, {"question", "What?"}, {"max_tokens", 4}}.dump());
  EXPECT_EQ(ask.status, 404) << ask.body;
  ASSERT_EQ(Call(s->port(), "DELETE", a["progress_url"].get<std::string>()).status, 200);
  EXPECT_FALSE(fs::exists(own));
}

TEST(PipelineApiStore, PurgeRemovesWhatAnAllowedJobStored) {
  auto s = StartServer(/*max_running=*/2, /*data_root=*/true, /*keep_finished=*/32, /*write_collections=*/{"docs"});
  ASSERT_NE(s, nullptr);
  json a = Post(s->port(), {{"pipeline", kEmbedDef}, {"documents", InlineDocs(3)}, {"models", kModels}}, 202);
  EXPECT_EQ(a["store"], "server") << a.dump();
  json done = WaitDone(s->port(), a["id"]);
  ASSERT_EQ(done["ok"], 3) << done.dump();
  EXPECT_EQ(StoredDocuments(s->dir / "rag", "docs"), 3);
  EXPECT_EQ(Call(s->port(), "DELETE", a["progress_url"].get<std::string>() + "?purge=maybe").status, 400);
  auto del = Call(s->port(), "DELETE", a["progress_url"].get<std::string>() + "?purge=true");
  ASSERT_EQ(del.status, 200) << del.body;
  EXPECT_EQ(Body(del)["purged"], 3) << del.body;
  EXPECT_EQ(StoredDocuments(s->dir / "rag", "docs"), 0);
  EXPECT_EQ(Call(s->port(), "GET", a["progress_url"].get<std::string>()).status, 404);
}

TEST(PipelineApiStore, CollectionNamesAreCheckedAndOnlyAllowedOnesReachTheServerStore) {
  auto s = StartServer(/*max_running=*/2, /*data_root=*/true, /*keep_finished=*/32, /*write_collections=*/{"docs"});
  ASSERT_NE(s, nullptr);
  json bad = kEmbedDef;
  bad["stages"][2]["collection"] = "../../x";
  json r = Post(s->port(), {{"pipeline", bad}, {"documents", InlineDocs(1)}, {"models", kModels}}, 400);
  EXPECT_NE(r.dump().find("collection"), std::string::npos) << r.dump();
  // A collection the operator did not allow goes to the job's own store.
  json other = kEmbedDef;
  other["stages"][2]["collection"] = "other";
  r = Post(s->port(), {{"pipeline", other}, {"documents", InlineDocs(1)}, {"models", kModels}}, 202);
  EXPECT_EQ(r["store"], "job") << r.dump();
  WaitDone(s->port(), r["id"]);
  auto ask = Call(s->port(), "POST", "/v1/rag", json{{"collection", "other"}, {"question", "What?"}, {"max_tokens", 4}}.dump());
  EXPECT_EQ(ask.status, 404) << ask.body;
  EXPECT_FALSE(fs::exists(s->dir / "x"));
}

TEST(PipelineApiStore, MaxJobsZeroTurnsJobsOff) {
  auto s = StartServer(/*max_running=*/0);
  ASSERT_NE(s, nullptr);
  json r = Post(s->port(), {{"pipeline", "api-test"}, {"documents", InlineDocs(1)}, {"models", kModels}}, 403);
  EXPECT_NE(r.dump().find("--max-jobs 0"), std::string::npos) << r.dump();
  EXPECT_EQ(s->app->jobs().running(), 0);
}

}  // namespace
}  // namespace qwenmux::server
