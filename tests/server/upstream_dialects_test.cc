// Other engines as routed backends (issue 18): translation between the dialects over HTTP. A
// second qwenmux in-process is the upstream, reached through a front server as "up/tiny"
// (OpenAI dialect) and "upo/tiny" (Ollama dialect). A client of one dialect asking the backend
// of the other gets the same greedy answer as asking the upstream directly in its own dialect:
// chat plain and streamed (thinking, usage), response_format <-> format, tools, think, and
// embeddings, completions (/v1/completions <-> /api/generate, raw or templated) and rerank.
// Backend URLs come only from configuration.
#include <chrono>
#include <map>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "server/app.h"
#include "server/http_client.h"
#include "server/upstream_fixture.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::ModelPath;

json Messages() { return json::array({json{{"role", "user"}, {"content", "Name three colours."}}}); }

// What an OpenAI SSE stream said: text, reasoning, usage, the model named, [DONE].
struct Sse {
  std::string content, reasoning, finish, model, error;
  json usage, tool_calls = json::array();
  bool done = false;
};
Sse ReadSse(const std::string& body) {
  Sse out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string::npos) end = body.size();
    const std::string line = body.substr(pos, end - pos);
    pos = end + 1;
    if (!line.starts_with("data: ")) continue;
    if (line == "data: [DONE]") {
      out.done = true;
      continue;
    }
    const json j = json::parse(line.substr(6));
    if (j.contains("error")) out.error = j["error"].value("message", "");
    if (j.contains("model")) out.model = j["model"];
    if (j.contains("usage") && j["usage"].is_object()) out.usage = j["usage"];
    if (!j.contains("choices") || j["choices"].empty()) continue;
    const json& c = j["choices"][0];
    if (c.contains("finish_reason") && c["finish_reason"].is_string()) out.finish = c["finish_reason"];
    const json& d = c["delta"];
    if (d.contains("content") && d["content"].is_string()) out.content += d["content"].get<std::string>();
    if (d.contains("reasoning_content") && d["reasoning_content"].is_string())
      out.reasoning += d["reasoning_content"].get<std::string>();
    if (d.contains("tool_calls")) for (const json& t : d["tool_calls"]) out.tool_calls.push_back(t);
  }
  return out;
}

// What an Ollama NDJSON stream said: text, thinking, tool calls, and its last (done) line.
struct Ndjson {
  std::string content, thinking;
  json tool_calls = json::array(), last;
  size_t lines = 0;
};
Ndjson ReadNdjson(const std::string& body) {
  Ndjson out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string::npos) end = body.size();
    const std::string line = body.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    const json j = json::parse(line);
    ++out.lines;
    if (j.contains("message")) {
      out.content += j["message"].value("content", "");
      out.thinking += j["message"].value("thinking", "");
      if (j["message"].contains("tool_calls")) for (const json& t : j["message"]["tool_calls"]) out.tool_calls.push_back(t);
    }
    if (j.value("done", false)) out.last = j;
  }
  return out;
}

// Tool calls without their ids (generated on each side).
json WithoutIds(json calls) {
  for (json& c : calls) c.erase("id");
  return calls;
}

json Tools() {
  return json::array({json{{"type", "function"},
                           {"function", {{"name", "get_weather"}, {"description", "The weather in a city"},
                                         {"parameters", {{"type", "object"},
                                                         {"properties", {{"city", {{"type", "string"}}}}},
                                                         {"required", {"city"}}}}}}}});
}

json Schema() {
  return json{{"type", "object"}, {"properties", {{"colour", {{"type", "string"}}}}}, {"required", {"colour"}}};
}

