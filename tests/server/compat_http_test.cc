// What OpenAI/Ollama clients rely on beyond the basic routes (issue 21, API compatibility): the
// shapes of OpenAI streams (role in the first delta, the usage chunk only when asked), CORS
// preflight headers once each, logit_bias applied (and refused when malformed), the developer
// role, GET /v1/models/{id}, Ollama's legacy /api/embeddings, load/unload with messages: [],
// options.num_ctx, a generation cut off by shutdown reported as such, invalid_request counted,
// and error texts that name the right field.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "gguf/gguf.h"
#include "server/app.h"
#include "server/http_client.h"
#include "tokenizer/tokenizer.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::ModelPath;
using qwenmux::testing::Raw;

AppOptions TinyApp(orchestrator::Metrics* metrics) {
  AppOptions o;
  o.model_flags = {ModelPath("tiny-dense.q8_0.gguf") + "=tiny"};
  o.http.port = 0;
  o.models.n_ctx = 512;
  o.models.parallel = 3;
  o.models.threads = 1;
  o.metrics = metrics;
  return o;
}

json Body(const qwenmux::testing::HttpResult& r) { return json::parse(r.body, nullptr, false); }

// The `data:` payloads of an SSE body, [DONE] included.
std::vector<std::string> SseData(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    out.push_back(body.substr(pos + 6, end - pos - 6));
    pos = end;
  }
  return out;
}

// The value of a counter line `name{labels} value` in a Prometheus text page (0 when absent).
double CounterValue(const std::string& page, const std::string& series) {
  const size_t at = page.find(series + " ");
  if (at == std::string::npos) return 0;
  return std::atof(page.c_str() + at + series.size() + 1);
}

size_t Count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

class CompatHttp : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    metrics_ = new orchestrator::Metrics();
    AppOptions o = TinyApp(metrics_);
    o.http.security.cors_origins = {"https://app.example"};
    auto app = App::Create(std::move(o), [](const std::string&) {});
    ASSERT_TRUE(app.ok()) << app.status().ToString();
    app_ = std::move(*app).release();
    ASSERT_TRUE(app_->Start().ok());
    auto f = gguf::File::Open(ModelPath("tiny-dense.q8_0.gguf"));
    ASSERT_TRUE(f.ok());
    auto t = tokenizer::Tokenizer::FromGguf(*f);
    ASSERT_TRUE(t.ok());
    tok_ = new tokenizer::Tokenizer(std::move(*t));
  }
  static void TearDownTestSuite() {
    delete app_;
    delete metrics_;
    delete tok_;
  }
  static uint16_t port() { return app_->port(); }
  static qwenmux::testing::HttpResult Post(const std::string& path, const json& body) {
    return Call(port(), "POST", path, body.dump());
  }
  static json Chat(const std::string& content, int max_tokens) {
    return json{{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", content}}}},
                {"max_tokens", max_tokens}, {"temperature", 0}};
  }
  // The id of the token whose bytes are the logprobs entry's "bytes".
  static int32_t IdOfBytes(const json& entry) {
    std::string bytes;
    for (const json& b : entry["bytes"]) bytes.push_back(static_cast<char>(b.get<int>()));
    for (int32_t id = 0; id < tok_->vocab_size(); ++id) {
      if (tok_->TokenBytes(id) == bytes) return id;
    }
    return -1;
  }

  static App* app_;
  static orchestrator::Metrics* metrics_;
  static tokenizer::Tokenizer* tok_;
};
App* CompatHttp::app_ = nullptr;
orchestrator::Metrics* CompatHttp::metrics_ = nullptr;
tokenizer::Tokenizer* CompatHttp::tok_ = nullptr;

