// Issue 20 items 9 and 10 at the server: nonsense settings are refused at startup with a clear
// message (in-process and as `qwenmux serve` flags), a model with a NaN hyper-parameter is
// refused at startup, and a model whose outputs are NaN answers 500 with a message instead of
// JSON nulls.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/altered_model.h"
#include "common/run_command.h"
#include "common/testdata.h"
#include "server/app.h"
#include "server/http_client.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::ModelPath;

AppOptions Tiny(const std::string& file = ModelPath("tiny-dense.q8_0.gguf")) {
  AppOptions o;
  o.model_flags = {file + "=tiny"};
  o.http.port = 0;
  o.http.io_threads = 1;
  o.models.n_ctx = 256;
  o.models.parallel = 2;
  o.models.threads = 1;
  o.shutdown_grace = std::chrono::milliseconds(1000);
  return o;
}

TEST(ServeSettings, NonsenseOptionsAreRefused) {
  struct Case {
    const char* expected;
    void (*change)(AppOptions&);
  };
  const Case cases[] = {
      {"--ctx 0: must be between 1 and 1048576", [](AppOptions& o) { o.models.n_ctx = 0; }},
      {"--ctx -5: must be between", [](AppOptions& o) { o.models.n_ctx = -5; }},
      {"--parallel 0: must be between 1 and 256", [](AppOptions& o) { o.models.parallel = 0; }},
      {"--parallel -3: must be between", [](AppOptions& o) { o.models.parallel = -3; }},
      {"--parallel 100000: must be between", [](AppOptions& o) { o.models.parallel = 100000; }},
      {"--max-queue 0: must be between", [](AppOptions& o) { o.scheduler.max_queue = 0; }},
      {"--max-tokens 0: must be between", [](AppOptions& o) { o.limits.max_tokens = 0; }},
      {"--max-body 0: must be at least 1024 bytes", [](AppOptions& o) { o.http.limits.max_body_bytes = 0; }},
      {"--max-connections 0: must be between", [](AppOptions& o) { o.http.limits.max_connections = 0; }},
      {"--memory-budget: memory budget 10 B is below the minimum of 64.0 MiB",
       [](AppOptions& o) { o.memory_budget = "10"; }},
  };
  for (const Case& c : cases) {
    AppOptions o = Tiny();
    c.change(o);
    auto app = App::Create(o, [](const std::string&) {});
    ASSERT_FALSE(app.ok()) << c.expected;
    EXPECT_EQ(app.status().code(), StatusCode::kInvalidArgument) << c.expected;
    EXPECT_NE(app.status().message().find(c.expected), std::string::npos) << app.status().message();
  }
  EXPECT_TRUE(Tiny().Validate().ok());
}

// The same as `qwenmux serve` flags: each exits at once with a message naming the flag (before
// the fix each of these started a server on which every request failed; the timeout catches it).
TEST(ServeSettings, NonsenseFlagsAreRefusedOnTheCommandLine) {
  const std::string model = " --port 0 --model " + ModelPath("tiny-dense.q8_0.gguf") + "=tiny ";
  const std::pair<const char*, const char*> cases[] = {
      {"--ctx 0", "--ctx"},           {"--ctx -5", "--ctx"},
      {"--parallel 0", "--parallel"}, {"--parallel -3", "--parallel"},
      {"--parallel 100000", "--parallel"},
      {"--memory-budget 10", "--memory-budget: memory budget 10 B is below the minimum"},
      {"--max-queue 0", "--max-queue"}, {"--max-tokens 0", "--max-tokens"},
      {"--max-body 0", "--max-body 0: must be at least"}, {"--max-connections 0", "--max-connections"},
  };
  for (const auto& [flags, expected] : cases) {
    const auto r = qwenmux::testing::RunCommand("timeout 20 " + ::qwenmux::testing::QwenmuxBinary() + " serve" + model +
                                               flags + " 2>&1");
    EXPECT_NE(r.code, 0) << flags << ": " << r.out;
    EXPECT_NE(r.code, 124) << flags << ": still serving after 20 s: " << r.out;
    EXPECT_NE(r.out.find(expected), std::string::npos) << flags << ": " << r.out;
  }
}

// A GGUF with a NaN rope base: `serve` refuses the model at startup and names the key.
TEST(ServeNonFinite, NanRopeBaseIsRefusedAtStartup) {
  const std::string path = ::testing::TempDir() + "/serve-nan-rope.gguf";
  ASSERT_TRUE(qwenmux::testing::WriteAlteredModel(ModelPath("tiny-dense.q8_0.gguf"), path,
                                                  {{"qwen3.rope.freq_base", gguf::Value(std::nanf(""))}})
                  .ok());
  auto app = App::Create(Tiny(path), [](const std::string&) {});
  ASSERT_FALSE(app.ok());
  EXPECT_NE(app.status().message().find("qwen3.rope.freq_base has value nan, expected a finite number"),
            std::string::npos)
      << app.status().message();
  std::remove(path.c_str());
}

// Weights that make every output NaN: embeddings used to come back as arrays of JSON null.
// Now each request fails with 500 and the engine's message, in both dialects.
TEST(ServeNonFinite, NanOutputsAnswer500WithAMessage) {
  const std::string path = ::testing::TempDir() + "/serve-nan-weights.gguf";
  ASSERT_TRUE(qwenmux::testing::WriteAlteredModel(ModelPath("tiny-dense.q8_0.gguf"), path, {},
                                                  {"output_norm.weight"}, std::nanf(""))
                  .ok());
  auto app = App::Create(Tiny(path), [](const std::string&) {});
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  ASSERT_TRUE((*app)->Start().ok());
  const uint16_t port = (*app)->port();
  auto emb = Call(port, "POST", "/v1/embeddings", json{{"model", "tiny"}, {"input", "hello"}}.dump());
  EXPECT_EQ(emb.status, 500) << emb.body;
  json e = json::parse(emb.body, nullptr, false);
  EXPECT_FALSE(e.contains("data")) << emb.body;  // no embedding of nulls
  EXPECT_NE(e["error"]["message"].get<std::string>().find("non-finite hidden state value"), std::string::npos) << emb.body;

  auto ollama = Call(port, "POST", "/api/embed", json{{"model", "tiny"}, {"input", "hello"}}.dump());
  EXPECT_EQ(ollama.status, 500) << ollama.body;
  EXPECT_NE(ollama.body.find("non-finite"), std::string::npos) << ollama.body;

  auto chat = Call(port, "POST", "/v1/chat/completions",
                   json{{"model", "tiny"},
                        {"messages", json::array({json{{"role", "user"}, {"content", "hi"}}})},
                        {"max_tokens", 4}}
                       .dump());
  EXPECT_EQ(chat.status, 500) << chat.body;
  EXPECT_NE(chat.body.find("non-finite logits value"), std::string::npos) << chat.body;
  (*app)->Shutdown();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace qwenmux::server
