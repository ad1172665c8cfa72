// Request fields that steer sampling, sent over HTTP once each and checked against the engine
// called directly with the same settings (an independent path to the expected text): OpenAI
// stop, seed and penalties; Ollama options (repeat_penalty, repeat_last_n, temperature, seed,
// num_predict), keep_alive: 0 and format as a JSON schema.
#include <chrono>
#include <memory>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "engine/engine.h"
#include "server/app.h"
#include "server/http_client.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::ModelPath;

class SamplingHttp : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    AppOptions o;
    o.model_flags = {ModelPath("tiny-dense.q8_0.gguf") + "=tiny"};
    o.http.port = 0;
    o.models.n_ctx = 512;
    o.models.parallel = 1;
    o.models.threads = 1;
    auto app = App::Create(std::move(o), [](const std::string&) {});
    ASSERT_TRUE(app.ok()) << app.status().ToString();
    app_ = std::move(*app).release();
    ASSERT_TRUE(app_->Start().ok());
    engine::LoadOptions lo;
    lo.n_ctx = 512;
    lo.n_threads = 1;
    auto m = engine::Model::Load(ModelPath("tiny-dense.q8_0.gguf"), lo);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::move(*m).release();
  }
  static void TearDownTestSuite() {
    delete app_;
    delete model_;
  }
  static uint16_t port() { return app_->port(); }

  // The engine's text for `prompt` with these sampler settings.
  static std::string Direct(const std::string& prompt, const engine::SamplerOptions& s, int max_tokens,
                            std::vector<std::string> stop = {}) {
    engine::GenerateOptions g;
    g.sampler = s;
    g.max_tokens = max_tokens;
    g.stop = std::move(stop);
    const auto ids = model_->tokenizer().Encode(prompt);
    auto r = model_->Generate(ids, g);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->text : "";
  }
  static engine::SamplerOptions Greedy() {
    engine::SamplerOptions s;
    s.temperature = 0;
    return s;
  }
  static std::string Completion(json req) {
    req["model"] = "tiny";
    auto r = Call(port(), "POST", "/v1/completions", req.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    const json j = json::parse(r.body, nullptr, false);
    return j.is_discarded() ? "" : j["choices"][0]["text"].get<std::string>();
  }

  static App* app_;
  static engine::Model* model_;
};
App* SamplingHttp::app_ = nullptr;
engine::Model* SamplingHttp::model_ = nullptr;

const std::string kPrompt = "The weather today is";

TEST_F(SamplingHttp, OpenAiPenaltiesSeedAndStop) {
  const std::string plain = Completion({{"prompt", kPrompt}, {"max_tokens", 16}, {"temperature", 0}});
  EXPECT_EQ(plain, Direct(kPrompt, Greedy(), 16));
  // Penalties: the engine's text with the same settings, and not the unpenalized one.
  engine::SamplerOptions pen = Greedy();
  pen.frequency_penalty = 2.0f;
  pen.presence_penalty = 2.0f;
  pen.repetition_penalty = 2.0f;
  const std::string penalized = Completion({{"prompt", kPrompt}, {"max_tokens", 16}, {"temperature", 0},
                                            {"frequency_penalty", 2.0}, {"presence_penalty", 2.0},
                                            {"repetition_penalty", 2.0}});
  EXPECT_EQ(penalized, Direct(kPrompt, pen, 16));
  EXPECT_NE(penalized, plain) << "the penalties changed nothing";
  // Seed: temperature 1, the same seed gives the same text, as the engine does; another differs.
  engine::SamplerOptions hot;
  hot.temperature = 1.0f;
  hot.top_k = 0;
  hot.top_p = 1.0f;
  hot.seed = 1234;
  json seeded = {{"prompt", kPrompt}, {"max_tokens", 12}, {"temperature", 1.0}, {"top_k", 0}, {"top_p", 1.0}, {"seed", 1234}};
  const std::string a = Completion(seeded);
  EXPECT_EQ(a, Completion(seeded));
  EXPECT_EQ(a, Direct(kPrompt, hot, 12));
  seeded["seed"] = 99;
  EXPECT_NE(a, Completion(seeded));
  // Stop: cut where a piece of the greedy text first appears, and finish_reason "stop".
  ASSERT_GE(plain.size(), 6u);
  // One whole UTF-8 character from the middle of the text.
  size_t from = plain.size() / 2;
  while (from > 0 && (static_cast<unsigned char>(plain[from]) & 0xC0) == 0x80) --from;
  size_t to = from + 1;
  while (to < plain.size() && (static_cast<unsigned char>(plain[to]) & 0xC0) == 0x80) ++to;
  const std::string stop = plain.substr(from, to - from);
  const size_t at = plain.find(stop);
  auto r = Call(port(), "POST", "/v1/completions",
                json{{"model", "tiny"}, {"prompt", kPrompt}, {"max_tokens", 16}, {"temperature", 0}, {"stop", stop}}.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["choices"][0]["text"], plain.substr(0, at)) << "stop " << stop;
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
}