// Item 1: `for await (c of stream) c.choices[0].delta.content` works on a plain stream.
TEST_F(CompatHttp, OpenAiStreamHasRoleFirstAndUsageOnlyWhenAsked) {
  json req = Chat("Hello", 6);
  req["stream"] = true;
  auto s = Post("/v1/chat/completions", req);
  ASSERT_EQ(s.status, 200) << s.body;
  const auto data = SseData(s.body);
  ASSERT_GE(data.size(), 3u);
  EXPECT_EQ(data.back(), "[DONE]");
  for (size_t i = 0; i + 1 < data.size(); ++i) {
    const json c = json::parse(data[i]);
    ASSERT_TRUE(c["choices"].is_array() && c["choices"].size() == 1) << "chunk " << i << ": " << data[i];
    EXPECT_TRUE(c["choices"][0].contains("delta")) << data[i];
    EXPECT_FALSE(c.contains("usage")) << "usage chunk without stream_options.include_usage: " << data[i];
  }
  const json first = json::parse(data[0]);
  EXPECT_EQ(first["choices"][0]["delta"].value("role", ""), "assistant") << data[0];

  // Asked for: one more chunk with no choices and the usage, before [DONE].
  req["stream_options"] = {{"include_usage", true}};
  auto u = Post("/v1/chat/completions", req);
  ASSERT_EQ(u.status, 200);
  const auto ud = SseData(u.body);
  ASSERT_GE(ud.size(), 3u);
  const json last = json::parse(ud[ud.size() - 2]);
  EXPECT_TRUE(last["choices"].empty()) << ud[ud.size() - 2];
  EXPECT_EQ(last["usage"]["completion_tokens"], 6);

  // Legacy completions: the same rule.
  auto c = Post("/v1/completions", json{{"model", "tiny"}, {"prompt", "Once"}, {"max_tokens", 3}, {"stream", true}});
  ASSERT_EQ(c.status, 200);
  for (const std::string& d : SseData(c.body)) {
    if (d == "[DONE]") continue;
    EXPECT_EQ(json::parse(d)["choices"].size(), 1u) << d;
  }
}

// Item 2: a preflight (and an ordinary answer) carries each CORS header once.
TEST_F(CompatHttp, CorsHeadersAppearOnce) {
  const std::string pre = Raw(port(),
                              "OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://app.example\r\n"
                              "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n"
                              "Connection: close\r\n\r\n",
                              1000);
  ASSERT_EQ(qwenmux::testing::RawStatus(pre), 204) << pre;
  EXPECT_EQ(Count(pre, "Access-Control-Allow-Origin:"), 1u) << pre;
  EXPECT_EQ(Count(pre, "Vary:"), 1u) << pre;
  const std::string get = Raw(port(),
                              "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://app.example\r\n"
                              "Connection: close\r\n\r\n",
                              1000);
  ASSERT_EQ(qwenmux::testing::RawStatus(get), 200) << get;
  EXPECT_EQ(Count(get, "Access-Control-Allow-Origin:"), 1u) << get;
  EXPECT_EQ(Count(get, "Vary:"), 1u) << get;
}

// Item 3: logit_bias changes greedy output (+100 forces a token, -100 bans one) in both OpenAI
// routes; malformed maps are a 400 naming the key.
TEST_F(CompatHttp, LogitBiasIsApplied) {
  json req{{"model", "tiny"}, {"prompt", "The capital of France is"}, {"max_tokens", 1}, {"temperature", 0},
           {"logprobs", true}, {"top_logprobs", 2}};
  auto plain = Post("/v1/completions", req);
  ASSERT_EQ(plain.status, 200) << plain.body;
  const json top = Body(plain)["choices"][0]["logprobs"]["content"][0]["top_logprobs"];
  ASSERT_EQ(top.size(), 2u);
  const int32_t best = IdOfBytes(top[0]), second = IdOfBytes(top[1]);
  ASSERT_GE(best, 0);
  ASSERT_GE(second, 0);
  // Banned: the runner-up wins.
  req["logit_bias"] = {{std::to_string(best), -100}};
  auto banned = Post("/v1/completions", req);
  ASSERT_EQ(banned.status, 200) << banned.body;
  EXPECT_EQ(IdOfBytes(Body(banned)["choices"][0]["logprobs"]["content"][0]), second) << banned.body;
  // Forced: a token the model would not pick, in every position of a greedy chat answer.
  int32_t forced = -1;  // a plain word piece (no spaces or markup the chat parser would touch)
  for (int32_t id = 1000; id < tok_->vocab_size() && forced < 0; ++id) {
    const std::string_view b = tok_->TokenBytes(id);
    if (id != best && b.size() >= 3 && std::all_of(b.begin(), b.end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)); })) {
      forced = id;
    }
  }
  ASSERT_GE(forced, 0);
  json chat = Chat("Hi", 4);
  chat["chat_template_kwargs"] = {{"enable_thinking", false}};
  chat["logit_bias"] = {{std::to_string(forced), 100}};
  auto f = Post("/v1/chat/completions", chat);
  ASSERT_EQ(f.status, 200) << f.body;
  std::string expected;
  for (int i = 0; i < 4; ++i) expected += tok_->TokenBytes(forced);
  EXPECT_EQ(Body(f)["choices"][0]["message"]["content"], expected) << f.body;

  // Malformed: 400, param logit_bias, the key named.
  const std::vector<std::pair<json, std::string>> bad = {
      {json{{"9707", "abc"}}, "9707"},      {json{{"abc", 1}}, "abc"},
      {json{{"99999999", 1}}, "99999999"},  {json{{"-1", 1}}, "-1"},
      {json{{"5", 101}}, "5"},              {json::array({1, 2}), "logit_bias"}};
  for (const auto& [bias, key] : bad) {
    json b = Chat("Hi", 2);
    b["logit_bias"] = bias;
    auto r = Post("/v1/chat/completions", b);
    EXPECT_EQ(r.status, 400) << bias.dump() << " " << r.body;
    EXPECT_EQ(Body(r)["error"]["param"], "logit_bias") << r.body;
    EXPECT_NE(r.body.find(key), std::string::npos) << r.body;
  }
}

