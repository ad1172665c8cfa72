// POST /v1/rag and the chat-completions `rag` extension, in-process with the tiny dense model in
// every stage over a small collection: the answer against rag::Answer called directly, sources
// that are the store's chunks, citations that name sources, the SSE stream (stages in pipeline
// order, deltas adding up to the answer, result, [DONE]), the chat shape, errors (404, 400),
// client disconnect, and (RagApiConcurrent) the concurrency cap and calls sharing a model.
#include <atomic>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/lora.h"
#include "rag/ingest.h"
#include "rag/rag.h"
#include "rag/rag_test_util.h"
#include "server/app.h"
#include "server/generation.h"
#include "server/http_client.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::HttpResult;
using qwenmux::testing::kTinyDense;
using qwenmux::testing::TempDir;
using qwenmux::testing::TinyModel;
using qwenmux::testing::WriteFile;

const std::vector<std::string> kStages = {"query_understanding", "retrieval",           "rerank",
                                          "context_synthesis",   "response_generation", "quality_scoring"};

// A store with collection "kb" (three small documents) embedded by the tiny model, and a server
// whose every RAG stage runs on it.
struct RagServer {
  TempDir dir;
  std::set<std::string> doc_ids, chunk_ids;
  std::unique_ptr<App> app;

  explicit RagServer(int32_t max_concurrent, std::vector<std::string> adapter_flags = {}) {
    std::filesystem::create_directories(dir / "docs");
    WriteFile(dir / "docs/otters.md", "# Otters\n\nSea otters hold hands while sleeping so they do not drift apart.");
    WriteFile(dir / "docs/rust.txt", "Rust prevents data races with ownership and borrowing rules.");
    WriteFile(dir / "docs/tea.txt", "Green tea is steamed or pan-fired soon after picking to stop oxidation.");
    {
      auto store = rag::Store::Open(dir / "store");
      EXPECT_TRUE(store.ok()) << store.status().ToString();
      auto embedder = rag::Embedder::Create(&TinyModel(), kTinyDense);
      EXPECT_TRUE(embedder.ok());
      rag::IngestOptions o;
      o.collection = "kb";
      EXPECT_TRUE(rag::Ingest(**store, *embedder, std::vector<std::string>{dir / "docs"}, o).ok());
      auto coll = (*store)->GetCollection("kb");
      EXPECT_TRUE(coll.ok());
      auto docs = (*store)->ListDocuments(*coll);
      EXPECT_TRUE(docs.ok());
      for (const auto& d : *docs) doc_ids.insert(d.doc_id);
      for (int64_t id = 1; id <= 100; ++id) {
        auto c = (*store)->GetChunks(std::vector<int64_t>{id});
        if (c.ok() && !c->empty()) chunk_ids.insert(c->front().chunk_id);
      }
    }
    AppOptions o;
    o.model_flags = {kTinyDense + "=tiny"};
    o.adapter_flags = std::move(adapter_flags);
    o.http.port = 0;
    o.http.security.check_host = true;
    o.models.n_ctx = 1024;
    o.models.threads = 2;
    o.shutdown_grace = std::chrono::milliseconds(2000);
    o.rag.store_dir = dir / "store";
    for (const char* s : {"query_understanding", "embedding", "retrieval_ranking", "context_synthesis",
                                 "response_generation", "quality_scoring"}) {
      o.rag.stage_models[s] = "tiny";
    }
    o.rag.max_concurrent = max_concurrent;
    auto a = App::Create(std::move(o), [](const std::string&) {});
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    if (!a.ok()) return;
    app = std::move(*a);
    EXPECT_TRUE(app->Start().ok());
  }
  uint16_t port() const { return app->port(); }
  HttpResult Post(const std::string& path, const json& body) const { return Call(port(), "POST", path, body.dump()); }
  // Waits (bounded) until `n` pipelines run.
  bool WaitRunning(int32_t n) const {
    for (int i = 0; i < 3000; ++i) {
      if (app->service().rag()->running() == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
};

json Ask(const std::string& question, int max_tokens, bool stream = false) {
  return json{{"collection", "kb"}, {"question", question}, {"max_tokens", max_tokens}, {"temperature", 0},
              {"stream", stream}};
}

struct SseEvent {
  std::string event;  // "" for plain data lines
  std::string data;
};

std::vector<SseEvent> ParseSse(const std::string& body) {
  std::vector<SseEvent> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) end = body.size();
    SseEvent e;
    size_t line = pos;
    while (line < end) {
      size_t nl = body.find('\n', line);
      if (nl == std::string::npos || nl > end) nl = end;
      const std::string l = body.substr(line, nl - line);
      if (l.starts_with("event: ")) e.event = l.substr(7);
      if (l.starts_with("data: ")) e.data = l.substr(6);
      line = nl + 1;
    }
    if (!e.data.empty()) out.push_back(e);
    pos = end + 2;
  }
  return out;
}

// A streaming request whose socket stays open: reads until `marker` arrived.
struct OpenStream {
  qwenmux::testing::RawSocket sock;
  std::string got;
  bool Send(uint16_t port, const std::string& path, const std::string& body) {
    const std::string req = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                            "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    return sock.Connect(port) && sock.Send(req);
  }
  bool ReadUntil(const std::string& marker) {
    return sock.ReadUntil(got, [&](const std::string& g) { return g.find(marker) != std::string::npos; });
  }
};

class RagApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new RagServer(2); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static RagServer* server_;
};
RagServer* RagApiTest::server_ = nullptr;

