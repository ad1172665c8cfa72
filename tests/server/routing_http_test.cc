// Over HTTP: `auto` routing across two served models (a fast and a quality tier) follows the
// request's complexity and the X-Qwenmux-Latency header (the body's `latency` field wins over the
// header; a bad header is a 400 naming it), in the OpenAI and Ollama dialects; and /health answers
// 503 with Retry-After while the preload is still loading, then 200.
#include <chrono>
#include <fstream>
#include <future>
#include <memory>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "engine/engine.h"
#include "orchestrator/temp_dir.h"
#include "server/app.h"
#include "server/http_client.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::ModelPath;

// Code, math and reasoning markers with thinking on: complexity 4 ("complex"), which wants the
// quality tier.
const char* kHardPrompt = "Prove that the loop terminates, step by step: ```def f(n):\n    while n > 1: n //= 2```";

json Chat(const std::string& content, bool thinking) {
  return json{{"model", "auto"},
              {"messages", json::array({json{{"role", "user"}, {"content", content}}})},
              {"max_tokens", 2},
              {"temperature", 0},
              {"chat_template_kwargs", {{"enable_thinking", thinking}}}};
}

class ServerRouting : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    AppOptions o;
    o.model_flags = {ModelPath("tiny-dense.q8_0.gguf") + "=qwen3-fast", ModelPath("tiny-moe.q4_k_m.gguf") + "=qwen3-quality"};
    o.http.port = 0;
    o.models.n_ctx = 256;
    o.models.threads = 1;
    auto app = App::Create(std::move(o), [](const std::string&) {});
    ASSERT_TRUE(app.ok()) << app.status().ToString();
    app_ = std::move(*app).release();
    ASSERT_TRUE(app_->Start().ok());
  }
  static void TearDownTestSuite() {
    delete app_;
    app_ = nullptr;
  }
  static uint16_t port() { return app_->port(); }
  static App* app_;
};
App* ServerRouting::app_ = nullptr;

TEST_F(ServerRouting, AutoFollowsComplexityAndTheLatencyHeader) {
  // A complex request with no latency wish: the quality tier, for its complexity.
  auto hard = Call(port(), "POST", "/v1/chat/completions", Chat(kHardPrompt, true).dump());
  ASSERT_EQ(hard.status, 200) << hard.body;
  EXPECT_EQ(hard.Header("x-qwenmux-model"), "qwen3-quality");
  EXPECT_EQ(hard.Header("x-qwenmux-route"), "complexity") << hard.Header("x-qwenmux-route-explanation");
  EXPECT_NE(hard.Header("x-qwenmux-route-explanation").find("complex"), std::string::npos);

  // The same request with X-Qwenmux-Latency: low goes to the fast tier, and says why.
  auto low = Call(port(), "POST", "/v1/chat/completions", Chat(kHardPrompt, true).dump(), {{"X-Qwenmux-Latency", "low"}});
  ASSERT_EQ(low.status, 200) << low.body;
  EXPECT_EQ(low.Header("x-qwenmux-model"), "qwen3-fast");
  EXPECT_EQ(low.Header("x-qwenmux-route"), "latency") << low.Header("x-qwenmux-route-explanation");
  const json lj = json::parse(low.body);
  EXPECT_EQ(lj["qwenmux"]["model"], "qwen3-fast");
  EXPECT_EQ(lj["model"], "qwen3-fast");

  // The body's latency field wins over the header.
  json relaxed = Chat(kHardPrompt, true);
  relaxed["latency"] = "relaxed";
  auto field = Call(port(), "POST", "/v1/chat/completions", relaxed.dump(), {{"X-Qwenmux-Latency", "low"}});
  ASSERT_EQ(field.status, 200) << field.body;
  EXPECT_EQ(field.Header("x-qwenmux-model"), "qwen3-quality");

  // A simple request: the fast tier without any latency wish.
  auto easy = Call(port(), "POST", "/v1/chat/completions", Chat("Hi", false).dump());
  ASSERT_EQ(easy.status, 200) << easy.body;
  EXPECT_EQ(easy.Header("x-qwenmux-model"), "qwen3-fast");

  // Ollama's dialect reads the same header.
  const json ollama = {{"model", "auto"},
                       {"messages", json::array({json{{"role", "user"}, {"content", kHardPrompt}}})},
                       {"stream", false},
                       {"think", true},
                       {"options", {{"num_predict", 2}, {"temperature", 0}}}};
  auto o_hard = Call(port(), "POST", "/api/chat", ollama.dump());
  ASSERT_EQ(o_hard.status, 200) << o_hard.body;
  EXPECT_EQ(json::parse(o_hard.body)["model"], "qwen3-quality");
  auto o_low = Call(port(), "POST", "/api/chat", ollama.dump(), {{"X-Qwenmux-Latency", "low"}});
  ASSERT_EQ(o_low.status, 200) << o_low.body;
  EXPECT_EQ(json::parse(o_low.body)["model"], "qwen3-fast");

  // A latency header that means nothing: 400 naming the header, and nothing is served.
  auto bad = Call(port(), "POST", "/v1/chat/completions", Chat("Hi", false).dump(), {{"X-Qwenmux-Latency", "soonish"}});
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_NE(bad.body.find("X-Qwenmux-Latency"), std::string::npos) << bad.body;
}

TEST(ServerPreload, HealthIs503WithRetryAfterUntilThePreloadIsDone) {
  qwenmux::testing::TempDir dir;
  {
    std::ofstream y(dir / "qwenmux.yaml");
    y << "models:\n  - name: tiny\n    file: " << ModelPath("tiny-dense.q8_0.gguf")
      << "\n    context: 256\n    preload: true\n";
  }
  // The preload's model load waits for the test's go.
  std::promise<void> go;
  std::shared_future<void> gate = go.get_future().share();
  AppOptions o;
  o.config_path = dir / "qwenmux.yaml";
  o.http.port = 0;
  o.models.threads = 1;
  o.load_model = [gate](const std::string& path, const engine::LoadOptions& lo) {
    gate.wait();
    return engine::Model::Load(path, lo);
  };
  auto app = App::Create(std::move(o), [](const std::string&) {});
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  ASSERT_TRUE((*app)->Start().ok());
  const uint16_t port = (*app)->port();
  auto h = Call(port, "GET", "/health");
  EXPECT_EQ(h.status, 503) << h.body;
  EXPECT_EQ(h.Header("retry-after"), "5");
  EXPECT_EQ(json::parse(h.body)["status"], "loading");
  go.set_value();
  bool ready = false;
  for (int i = 0; i < 3000 && !ready; ++i) {  // the load follows on the preload thread
    ready = Call(port, "GET", "/health").status == 200;
    if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(ready);
  EXPECT_EQ(json::parse(Call(port, "GET", "/health").body)["status"], "ok");
  // The preloaded model is loaded and serves.
  auto ps = Call(port, "GET", "/api/ps");
  ASSERT_EQ(ps.status, 200);
  ASSERT_EQ(json::parse(ps.body)["models"].size(), 1u) << ps.body;
  auto r = Call(port, "POST", "/v1/chat/completions",
                json{{"model", "tiny"}, {"messages", json::array({json{{"role", "user"}, {"content", "Hi"}}})}, {"max_tokens", 2}}
                    .dump());
  EXPECT_EQ(r.status, 200) << r.body;
}

}  // namespace
}  // namespace qwenmux::server