// Item 4: the developer role, GET /v1/models/{id}, /api/embeddings, load/unload through
// /api/chat, options.num_ctx.
TEST_F(CompatHttp, DeveloperRoleIsASystemMessage) {
  json sys = Chat("Hi", 4);
  sys["messages"] = {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}};
  json dev = sys;
  dev["messages"][0]["role"] = "developer";
  auto a = Post("/v1/chat/completions", sys), b = Post("/v1/chat/completions", dev);
  ASSERT_EQ(a.status, 200) << a.body;
  ASSERT_EQ(b.status, 200) << b.body;
  EXPECT_EQ(Body(a)["usage"]["prompt_tokens"], Body(b)["usage"]["prompt_tokens"]);
  EXPECT_EQ(Body(a)["choices"][0]["message"], Body(b)["choices"][0]["message"]);
}

TEST_F(CompatHttp, RetrieveOneModel) {
  auto r = Call(port(), "GET", "/v1/models/tiny");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["id"], "tiny");
  EXPECT_EQ(Body(r)["object"], "model");
  EXPECT_TRUE(Body(r)["created"].is_number());
  EXPECT_TRUE(Body(r)["owned_by"].is_string());
  auto n = Call(port(), "GET", "/v1/models/nope");
  EXPECT_EQ(n.status, 404);
  EXPECT_TRUE(Body(n)["error"].is_object()) << n.body;
  EXPECT_NE(Body(n)["error"]["message"].get<std::string>().find("nope"), std::string::npos);
  EXPECT_EQ(Body(n)["error"]["param"], "model");
}

TEST_F(CompatHttp, OllamaLegacyEmbeddings) {
  auto legacy = Post("/api/embeddings", json{{"model", "tiny"}, {"prompt", "hello world"}});
  ASSERT_EQ(legacy.status, 200) << legacy.body;
  auto now = Post("/api/embed", json{{"model", "tiny"}, {"input", "hello world"}});
  ASSERT_EQ(now.status, 200);
  const auto v = Body(legacy)["embedding"].get<std::vector<float>>();
  const auto w = Body(now)["embeddings"][0].get<std::vector<float>>();
  ASSERT_EQ(v.size(), w.size());
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(v[i], w[i], 1e-6);
  EXPECT_EQ(Post("/api/embeddings", json{{"model", "tiny"}}).status, 400);
}