class UpstreamDialects : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    upstream_ = qwenmux::testing::StartTinyUpstream(512).release();
    ASSERT_NE(upstream_, nullptr);
    const std::string url = qwenmux::testing::LoopbackUrl(upstream_->port());
    AppOptions fo;
    fo.backend_flags = {"up=" + url, "upo=" + url + ",ollama"};
    fo.http.port = 0;
    auto front = App::Create(std::move(fo), [](const std::string&) {});
    ASSERT_TRUE(front.ok()) << front.status().ToString();
    front_ = std::move(*front).release();
    ASSERT_TRUE(front_->Start().ok());
    qwenmux::testing::WaitUntil([] {
      const std::string body = Call(front_->port(), "GET", "/v1/models").body;
      return body.find("\"up/tiny\"") != std::string::npos && body.find("\"upo/tiny\"") != std::string::npos;
    });
  }
  static void TearDownTestSuite() {
    delete front_;
    delete upstream_;
  }
  static uint16_t front() { return front_->port(); }
  static uint16_t upstream() { return upstream_->port(); }
  static json Ok(const testing::HttpResult& r) {
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body, nullptr, false);
  }
  static App* upstream_;
  static App* front_;
};
App* UpstreamDialects::upstream_ = nullptr;
App* UpstreamDialects::front_ = nullptr;

// OpenAI client, Ollama backend, streamed: the same text, reasoning and usage as the upstream's
// own OpenAI stream.
TEST_F(UpstreamDialects, StreamedOpenAiChatThroughAnOllamaBackend) {
  json req{{"model", "tiny"}, {"messages", Messages()}, {"max_tokens", 16}, {"temperature", 0}, {"stream", true},
           {"stream_options", {{"include_usage", true}}}};
  const auto direct = Call(upstream(), "POST", "/v1/chat/completions", req.dump());
  req["model"] = "upo/tiny";
  const auto proxied = Call(front(), "POST", "/v1/chat/completions", req.dump());
  ASSERT_EQ(proxied.status, 200) << proxied.body;
  EXPECT_NE(proxied.Header("content-type").find("text/event-stream"), std::string::npos);
  const Sse d = ReadSse(direct.body), p = ReadSse(proxied.body);
  EXPECT_TRUE(p.done);
  EXPECT_EQ(p.error, "");
  EXPECT_EQ(p.model, "upo/tiny");
  EXPECT_FALSE((d.content + d.reasoning).empty());
  EXPECT_EQ(p.content, d.content);
  EXPECT_EQ(p.reasoning, d.reasoning);
  EXPECT_EQ(p.finish, d.finish);
  ASSERT_TRUE(p.usage.is_object()) << proxied.body;
  EXPECT_EQ(p.usage["completion_tokens"], d.usage["completion_tokens"]);
  EXPECT_EQ(p.usage["prompt_tokens"], d.usage["prompt_tokens"]);
}

// Ollama client, OpenAI backend: plain and streamed, the same as the upstream's own /api/chat.
TEST_F(UpstreamDialects, OllamaChatThroughAnOpenAiBackend) {
  for (const bool think : {true, false}) {
    json req{{"model", "tiny"}, {"messages", Messages()}, {"stream", false}, {"think", think},
             {"options", {{"temperature", 0}, {"num_predict", 16}}}};
    const json d = Ok(Call(upstream(), "POST", "/api/chat", req.dump()));
    req["model"] = "up/tiny";
    const json p = Ok(Call(front(), "POST", "/api/chat", req.dump()));
    EXPECT_EQ(p["model"], "up/tiny");
    EXPECT_EQ(p["done"], true);
    EXPECT_EQ(p["message"].value("content", ""), d["message"].value("content", "")) << think;
    EXPECT_EQ(p["message"].value("thinking", ""), d["message"].value("thinking", "")) << think;
    EXPECT_EQ(p["eval_count"], d["eval_count"]);
    EXPECT_EQ(p["prompt_eval_count"], d["prompt_eval_count"]);
    EXPECT_EQ(p["done_reason"], d["done_reason"]);
    if (!think) {
      EXPECT_EQ(p["message"].value("thinking", ""), "");
    }

    req.erase("stream");  // Ollama streams by default
    const auto ps = Call(front(), "POST", "/api/chat", req.dump());
    ASSERT_EQ(ps.status, 200) << ps.body;
    EXPECT_NE(ps.Header("content-type").find("ndjson"), std::string::npos);
    req["model"] = "tiny";
    const Ndjson ds = ReadNdjson(Call(upstream(), "POST", "/api/chat", req.dump()).body), s = ReadNdjson(ps.body);
    EXPECT_EQ(s.content, ds.content);
    EXPECT_EQ(s.thinking, ds.thinking);
    EXPECT_FALSE((ds.content + ds.thinking).empty());
    ASSERT_TRUE(s.last.is_object()) << ps.body;
    EXPECT_EQ(s.last["eval_count"], ds.last["eval_count"]);
    EXPECT_EQ(s.last["done_reason"], ds.last["done_reason"]);
    EXPECT_EQ(s.last["model"], "up/tiny");
  }
}