TEST_F(RagApiTest, AnswerCitesStoredChunksAndMatchesTheLibrary) {
  const std::string q = "Why do sea otters hold hands?";
  auto r = server_->Post("/v1/rag", Ask(q, 12));
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["collection"], "kb");
  EXPECT_EQ(j["question"], q);
  EXPECT_EQ(j["models"]["response_generation"], "tiny");
  ASSERT_FALSE(j["citations"].empty());
  std::set<int> ns;
  for (const json& c : j["citations"]) {
    EXPECT_TRUE(server_->doc_ids.count(c["doc_id"].get<std::string>())) << c.dump();
    EXPECT_TRUE(server_->chunk_ids.count(c["chunk_id"].get<std::string>())) << c.dump();
    EXPECT_FALSE(c["text"].get<std::string>().empty());
    ns.insert(c["n"].get<int>());
  }
  for (const json& n : j["cited"]) EXPECT_TRUE(ns.count(n.get<int>())) << n;
  for (const std::string& s : kStages) EXPECT_TRUE(j["timings"].contains(s + "_ms")) << s;
  EXPECT_GE(j["score"].get<double>(), 0.0);
  EXPECT_LE(j["score"].get<double>(), 1.0);
  EXPECT_EQ(j["answer_tokens"], 12);

  // The same call on the library, with the test's own copy of the model: the same answer.
  auto store = rag::Store::Open(server_->dir / "store");
  ASSERT_TRUE(store.ok());
  auto embedder = rag::Embedder::Create(&TinyModel(), kTinyDense);
  ASSERT_TRUE(embedder.ok());
  rag::AnswerOptions o;
  o.sampler.temperature = 0;
  o.max_answer_tokens = 12;
  rag::RagModels m;
  m.query = m.reranker = m.generator = m.scorer = &TinyModel();
  m.embedder = &*embedder;
  auto direct = rag::Answer(**store, "kb", q, m, o);
  ASSERT_TRUE(direct.ok()) << direct.status().ToString();
  EXPECT_EQ(j["answer"], direct->answer);
  EXPECT_EQ(j["queries"], json(direct->queries));
  ASSERT_EQ(j["citations"].size(), direct->sources.size());
  for (size_t i = 0; i < direct->sources.size(); ++i) EXPECT_EQ(j["citations"][i]["chunk_id"], direct->sources[i].chunk_id);
}

TEST_F(RagApiTest, StreamStagesInOrderDeltasAddUpToTheAnswer) {
  auto r = server_->Post("/v1/rag", Ask("What stops green tea oxidation?", 16, true));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("content-type"), "text/event-stream");
  const auto events = ParseSse(r.body);
  std::vector<std::string> stages;
  std::string text;
  json result;
  bool delta_before_generation_end = false;
  for (size_t i = 0; i < events.size(); ++i) {
    const SseEvent& e = events[i];
    if (e.event == "stage") {
      const json s = json::parse(e.data);
      stages.push_back(s["stage"]);
      EXPECT_GE(s["ms"].get<double>(), 0);
    } else if (e.event == "delta") {
      text += json::parse(e.data)["text"].get<std::string>();
      EXPECT_TRUE(result.is_null()) << "delta after the result";
      if (stages.size() == 4) delta_before_generation_end = true;  // after context_synthesis
    } else if (e.event == "result") {
      result = json::parse(e.data);
    }
  }
  EXPECT_EQ(stages, kStages);
  ASSERT_FALSE(result.is_null()) << r.body;
  EXPECT_EQ(text, result["answer"].get<std::string>());
  EXPECT_TRUE(delta_before_generation_end || text.empty());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().event, "");
  EXPECT_EQ(events.back().data, "[DONE]");
  EXPECT_FALSE(result["citations"].empty());
}