TEST_F(SamplingHttp, OllamaOptionsKeepAliveAndFormat) {
  // options: repeat_penalty / repeat_last_n / num_predict / temperature map onto the sampler.
  engine::SamplerOptions s = Greedy();
  s.repetition_penalty = 3.0f;
  s.penalty_last_n = 4;
  auto gen = Call(port(), "POST", "/api/generate",
                  json{{"model", "tiny"}, {"prompt", kPrompt}, {"raw", true}, {"stream", false},
                       {"options", {{"temperature", 0}, {"repeat_penalty", 3.0}, {"repeat_last_n", 4}, {"num_predict", 16}}}}
                      .dump());
  ASSERT_EQ(gen.status, 200) << gen.body;
  const json g = json::parse(gen.body);
  EXPECT_EQ(g["eval_count"], 16);
  EXPECT_EQ(g["response"], Direct(kPrompt, s, 16));
  s.penalty_last_n = 0;  // repeat_last_n 0: no window, so no penalty at all
  auto off = Call(port(), "POST", "/api/generate",
                  json{{"model", "tiny"}, {"prompt", kPrompt}, {"raw", true}, {"stream", false},
                       {"options", {{"temperature", 0}, {"repeat_penalty", 3.0}, {"repeat_last_n", 0}, {"num_predict", 16}}}}
                      .dump());
  ASSERT_EQ(off.status, 200) << off.body;
  EXPECT_EQ(json::parse(off.body)["response"], Direct(kPrompt, Greedy(), 16));
  // repeat_last_n -1 (Ollama: the whole context): every token so far is penalised (not refused,
  // not read as "off").
  s.penalty_last_n = 1 << 20;
  auto all = Call(port(), "POST", "/api/generate",
                  json{{"model", "tiny"}, {"prompt", kPrompt}, {"raw", true}, {"stream", false},
                       {"options", {{"temperature", 0}, {"repeat_penalty", 3.0}, {"repeat_last_n", -1}, {"num_predict", 16}}}}
                      .dump());
  ASSERT_EQ(all.status, 200) << all.body;
  EXPECT_EQ(json::parse(all.body)["response"], Direct(kPrompt, s, 16));
  EXPECT_NE(Direct(kPrompt, s, 16), Direct(kPrompt, Greedy(), 16));

  // format as a JSON schema: the answer parses and has the required key of the right type.
  const json schema = {{"type", "object"},
                       {"properties", {{"n", {{"type", "integer"}}}}},
                       {"required", {"n"}},
                       {"additionalProperties", false}};
  auto chat = Call(port(), "POST", "/api/chat",
                   json{{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "A number?"}}}}, {"stream", false},
                        {"think", false}, {"format", schema}, {"options", {{"num_predict", 24}, {"temperature", 0}}}}
                       .dump());
  ASSERT_EQ(chat.status, 200) << chat.body;
  const json answer = json::parse(json::parse(chat.body)["message"]["content"].get<std::string>(), nullptr, false);
  ASSERT_FALSE(answer.is_discarded()) << chat.body;
  ASSERT_TRUE(answer.is_object()) << chat.body;
  EXPECT_TRUE(answer.contains("n") && answer["n"].is_number_integer()) << answer.dump();
  EXPECT_EQ(answer.size(), 1u) << answer.dump();

  // keep_alive: 0 unloads the model once the request is answered.
  auto ka = Call(port(), "POST", "/api/generate",
                 json{{"model", "tiny"}, {"prompt", "Hi"}, {"stream", false}, {"keep_alive", 0},
                      {"options", {{"num_predict", 2}}}}.dump());
  ASSERT_EQ(ka.status, 200) << ka.body;
  bool unloaded = false;
  // The unload follows the answer on the model's worker; poll for it (a loaded CI machine can
  // take seconds to get there, so the deadline is generous; it is not a timing bar).
  for (int i = 0; i < 3000 && !unloaded; ++i) {
    unloaded = json::parse(Call(port(), "GET", "/api/ps").body)["models"].empty();
    if (!unloaded) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(unloaded) << Call(port(), "GET", "/api/ps").body;
}

}  // namespace
}  // namespace qwenmux::server
