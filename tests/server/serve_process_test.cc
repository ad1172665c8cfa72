// `qwenmux serve` as a process, for what only the command line sets up: --config with several
// models and a memory budget that holds one of them at a time (eviction through the server),
// the QWENMUX_API_KEY environment variable, and --allow-host.
#include <cstdlib>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "engine/engine.h"
#include "orchestrator/manager/memory_estimate.h"
#include "server/http_client.h"

namespace qwenmux::testing {
namespace {

using nlohmann::json;

std::string TmpPath(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp") + "/" + name;
}

std::string Chat(const std::string& model) {
  return json{{"model", model}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 2},
              {"temperature", 0}}
      .dump();
}

std::vector<std::string> Loaded(uint16_t port) {
  std::vector<std::string> names;
  const json ps = json::parse(Call(port, "GET", "/api/ps").body);
  for (const auto& m : ps["models"]) names.push_back(m["name"]);
  return names;
}

// Two models in qwenmux.yaml, a budget for the larger one and half the smaller: asking for one
// then the other evicts the first; both answer, and the eviction is counted.
TEST(ServeProcess, ConfigModelsEvictUnderTheMemoryBudget) {
  const std::string dense = ModelPath("tiny-dense.q8_0.gguf"), moe = ModelPath("tiny-moe.q4_k_m.gguf");
  engine::LoadOptions lo;
  lo.n_ctx = 256;
  lo.n_seq = 1;
  lo.n_threads = 1;
  auto ed = orchestrator::EstimateModelMemory(dense, lo);
  auto em = orchestrator::EstimateModelMemory(moe, lo);
  ASSERT_TRUE(ed.ok() && em.ok());
  const uint64_t big = std::max(ed->total(), em->total()), small = std::min(ed->total(), em->total());
  const uint64_t budget = big + small / 2;
  const std::string cfg = TmpPath("serve-cli.yaml");
  std::ofstream(cfg) << "models:\n"
                     << "  - name: dense\n    file: " << dense << "\n    role: chat\n    context: 256\n    parallel: 1\n"
                     << "  - name: moe\n    file: " << moe << "\n    role: chat\n    context: 256\n    parallel: 1\n";
  const std::string log = TmpPath("serve-cli-config.log");
  ServerProcess server({"--config", cfg, "--memory-budget", std::to_string(budget), "-t", "1"}, log);
  ASSERT_TRUE(server.WaitReady()) << log;
  const uint16_t port = server.port();
  auto models = json::parse(Call(port, "GET", "/v1/models").body);
  ASSERT_EQ(models["data"].size(), 2u) << models.dump();
  auto a = Call(port, "POST", "/v1/chat/completions", Chat("dense"));
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.Header("x-qwenmux-model"), "dense");
  EXPECT_EQ(Loaded(port), std::vector<std::string>{"dense"});
  auto b = Call(port, "POST", "/v1/chat/completions", Chat("moe"));
  ASSERT_EQ(b.status, 200) << b.body;
  EXPECT_EQ(b.Header("x-qwenmux-model"), "moe");
  EXPECT_EQ(Loaded(port), std::vector<std::string>{"moe"});  // dense was evicted to make room
  const std::string metrics = Call(port, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("qwenmux_model_evictions_total{model=\"dense\",reason=\"lru\"} 1"), std::string::npos) << metrics;
  EXPECT_EQ(server.Stop(), 0);
}

// QWENMUX_API_KEY is --api-key from the environment; --allow-host adds a Host header value
// accepted while bound to loopback.
TEST(ServeProcess, ApiKeyFromTheEnvironmentAndAllowHost) {
  ASSERT_EQ(setenv("QWENMUX_API_KEY", "env-key-7", 1), 0);
  const std::string log = TmpPath("serve-cli-env.log");
  ServerProcess server({"--model", ModelPath("tiny-dense.q8_0.gguf") + "=tiny", "--ctx", "256", "-t", "1",
                        "--allow-host", "qwenmux.internal"},
                       log);
  unsetenv("QWENMUX_API_KEY");  // the child has its copy
  ASSERT_TRUE(server.WaitReady()) << log;
  const uint16_t port = server.port();
  EXPECT_EQ(Call(port, "GET", "/v1/models").status, 401);
  EXPECT_EQ(Call(port, "GET", "/v1/models", "", {{"Authorization", "Bearer wrong"}}).status, 401);
  EXPECT_EQ(Call(port, "GET", "/v1/models", "", {{"Authorization", "Bearer env-key-7"}}).status, 200);
  EXPECT_EQ(Call(port, "GET", "/health", "", {{"Host", "qwenmux.internal:" + std::to_string(port)}}).status, 200);
  EXPECT_EQ(Call(port, "GET", "/health", "", {{"Host", "other.internal:" + std::to_string(port)}}).status, 403);
  EXPECT_EQ(server.Stop(), 0);
}

}  // namespace
}  // namespace qwenmux::testing