TEST_F(RagApiTest, ChatCompletionsWithRagField) {
  json req{{"model", "tiny"},
           {"messages", json::array({json{{"role", "user"}, {"content", "Tell me about tea."}},
                                     json{{"role", "assistant"}, {"content", "Sure."}},
                                     json{{"role", "user"}, {"content", "How do otters sleep?"}}})},
           {"max_tokens", 10},
           {"temperature", 0},
           {"rag", {{"collection", "kb"}, {"max_rewrites", 0}, {"score", false}}}};
  auto r = server_->Post("/v1/chat/completions", req);
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "tiny");
  const json& rag = j["qwenmux"]["rag"];
  EXPECT_EQ(rag["question"], "How do otters sleep?");  // the last user message
  EXPECT_EQ(j["choices"][0]["message"]["content"], rag["answer"]);
  EXPECT_EQ(j["usage"]["completion_tokens"], 10);
  EXPECT_FALSE(rag["citations"].empty());
  EXPECT_TRUE(rag["score"].is_null());                          // "score": false
  EXPECT_EQ(rag["queries"].size(), 1u);                         // "max_rewrites": 0
  EXPECT_FALSE(rag["timings"].contains("quality_scoring_ms"));

  req["stream"] = true;
  auto s = server_->Post("/v1/chat/completions", req);
  ASSERT_EQ(s.status, 200) << s.body;
  std::string text;
  json final_rag;
  const auto events = ParseSse(s.body);
  ASSERT_FALSE(events.empty());
  for (const SseEvent& e : events) {
    if (e.data == "[DONE]") continue;
    const json c = json::parse(e.data);
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    const json& d = c["choices"][0]["delta"];
    if (d.contains("content")) text += d["content"].get<std::string>();
    if (c.contains("qwenmux")) final_rag = c["qwenmux"]["rag"];
  }
  EXPECT_EQ(events.back().data, "[DONE]");
  ASSERT_FALSE(final_rag.is_null());
  EXPECT_EQ(text, final_rag["answer"].get<std::string>());
  EXPECT_EQ(final_rag["answer"], rag["answer"]);  // greedy: the same answer both ways
}

TEST_F(RagApiTest, BadRequests) {
  auto unknown = server_->Post("/v1/rag", json{{"collection", "nope"}, {"question", "q"}});
  EXPECT_EQ(unknown.status, 404) << unknown.body;
  EXPECT_NE(unknown.body.find("\\\"nope\\\" not found"), std::string::npos) << unknown.body;
  EXPECT_EQ(json::parse(unknown.body)["error"]["param"], "collection");

  auto no_q = server_->Post("/v1/rag", json{{"collection", "kb"}});
  EXPECT_EQ(no_q.status, 400);
  EXPECT_EQ(json::parse(no_q.body)["error"]["param"], "question");
  EXPECT_EQ(server_->Post("/v1/rag", json{{"collection", "kb"}, {"question", "  "}}).status, 400);
  EXPECT_EQ(server_->Post("/v1/rag", json{{"question", "q"}}).status, 400);
  EXPECT_EQ(server_->Post("/v1/rag", json{{"collection", "kb"}, {"query", "q"}, {"top_k", 0}}).status, 400);

  for (const std::string& path : {std::string(kTinyDense), std::string("../x.gguf"), std::string("tiny.gguf")}) {
    auto p = server_->Post("/v1/rag", json{{"collection", "kb"}, {"question", "q"}, {"models", {{"embedding", path}}}});
    EXPECT_EQ(p.status, 400) << path << ": " << p.body;
    EXPECT_NE(p.body.find("file path"), std::string::npos) << p.body;
  }
  auto unknown_model = server_->Post("/v1/rag", json{{"collection", "kb"}, {"question", "q"},
                                                     {"models", {{"response_generation", "no-such-model"}}}});
  EXPECT_EQ(unknown_model.status, 400) << unknown_model.body;
  EXPECT_NE(unknown_model.body.find("response_generation"), std::string::npos);
  auto bad_stage = server_->Post("/v1/rag", json{{"collection", "kb"}, {"question", "q"}, {"models", {{"nope", "tiny"}}}});
  EXPECT_EQ(bad_stage.status, 400);
  EXPECT_NE(bad_stage.body.find("unknown stage"), std::string::npos);

  auto chat_path = server_->Post("/v1/chat/completions",
                                 json{{"model", "/etc/passwd"},
                                      {"messages", json::array({json{{"role", "user"}, {"content", "q"}}})},
                                      {"rag", {{"collection", "kb"}}}});
  EXPECT_EQ(chat_path.status, 400) << chat_path.body;
  auto chat_no_user = server_->Post("/v1/chat/completions",
                                    json{{"messages", json::array({json{{"role", "system"}, {"content", "x"}}})},
                                         {"rag", {{"collection", "kb"}}}});
  EXPECT_EQ(chat_no_user.status, 400);
  EXPECT_EQ(json::parse(chat_no_user.body)["error"]["param"], "messages");
  auto chat_bad = server_->Post("/v1/chat/completions",
                                json{{"messages", json::array({json{{"role", "user"}, {"content", "q"}}})}, {"rag", 3}});
  EXPECT_EQ(chat_bad.status, 400);
  auto chat_missing = server_->Post("/v1/chat/completions",
                                    json{{"messages", json::array({json{{"role", "user"}, {"content", "q"}}})},
                                         {"rag", {{"collection", "absent"}}}});
  EXPECT_EQ(chat_missing.status, 404);
}