// Item 18 (last part): an embeddings request on a model that is generating a long answer joins
// the running batch (parallel 3) and answers before the generation ends, with the vector the same
// request gets alone.
TEST_F(CompatHttp, EmbeddingsDoNotWaitForALongGeneration) {
  const json embed{{"model", "tiny"}, {"input", "a cup of green tea"}};
  auto alone = Post("/v1/embeddings", embed);
  ASSERT_EQ(alone.status, 200) << alone.body;
  const std::string gen = "qwenmux_generated_tokens_total{model=\"tiny\"}";
  const double before = CounterValue(metrics_->RenderText(), gen);
  // 300 tokens with the end-of-text tokens banned: seconds of decoding on the tiny model.
  const json chat{{"model", "tiny"},
                  {"messages", {{{"role", "user"}, {"content", "Tell me a long story."}}}},
                  {"max_tokens", 300},
                  {"temperature", 0},
                  {"logit_bias", {{"151643", -100}, {"151645", -100}}}};
  std::atomic<bool> generation_done{false};
  qwenmux::testing::HttpResult long_answer;
  std::thread t([&] {
    long_answer = Post("/v1/chat/completions", chat);
    generation_done = true;
  });
  for (int i = 0; i < 6000 && CounterValue(metrics_->RenderText(), gen) < before + 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto joined = Post("/v1/embeddings", embed);
  const bool finished_first = generation_done.load();
  const double generated_then = CounterValue(metrics_->RenderText(), gen) - before;
  t.join();
  ASSERT_EQ(joined.status, 200) << joined.body;
  ASSERT_EQ(long_answer.status, 200) << long_answer.body;
  EXPECT_EQ(Body(long_answer)["usage"]["completion_tokens"], 300) << long_answer.body;
  EXPECT_FALSE(finished_first) << "the embedding waited for the generation";
  EXPECT_LT(generated_then, 300) << "the embedding waited for the generation";
  const auto v = Body(joined)["data"][0]["embedding"].get<std::vector<float>>();
  const auto w = Body(alone)["data"][0]["embedding"].get<std::vector<float>>();
  ASSERT_EQ(v.size(), w.size());
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(v[i], w[i], 1e-6) << i;
}

TEST_F(CompatHttp, OllamaChatWithNoMessagesLoadsAndUnloads) {
  auto ps = [] {
    std::vector<std::string> names;
    const json page = Body(Call(port(), "GET", "/api/ps"));
    for (const json& m : page["models"]) names.push_back(m["name"]);
    return names;
  };
  auto load = Post("/api/chat", json{{"model", "tiny"}, {"messages", json::array()}});
  ASSERT_EQ(load.status, 200) << load.body;
  EXPECT_EQ(Body(load)["done"], true);
  EXPECT_EQ(Body(load)["done_reason"], "load");
  EXPECT_EQ(Body(load)["message"]["role"], "assistant");
  EXPECT_EQ(ps(), std::vector<std::string>{"tiny"});
  auto unload = Post("/api/chat", json{{"model", "tiny"}, {"messages", json::array()}, {"keep_alive", 0}});
  ASSERT_EQ(unload.status, 200) << unload.body;
  EXPECT_EQ(Body(unload)["done_reason"], "unload");
  for (int i = 0; i < 200 && !ps().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(ps().empty());
}

TEST_F(CompatHttp, OllamaNumCtxIsHonouredOrReportedClamped) {
  auto gen = [](int num_ctx, int num_predict, const std::string& prompt) {
    return Post("/api/generate", json{{"model", "tiny"}, {"prompt", prompt}, {"stream", false}, {"think", false},
                                     {"options", {{"num_ctx", num_ctx}, {"num_predict", num_predict}, {"temperature", 0}}}});
  };
  // Within the model's 512: the request's context is num_ctx.
  auto r = gen(48, 200, "Hi");
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = Body(r);
  EXPECT_EQ(j["prompt_eval_count"].get<int>() + j["eval_count"].get<int>(), 48) << r.body;
  EXPECT_EQ(j["done_reason"], "length");
  std::string big;
  for (int i = 0; i < 40; ++i) big += " word";
  auto over = gen(32, 4, big);
  EXPECT_EQ(over.status, 400) << over.body;
  EXPECT_NE(over.body.find("num_ctx"), std::string::npos) << over.body;
  // Above it: served with the model's context, and the answer says so.
  auto clamped = gen(100000, 2, "Hi");
  ASSERT_EQ(clamped.status, 200) << clamped.body;
  EXPECT_EQ(Body(clamped)["qwenmux"]["num_ctx"]["requested"], 100000) << clamped.body;
  EXPECT_EQ(Body(clamped)["qwenmux"]["num_ctx"]["applied"], 512) << clamped.body;
}

// Item 6: a 400 on a named model is counted.
TEST_F(CompatHttp, InvalidRequestsAreCounted) {
  const std::string series = "qwenmux_requests_failed_total{model=\"tiny\",reason=\"invalid_request\"}";
  const double before = CounterValue(metrics_->RenderText(), series);
  json bad = Chat("x", 2);
  bad["temperature"] = "hot";
  EXPECT_EQ(Post("/v1/chat/completions", bad).status, 400);
  EXPECT_EQ(Post("/api/generate", json{{"model", "tiny"}, {"prompt", "x"}, {"options", {{"num_predict", "many"}}}}).status,
            400);
  EXPECT_EQ(Post("/v1/embeddings", json{{"model", "tiny"}, {"input", json::array()}}).status, 400);
  EXPECT_EQ(CounterValue(metrics_->RenderText(), series), before + 3);
  // Not a served model: no series for the name a client made up.
  json unknown = Chat("x", 2);
  unknown["model"] = "nope";
  unknown["temperature"] = "hot";
  EXPECT_EQ(Post("/v1/chat/completions", unknown).status, 400);
  EXPECT_EQ(CounterValue(metrics_->RenderText(), series), before + 3);
  EXPECT_EQ(metrics_->RenderText().find("model=\"nope\""), std::string::npos);
}

// Item 7: error texts.
TEST_F(CompatHttp, ErrorTextsNameTheRightThing) {
  json nope = Chat("x", 2);
  nope["model"] = "nope";
  auto a = Post("/v1/chat/completions", nope);
  ASSERT_EQ(a.status, 404);
  const std::string msg = Body(a)["error"]["message"];
  EXPECT_EQ(Count(msg, "nope"), 1u) << msg;
  EXPECT_EQ(Count(msg, "tiny"), 1u) << msg;
  json lat = Chat("x", 2);
  lat["latency"] = "sometime";
  auto l = Post("/v1/chat/completions", lat);
  EXPECT_EQ(l.status, 400);
  EXPECT_EQ(Body(l)["error"]["param"], "latency") << l.body;
  for (int n : {1000000, 0}) {
    auto o = Post("/api/generate", json{{"model", "tiny"}, {"prompt", "x"}, {"options", {{"num_predict", n}}}});
    EXPECT_EQ(o.status, 400);
    EXPECT_NE(o.body.find("num_predict"), std::string::npos) << o.body;
    EXPECT_EQ(o.body.find("max_tokens"), std::string::npos) << o.body;
  }
}

// Item 8 (part): a constrained request that chose no thinking gets a bounded thinking budget
// (a quarter of max_tokens), so the answer is not crowded out by Qwen3's default thinking.
TEST_F(CompatHttp, ConstrainedRequestsThinkWithinABudget) {
  json req = Chat("Give me JSON", 120);
  req["response_format"] = {{"type", "json_object"}};
  auto r = Post("/v1/chat/completions", req);
  ASSERT_EQ(r.status, 200) << r.body;
  const json msg = Body(r)["choices"][0]["message"];
  ASSERT_TRUE(msg["content"].is_string()) << r.body;
  EXPECT_FALSE(msg["content"].get<std::string>().empty()) << r.body;
  EXPECT_EQ(msg["content"].get<std::string>().front(), '{') << r.body;
  // The thinking part stayed within the budget (re-encoded text: about the tokens generated).
  EXPECT_LE(tok_->Encode(msg.value("reasoning_content", "")).size(), 30u + 8u) << r.body;
  auto o = Post("/api/chat", json{{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "JSON"}}}}, {"stream", false},
                                  {"format", "json"}, {"options", {{"num_predict", 120}, {"temperature", 0}}}});
  ASSERT_EQ(o.status, 200) << o.body;
  EXPECT_FALSE(Body(o)["message"]["content"].get<std::string>().empty()) << o.body;
}