// response_format -> format and format -> response_format: the upstream constrains its answer
// the same way as when asked directly.
TEST_F(UpstreamDialects, StructuredOutputCarriesOver) {
  json oa{{"model", "tiny"}, {"messages", Messages()}, {"max_tokens", 24}, {"temperature", 0},
          {"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "c"}, {"schema", Schema()}}}}}};
  const json d = Ok(Call(upstream(), "POST", "/v1/chat/completions", oa.dump()));
  oa["model"] = "upo/tiny";
  const json p = Ok(Call(front(), "POST", "/v1/chat/completions", oa.dump()));
  EXPECT_EQ(p["choices"][0]["message"]["content"], d["choices"][0]["message"]["content"]);
  EXPECT_TRUE(d["choices"][0]["message"]["content"].get<std::string>().starts_with("{")) << d.dump();

  json ol{{"model", "tiny"}, {"messages", Messages()}, {"stream", false}, {"format", Schema()},
          {"options", {{"temperature", 0}, {"num_predict", 24}}}};
  const json od = Ok(Call(upstream(), "POST", "/api/chat", ol.dump()));
  ol["model"] = "up/tiny";
  const json op = Ok(Call(front(), "POST", "/api/chat", ol.dump()));
  EXPECT_EQ(op["message"]["content"], od["message"]["content"]);
  ol["format"] = "json";
  ol["model"] = "tiny";
  const json jd = Ok(Call(upstream(), "POST", "/api/chat", ol.dump()));
  ol["model"] = "up/tiny";
  EXPECT_EQ(Ok(Call(front(), "POST", "/api/chat", ol.dump()))["message"]["content"], jd["message"]["content"]);
}

// Tools: the request's tools reach the upstream in its dialect; whatever it answers (text or
// calls) comes back the same, streamed and plain.
TEST_F(UpstreamDialects, ToolsCarryOver) {
  const json msgs = json::array({json{{"role", "user"}, {"content", "What is the weather in Paris?"}}});
  json oa{{"model", "tiny"}, {"messages", msgs}, {"tools", Tools()}, {"max_tokens", 24}, {"temperature", 0}};
  const json d = Ok(Call(upstream(), "POST", "/v1/chat/completions", oa.dump()));
  oa["model"] = "upo/tiny";
  const json p = Ok(Call(front(), "POST", "/v1/chat/completions", oa.dump()));
  const json& dm = d["choices"][0]["message"];
  const json& pm = p["choices"][0]["message"];
  EXPECT_EQ(pm.value("content", json()), dm.value("content", json()));
  EXPECT_EQ(WithoutIds(pm.value("tool_calls", json::array())), WithoutIds(dm.value("tool_calls", json::array())));
  EXPECT_EQ(p["choices"][0]["finish_reason"], d["choices"][0]["finish_reason"]);

  json ol{{"model", "tiny"}, {"messages", msgs}, {"tools", Tools()}, {"options", {{"temperature", 0}, {"num_predict", 24}}}};
  const Ndjson ds = ReadNdjson(Call(upstream(), "POST", "/api/chat", ol.dump()).body);
  ol["model"] = "up/tiny";
  const Ndjson ps = ReadNdjson(Call(front(), "POST", "/api/chat", ol.dump()).body);
  EXPECT_EQ(ps.content, ds.content);
  EXPECT_EQ(WithoutIds(ps.tool_calls), WithoutIds(ds.tool_calls));
  ASSERT_TRUE(ps.last.is_object());
}

TEST_F(UpstreamDialects, EmbeddingsBothWays) {
  json oa{{"model", "tiny"}, {"input", json::array({"hello world", "bonjour"})}};
  const json d = Ok(Call(upstream(), "POST", "/v1/embeddings", oa.dump()));
  oa["model"] = "upo/tiny";
  const json p = Ok(Call(front(), "POST", "/v1/embeddings", oa.dump()));
  ASSERT_EQ(p["data"].size(), 2u) << p.dump().substr(0, 300);
  EXPECT_EQ(p["model"], "upo/tiny");
  for (size_t k = 0; k < 2; ++k) {
    const auto a = p["data"][k]["embedding"].get<std::vector<float>>(), b = d["data"][k]["embedding"].get<std::vector<float>>();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_FLOAT_EQ(a[i], b[i]);
  }
  EXPECT_EQ(p["usage"]["prompt_tokens"], d["usage"]["prompt_tokens"]);

  json ol{{"model", "tiny"}, {"input", json::array({"hello world", "bonjour"})}};
  const json od = Ok(Call(upstream(), "POST", "/api/embed", ol.dump()));
  ol["model"] = "up/tiny";
  const json op = Ok(Call(front(), "POST", "/api/embed", ol.dump()));
  EXPECT_EQ(op["model"], "up/tiny");
  ASSERT_EQ(op["embeddings"].size(), 2u);
  for (size_t k = 0; k < 2; ++k) {
    const auto a = op["embeddings"][k].get<std::vector<float>>(), b = od["embeddings"][k].get<std::vector<float>>();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_FLOAT_EQ(a[i], b[i]);
  }
  const json legacy = Ok(Call(front(), "POST", "/api/embeddings", json{{"model", "up/tiny"}, {"prompt", "hello world"}}.dump()));
  const json legacy_d = Ok(Call(upstream(), "POST", "/api/embeddings", json{{"model", "tiny"}, {"prompt", "hello world"}}.dump()));
  EXPECT_EQ(legacy["embedding"].size(), legacy_d["embedding"].size());
  EXPECT_EQ(legacy["embedding"], legacy_d["embedding"]);
}

// The text of an OpenAI text_completion SSE stream, its finish_reason and usage.
struct CompletionStream {
  std::string text, finish, model;
  json usage;
  bool done = false;
};
CompletionStream ReadCompletionSse(const std::string& body) {
  CompletionStream out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string::npos) end = body.size();
    const std::string line = body.substr(pos, end - pos);
    pos = end + 1;
    if (!line.starts_with("data: ")) continue;
    if (line == "data: [DONE]") {
      out.done = true;
      continue;
    }
    const json j = json::parse(line.substr(6));
    EXPECT_EQ(j.value("object", ""), "text_completion") << line;
    if (j.contains("model")) out.model = j["model"];
    if (j.contains("usage") && j["usage"].is_object()) out.usage = j["usage"];
    if (!j.contains("choices") || j["choices"].empty()) continue;
    const json& c = j["choices"][0];
    out.text += c.value("text", "");
    if (c.contains("finish_reason") && c["finish_reason"].is_string()) out.finish = c["finish_reason"];
  }
  return out;
}