TEST_F(RagApiTest, ClientDisconnectCancelsAndTheServerAnswersNext) {
  const int64_t cancelled_before = server_->app->service().rag()->cancelled();
  {
    OpenStream s;
    ASSERT_TRUE(s.Send(server_->port(), "/v1/rag", Ask("Tell me everything about otters.", 600, true).dump()));
    ASSERT_TRUE(s.ReadUntil("event: delta"));
    s.sock.Close();  // the client goes away mid-answer
  }
  ASSERT_TRUE(server_->WaitRunning(0));
  EXPECT_EQ(server_->app->service().rag()->cancelled(), cancelled_before + 1);
  for (int i = 0; i < 200 && server_->app->http().InFlight() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server_->app->http().InFlight(), 0);
  auto next = server_->Post("/v1/rag", Ask("Why do sea otters hold hands?", 4));
  EXPECT_EQ(next.status, 200) << next.body;
  EXPECT_EQ(Call(server_->port(), "GET", "/health").status, 200);
}

// The response_generation stage may name a LoRA adapter model ("tiny:lora"): the answer is
// generated with it (not the base's; at scale 0 the base's); other stages refuse one.
TEST(RagApiLora, ResponseGenerationRunsWithTheAdapter) {
  // A strong random adapter (rank 8, alpha 800): the tiny model's answer here barely moves with
  // the test adapter.
  TempDir tmp;
  const std::string lora = tmp / "synth.gguf";
  {
    auto f = gguf::File::Open(kTinyDense);
    ASSERT_TRUE(f.ok());
    auto mc = model::ReadConfig(*f);
    ASSERT_TRUE(mc.ok());
    auto t = engine::SynthLora(*f, *mc, 8, 800.0f, 5);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    ASSERT_TRUE(engine::WriteLoraGguf(*t, lora).ok());
  }
  RagServer s(1, {"lora=" + lora + "@tiny", "zero=" + lora + "@tiny:0"});
  ASSERT_TRUE(s.app);
  auto ask = [&](const std::string& model) {
    json b = Ask("Why do sea otters hold hands?", 12);
    b["max_rewrites"] = 0;
    if (!model.empty()) b["models"] = {{"response_generation", model}};
    auto r = s.Post("/v1/rag", b);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? json::parse(r.body) : json::object();
  };
  const json base = ask(""), with = ask("tiny:lora"), zero = ask("tiny:zero");
  EXPECT_EQ(with["models"]["response_generation"], "tiny:lora");
  EXPECT_EQ(zero["answer"], base["answer"]);
  EXPECT_NE(with["answer"], base["answer"]);
  auto bad = s.Post("/v1/rag", json{{"collection", "kb"}, {"question", "q"}, {"models", {{"embedding", "tiny:lora"}}}});
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_NE(bad.body.find("response_generation only"), std::string::npos) << bad.body;
}