// Item 5: generations cut off by shutdown end as errors, not as "stop", and are counted.
TEST(CompatShutdown, CutOffGenerationsAreNotReportedAsStop) {
  orchestrator::Metrics metrics;
  AppOptions o = TinyApp(&metrics);
  o.shutdown_grace = std::chrono::milliseconds(100);
  auto app = App::Create(std::move(o), [](const std::string&) {});
  ASSERT_TRUE(app.ok());
  ASSERT_TRUE((*app)->Start().ok());
  const uint16_t port = (*app)->port();
  const json chat{{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "Go"}}}}, {"max_tokens", 4000}};
  qwenmux::testing::HttpResult openai_stream, ollama_stream, openai_whole;
  json s = chat;
  s["stream"] = true;
  std::thread t1([&] { openai_stream = Call(port, "POST", "/v1/chat/completions", s.dump()); });
  std::thread t2([&] {
    ollama_stream = Call(port, "POST", "/api/chat",
                         json{{"model", "tiny"}, {"messages", chat["messages"]}, {"options", {{"num_predict", 4000}}}}.dump());
  });
  std::thread t3([&] { openai_whole = Call(port, "POST", "/v1/chat/completions", chat.dump()); });
  const std::string gen = "qwenmux_generated_tokens_total{model=\"tiny\"}";
  auto& sched = (*app)->service().scheduler();
  for (int i = 0; i < 3000 && (sched.QueueDepth("tiny") < 3 || CounterValue(metrics.RenderText(), gen) < 30); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(sched.QueueDepth("tiny"), 3);
  (*app)->Shutdown();
  t1.join();
  t2.join();
  t3.join();
  // OpenAI stream: an error event the clients raise, then [DONE]; no finish_reason "stop".
  ASSERT_EQ(openai_stream.status, 200);
  EXPECT_EQ(openai_stream.body.find("\"finish_reason\":\"stop\""), std::string::npos) << openai_stream.body;
  const auto data = SseData(openai_stream.body);
  ASSERT_GE(data.size(), 2u);
  EXPECT_EQ(data.back(), "[DONE]");
  EXPECT_TRUE(json::parse(data[data.size() - 2]).contains("error")) << data[data.size() - 2];
  // Ollama stream: the last line is an error, never done_reason "stop".
  ASSERT_EQ(ollama_stream.status, 200);
  EXPECT_EQ(ollama_stream.body.find("\"done_reason\":\"stop\""), std::string::npos) << ollama_stream.body;
  const size_t last = ollama_stream.body.rfind('\n', ollama_stream.body.size() - 2);
  EXPECT_TRUE(json::parse(ollama_stream.body.substr(last + 1)).contains("error")) << ollama_stream.body;
  // Not streamed: an error status (retry later), not a 200 with "stop".
  EXPECT_EQ(openai_whole.status, 503) << openai_whole.body;
  EXPECT_TRUE(Body(openai_whole)["error"].is_object()) << openai_whole.body;
  EXPECT_EQ(CounterValue(metrics.RenderText(), "qwenmux_requests_failed_total{model=\"tiny\",reason=\"cancelled\"}"), 3);
}