// /api/generate's concatenated response and thinking, and its last line.
struct GenerateStream {
  std::string response, thinking;
  json last;
};
GenerateStream ReadGenerateNdjson(const std::string& body) {
  GenerateStream out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string::npos) end = body.size();
    const std::string line = body.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    const json j = json::parse(line);
    EXPECT_FALSE(j.contains("message")) << line;
    out.response += j.value("response", "");
    out.thinking += j.value("thinking", "");
    if (j.value("done", false)) out.last = j;
  }
  return out;
}

// OpenAI /v1/completions through an Ollama backend (its /api/generate, raw): the same text,
// finish reason and usage as the upstream's own /v1/completions, plain and streamed.
TEST_F(UpstreamDialects, CompletionsThroughAnOllamaBackend) {
  json req{{"model", "tiny"}, {"prompt", "The colours of the rainbow are"}, {"max_tokens", 12}, {"temperature", 0}};
  const json d = Ok(Call(upstream(), "POST", "/v1/completions", req.dump()));
  req["model"] = "upo/tiny";
  const json p = Ok(Call(front(), "POST", "/v1/completions", req.dump()));
  EXPECT_EQ(p["object"], "text_completion");
  EXPECT_EQ(p["model"], "upo/tiny");
  EXPECT_FALSE(d["choices"][0]["text"].get<std::string>().empty());
  EXPECT_EQ(p["choices"][0]["text"], d["choices"][0]["text"]);
  EXPECT_EQ(p["choices"][0]["finish_reason"], d["choices"][0]["finish_reason"]);
  EXPECT_EQ(p["usage"]["completion_tokens"], d["usage"]["completion_tokens"]);
  EXPECT_EQ(p["usage"]["prompt_tokens"], d["usage"]["prompt_tokens"]);

  req["stream"] = true;
  req["stream_options"] = {{"include_usage", true}};
  const auto ps = Call(front(), "POST", "/v1/completions", req.dump());
  ASSERT_EQ(ps.status, 200) << ps.body;
  EXPECT_NE(ps.Header("content-type").find("text/event-stream"), std::string::npos);
  req["model"] = "tiny";
  const CompletionStream ds = ReadCompletionSse(Call(upstream(), "POST", "/v1/completions", req.dump()).body),
                         s = ReadCompletionSse(ps.body);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.model, "upo/tiny");
  EXPECT_EQ(s.text, ds.text);
  EXPECT_EQ(s.text, d["choices"][0]["text"]);
  EXPECT_EQ(s.finish, ds.finish);
  ASSERT_TRUE(s.usage.is_object()) << ps.body;
  EXPECT_EQ(s.usage["completion_tokens"], ds.usage["completion_tokens"]);
}