TEST(RagApiDisabled, NoStageModelIs503NamingTheStage) {
  TempDir dir;
  AppOptions o;
  o.model_flags = {kTinyDense + "=tiny"};
  o.http.port = 0;
  o.rag.store_dir = dir / "store";
  o.models_dir = dir / "models";  // empty: the default catalog names resolve nowhere
  {
    auto store = rag::Store::Open(o.rag.store_dir);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->OpenCollection("kb", "x", 8).ok());
  }
  auto app = App::Create(o, [](const std::string&) {});
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  ASSERT_TRUE((*app)->Start().ok());
  auto r = Call((*app)->port(), "POST", "/v1/rag", json{{"collection", "kb"}, {"question", "q"}}.dump());
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.body.find("stage embedding"), std::string::npos) << r.body;
  o.rag.stage_models["nope"] = "tiny";
  auto bad = App::Create(o, [](const std::string&) {});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown stage"), std::string::npos);
}

// Two calls at once share the model (serialised per file) and both answer; over the cap: 429;
// a call waiting for the model is cancelled when its client leaves.
TEST(RagApiConcurrent, SharedModelCapAndWaitingCancel) {
  RagServer srv(2);
  ASSERT_NE(srv.app, nullptr);
  std::vector<HttpResult> res(2);
  {
    std::thread a([&] { res[0] = srv.Post("/v1/rag", Ask("How do otters sleep?", 8)); });
    std::thread b([&] { res[1] = srv.Post("/v1/rag", Ask("How do otters sleep?", 8)); });
    a.join();
    b.join();
  }
  ASSERT_EQ(res[0].status, 200) << res[0].body;
  ASSERT_EQ(res[1].status, 200) << res[1].body;
  EXPECT_EQ(json::parse(res[0].body)["answer"], json::parse(res[1].body)["answer"]);

  const int64_t cancelled_before = srv.app->service().rag()->cancelled();
  OpenStream first, second;
  ASSERT_TRUE(first.Send(srv.port(), "/v1/rag", Ask("Tell me everything about otters.", 600, true).dump()));
  ASSERT_TRUE(first.ReadUntil("event: delta"));                // running, holding the model
  ASSERT_TRUE(second.Send(srv.port(), "/v1/rag", Ask("And tea?", 600, true).dump()));
  ASSERT_TRUE(srv.WaitRunning(2));                             // waiting for the model
  auto over = srv.Post("/v1/rag", Ask("q", 4));
  EXPECT_EQ(over.status, 429) << over.body;
  EXPECT_FALSE(over.Header("retry-after").empty());
  second.sock.Close();
  first.sock.Close();
  ASSERT_TRUE(srv.WaitRunning(0));
  EXPECT_EQ(srv.app->service().rag()->cancelled(), cancelled_before + 2);
  EXPECT_EQ(srv.Post("/v1/rag", Ask("Why do sea otters hold hands?", 4)).status, 200);
}

// The file served as chat model "tiny" is the RAG answer model too: the manager holds one
// instance (loaded once), used by chat requests and RAG calls in turn.
TEST(RagApiShared, ServedFileIsLoadedOnceForChatAndRag) {
  RagServer srv(2);
  ASSERT_NE(srv.app, nullptr);
  const json chat{{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 3},
                  {"temperature", 0}};
  ASSERT_EQ(srv.Post("/v1/chat/completions", chat).status, 200);
  auto r = srv.Post("/v1/rag", Ask("Why do sea otters hold hands?", 6));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["models"]["response_generation"], "tiny");
  // A chat and a RAG call at once: the RAG call borrows the instance between chat batches.
  HttpResult a, b;
  {
    std::thread t([&] { a = srv.Post("/v1/rag", Ask("How do otters sleep?", 6)); });
    b = srv.Post("/v1/chat/completions", chat);
    t.join();
  }
  EXPECT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(b.status, 200) << b.body;

  orchestrator::ModelManager& manager = srv.app->service().manager();
  const auto snap = manager.Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].name, "tiny");
  EXPECT_EQ(manager.Stats("tiny").loads, 1u);
  // Counted once against the budget; beside it only the process-wide cache of compiled JSON-schema
  // constraints (ModelManager's external bytes), which earlier tests in this process may have filled.
  EXPECT_EQ(manager.in_use_bytes(), snap[0].bytes + ConstraintCacheBytes());
  const json ps = json::parse(qwenmux::testing::Call(srv.port(), "GET", "/api/ps").body);
  ASSERT_EQ(ps["models"].size(), 1u) << ps.dump();
  EXPECT_EQ(ps["models"][0]["name"], "tiny");
}

}  // namespace
}  // namespace qwenmux::server