// Item 8: `thinking: false` under a model in qwenmux.yaml: chat requests that do not choose answer
// without thinking (all text in content, none in reasoning); a request's own choice still wins.
// The same file under another name keeps Qwen3's default (the tiny model never closes </think>,
// so its text stays in reasoning).
TEST(CompatHttpConfig, ThinkingSwitchedOffPerModelInTheConfig) {
  const std::string dir = ::testing::TempDir() + "/qwenmux-thinking-config";
  std::filesystem::create_directories(dir);
  const std::string cfg = dir + "/qwenmux.yaml";
  {
    std::ofstream f(cfg);
    f << "models:\n"
      << "  - file: " << ModelPath("tiny-dense.q8_0.gguf") << "\n    name: plain\n    context: 256\n    thinking: false\n"
      << "  - file: " << ModelPath("tiny-dense.q8_0.gguf") << "\n    name: thinker\n    context: 256\n";
  }
  AppOptions o;
  o.config_path = cfg;
  o.http.port = 0;
  o.models.threads = 1;
  auto app = App::Create(std::move(o), [](const std::string&) {});
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  ASSERT_TRUE((*app)->Start().ok());
  const uint16_t port = (*app)->port();
  auto chat = [&](const std::string& model, std::optional<bool> think) {
    json req = {{"model", model}, {"messages", {{{"role", "user"}, {"content", "Hello"}}}}, {"max_tokens", 8}, {"temperature", 0}};
    if (think) req["chat_template_kwargs"] = {{"enable_thinking", *think}};
    auto r = Call(port, "POST", "/v1/chat/completions", req.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return Body(r)["choices"][0]["message"];
  };
  const json plain = chat("plain", std::nullopt);
  EXPECT_FALSE(plain.value("content", "").empty()) << plain;
  EXPECT_TRUE(plain.value("reasoning_content", "").empty()) << plain;
  const json thinker = chat("thinker", std::nullopt);
  EXPECT_FALSE(thinker.value("reasoning_content", "").empty()) << thinker;
  const json chosen = chat("plain", true);  // the request's choice wins over the config
  EXPECT_FALSE(chosen.value("reasoning_content", "").empty()) << chosen;
  // Ollama without `think`: the model's setting applies there too.
  auto o2 = Call(port, "POST", "/api/chat",
                 json{{"model", "plain"}, {"messages", {{{"role", "user"}, {"content", "Hello"}}}}, {"stream", false},
                      {"options", {{"num_predict", 8}, {"temperature", 0}}}}.dump());
  ASSERT_EQ(o2.status, 200) << o2.body;
  EXPECT_FALSE(Body(o2)["message"].value("content", "").empty()) << o2.body;
  EXPECT_FALSE(Body(o2)["message"].contains("thinking")) << o2.body;
  (*app)->Shutdown();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace qwenmux::server