// Ollama /api/generate through an OpenAI backend: with its template (to /v1/chat/completions)
// and raw (to /v1/completions), plain and streamed, the same as the upstream's own /api/generate.
TEST_F(UpstreamDialects, GenerateThroughAnOpenAiBackend) {
  for (const bool raw : {false, true}) {
    json req{{"model", "tiny"}, {"prompt", "Name three colours."}, {"stream", false}, {"raw", raw},
             {"options", {{"temperature", 0}, {"num_predict", 16}}}};
    if (!raw) req["system"] = "You answer briefly.";
    const json d = Ok(Call(upstream(), "POST", "/api/generate", req.dump()));
    req["model"] = "up/tiny";
    const json p = Ok(Call(front(), "POST", "/api/generate", req.dump()));
    EXPECT_EQ(p["model"], "up/tiny");
    EXPECT_EQ(p["done"], true);
    EXPECT_FALSE(p.contains("message")) << p.dump();
    EXPECT_FALSE((d.value("response", "") + d.value("thinking", "")).empty()) << raw;
    EXPECT_EQ(p.value("response", ""), d.value("response", "")) << raw;
    EXPECT_EQ(p.value("thinking", ""), d.value("thinking", "")) << raw;
    EXPECT_EQ(p["eval_count"], d["eval_count"]) << raw;
    EXPECT_EQ(p["prompt_eval_count"], d["prompt_eval_count"]) << raw;
    EXPECT_EQ(p["done_reason"], d["done_reason"]) << raw;

    req.erase("stream");  // Ollama streams by default
    const auto ps = Call(front(), "POST", "/api/generate", req.dump());
    ASSERT_EQ(ps.status, 200) << ps.body;
    EXPECT_NE(ps.Header("content-type").find("ndjson"), std::string::npos);
    req["model"] = "tiny";
    const GenerateStream ds = ReadGenerateNdjson(Call(upstream(), "POST", "/api/generate", req.dump()).body),
                         s = ReadGenerateNdjson(ps.body);
    EXPECT_EQ(s.response, ds.response) << raw;
    EXPECT_EQ(s.thinking, ds.thinking) << raw;
    ASSERT_TRUE(s.last.is_object()) << ps.body;
    EXPECT_EQ(s.last["model"], "up/tiny");
    EXPECT_EQ(s.last["eval_count"], ds.last["eval_count"]) << raw;
    EXPECT_EQ(s.last["done_reason"], ds.last["done_reason"]) << raw;
  }
}

// Rerank goes to a backend's /v1/rerank as it is (another qwenmux has it in either dialect): the
// upstream's own scores; what cannot be translated is a 400 naming the backend.
TEST_F(UpstreamDialects, RerankAndUntranslatableRequests) {
  const json req{{"model", "tiny"}, {"query", "capital of France"},
                 {"documents", json::array({"Paris is the capital of France", "Bananas are yellow", "Berlin"})}};
  const json d = Ok(Call(upstream(), "POST", "/v1/rerank", req.dump()));
  ASSERT_EQ(d["results"].size(), 3u) << d.dump();
  for (const std::string backend : {"up", "upo"}) {
    json to = req;
    to["model"] = backend + "/tiny";
    const json p = Ok(Call(front(), "POST", "/v1/rerank", to.dump()));
    EXPECT_EQ(p["model"], backend + "/tiny");
    EXPECT_EQ(p["results"], d["results"]) << backend;
  }
  // Token-id prompts have no /api/generate form; images and context no OpenAI one.
  const auto ids = Call(front(), "POST", "/v1/completions",
                        json{{"model", "upo/tiny"}, {"prompt", json::array({1, 2, 3})}, {"max_tokens", 2}}.dump());
  EXPECT_EQ(ids.status, 400) << ids.body;
  EXPECT_NE(ids.body.find("backend upo: prompt: only a text prompt"), std::string::npos) << ids.body;
  const auto img = Call(front(), "POST", "/api/generate",
                        json{{"model", "up/tiny"}, {"prompt", "What is this?"}, {"images", json::array({"aGVsbG8="})}}.dump());
  EXPECT_EQ(img.status, 400) << img.body;
  EXPECT_NE(json::parse(img.body)["error"].get<std::string>().find("backend up: images:"), std::string::npos) << img.body;
}

// Where a request goes is decided by the configuration only: a URL in the model name or in a
// body field does not redirect it.
TEST_F(UpstreamDialects, BackendUrlsComeOnlyFromConfiguration) {
  for (const std::string model : {"http://127.0.0.1:1/x", "127.0.0.1:1/x", "evil/tiny"}) {
    const auto r = Call(front(), "POST", "/v1/chat/completions",
                        json{{"model", model}, {"messages", Messages()}, {"max_tokens", 2}}.dump());
    EXPECT_EQ(r.status, 404) << model << ": " << r.body;
  }
  const json p = Ok(Call(front(), "POST", "/v1/chat/completions",
                         json{{"model", "up/tiny"}, {"messages", Messages()}, {"max_tokens", 2}, {"base_url", "http://127.0.0.1:1"},
                              {"url", "http://127.0.0.1:1"}, {"backend", "http://127.0.0.1:1"}}.dump()));
  EXPECT_EQ(p["model"], "up/tiny");
}

}  // namespace
}  // namespace qwenmux::server
