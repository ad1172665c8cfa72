#include "orchestrator/config/config.h"

#include <filesystem>

#include <gtest/gtest.h>
#include "common/paths.h"

namespace qwenmux::orchestrator {
namespace {

std::string ExamplePath() {
  return (std::filesystem::path(::qwenmux::testing::SourceDir()) / "examples" /
          "qwenmux.yaml").string();
}

TEST(OrchestratorConfig, ShippedExampleParses) {
  Result<Config> c = LoadConfig(ExamplePath());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->models.size(), 6u);
  const ModelConfig& fast = c->models[0];
  EXPECT_EQ(fast.name, "qwen3-fast");
  EXPECT_EQ(fast.catalog, "qwen3:1.7b-q4_k_m");
  EXPECT_EQ(fast.aliases, std::vector<std::string>{"fast"});
  EXPECT_EQ(fast.context, 8192u);
  EXPECT_EQ(fast.parallel, 4u);
  EXPECT_EQ(fast.keep_alive, Duration::Millis(600000));
  EXPECT_TRUE(fast.pinned);
  EXPECT_EQ(c->models[3].keep_alive, Duration::Millis(0));
  EXPECT_EQ(c->models[4].keep_alive, Duration::Forever());
  EXPECT_EQ(c->models[4].role, ModelRole::kEmbedding);  // from the catalog
  EXPECT_EQ(c->models[5].role, ModelRole::kReranker);
  EXPECT_TRUE(c->memory.budget.is_percent);
  EXPECT_EQ(c->memory.budget.percent, 75.0);
  EXPECT_EQ(c->memory.reserve, 2ull << 30);
  EXPECT_EQ(c->router.default_model, "qwen3-balanced");
  EXPECT_EQ(c->router.ttft_target, Duration::Millis(2000));
  ASSERT_EQ(c->pipelines.size(), 2u);
  EXPECT_EQ(c->pipelines[0].name, "document_processing");
  ASSERT_EQ(c->pipelines[0].stages.size(), 5u);
  EXPECT_EQ(c->pipelines[0].stages[1], (std::pair<std::string, std::string>{"extract", "qwen3-quality"}));
  EXPECT_EQ(c->FindModel("fast"), &c->models[0]);
  EXPECT_EQ(c->FindModel("nope"), nullptr);
}

TEST(OrchestratorConfig, EmptyFileGivesDefaults) {
  Result<Config> c = ParseConfig("", "empty.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->models.empty());
  EXPECT_EQ(c->memory.Resolve(64ull << 30), 48ull << 30);        // 75%
  EXPECT_EQ(c->memory.Resolve(4ull << 30), 2ull << 30);          // capped by the 2 GiB reserve
}

// Each bad config must fail with "file:LINE: key.path: ..." naming the right line.
struct BadCase {
  const char* yaml;
  const char* expected;  // substring of the message
};

TEST(OrchestratorConfig, ErrorsNameKeyAndLine) {
  const BadCase cases[] = {
      {"models:\n  - catalog: qwen3:8b-q8_0\n  - catalog: qwen3-fast\n    keep_alive: 5x\n",
       "qwenmux.yaml:4: models[1].keep_alive: \"5x\" is not a duration"},
      {"memory:\n  budjet: 24GiB\n", "qwenmux.yaml:2: memory.budjet: unknown key (known here: budget, reserve, gpu_budget)"},
      {"modles: []\n", "qwenmux.yaml:1: modles: unknown key"},
      {"memory:\n  budget: 24XB\n", "qwenmux.yaml:2: memory.budget: \"24XB\" is not a size"},
      {"memory:\n  budget: 150%\n", "qwenmux.yaml:2: memory.budget: \"150%\" is not a share of RAM"},
      // Issue 20 item 9: nonsense sizes are refused as on the command line.
      {"memory:\n  budget: 10\n", "qwenmux.yaml:2: memory.budget: memory budget 10 B is below the minimum of 64.0 MiB"},
      {"models:\n  - catalog: qwen3:8b-q8_0\n    context: 0\n", "qwenmux.yaml:3: models[0].context: \"0\" is not a whole number in [1, 1048576]"},
      {"models:\n  - catalog: qwen3:8b-q8_0\n    context: -5\n", "qwenmux.yaml:3: models[0].context: \"-5\" is not a whole number"},
      {"models:\n  - catalog: qwen3:8b-q8_0\n    parallel: 100000\n", "qwenmux.yaml:3: models[0].parallel: \"100000\" is not a whole number in [1, 256]"},
      {"models:\n  - catalog: qwen3:7b\n", "qwenmux.yaml:2: models[0].catalog: catalog: no model \"qwen3:7b\""},
      {"models:\n  - name: x\n", "qwenmux.yaml:2: models[0]: give exactly one of `catalog:`"},
      {"models:\n  - file: a.gguf\n", "qwenmux.yaml:2: models[0].name: required"},
      {"models:\n  - file: a.gguf\n    name: a\n    role: chatbot\n",
       "qwenmux.yaml:4: models[0].role: \"chatbot\" is not a role"},
      {"models:\n  - catalog: qwen3:8b-q8_0\n    role: embedding\n",
       "qwenmux.yaml:3: models[0].role: \"embedding\" contradicts"},
      {"models:\n  - catalog: qwen3:8b-q8_0\n    parallel: 0\n", "qwenmux.yaml:3: models[0].parallel: \"0\" is not a whole number"},
      {"models:\n  - catalog: qwen3:8b-q8_0\n    context: lots\n", "qwenmux.yaml:3: models[0].context:"},
      {"models:\n  - catalog: qwen3:8b-q8_0\n    thinking: sometimes\n", "qwenmux.yaml:3: models[0].thinking:"},
      {"models:\n  - catalog: qwen3:8b-q8_0\n    pinned: maybe\n", "qwenmux.yaml:3: models[0].pinned: \"maybe\" is not true or false"},
      {"models:\n  - catalog: qwen3:8b-q8_0\n    aliases: fast\n", "qwenmux.yaml:3: models[0].aliases: expected a list"},
      {"models:\n  - catalog: qwen3:8b-q8_0\n    aliases: [a b]\n", "qwenmux.yaml:3: models[0].aliases[0]:"},
      {"models:\n  - catalog: qwen3:8b-q8_0\n    keep_alive: 5m\n    keep_alive: 1m\n",
       "qwenmux.yaml:4: models[0].keep_alive: duplicate key"},
      {"models:\n  - catalog: qwen3:8b-q8_0\n    aliases: [x]\n  - catalog: qwen3-fast\n    aliases: [x]\n",
       "qwenmux.yaml:4: models[1]: name or alias \"x\" is used twice"},
      {"models:\n  - catalog: qwen3:8b-q8_0\npipelines:\n  docs:\n    classify: qwen3:8b-q8_0\n    extract: ghost\n",
       "qwenmux.yaml:6: pipelines.docs.extract: \"ghost\" is not a configured model (configured: qwen3:8b-q8_0)"},
      {"pipelines:\n  docs: []\n", "qwenmux.yaml:2: pipelines.docs: expected a map of stage: model"},
      {"router:\n  default: qwen3:9b\n", "qwenmux.yaml:2: router.default: \"qwen3:9b\" is not a configured model"},
      {"router:\n  ttft_target: fast\n", "qwenmux.yaml:2: router.ttft_target: \"fast\" is not a duration"},
      {"models: [\n", "qwenmux.yaml:2: YAML syntax error"},
      {"models:\n  - catalog: qwen3:8b-q8_0\n    device: gpu\n",
       "qwenmux.yaml:3: models[0].device: device: 'gpu' is not one of cpu, cuda, auto"},
      {"memory:\n  gpu_budget: 120%\n", "qwenmux.yaml:2: memory.gpu_budget: \"120%\" is not a share"},
      {"- a\n- b\n", "qwenmux.yaml:1: expected a map, got a list"},
  };
  for (const BadCase& bc : cases) {
    Result<Config> c = ParseConfig(bc.yaml, "qwenmux.yaml");
    ASSERT_FALSE(c.ok()) << bc.yaml;
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(c.status().message().find(bc.expected), std::string::npos)
        << "yaml:\n" << bc.yaml << "got:      " << c.status().message() << "\nexpected: " << bc.expected;
  }
}

TEST(OrchestratorConfig, WithoutModelsSectionCatalogNamesAreValidReferences) {
  Result<Config> c = ParseConfig("router:\n  default: qwen3-balanced\npipelines:\n  p:\n    a: qwen3:8b-q8_0\n", "x.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
}

TEST(OrchestratorConfig, DeviceAndGpuBudget) {
  Result<Config> c = ParseConfig(
      "memory:\n  gpu_budget: 20GiB\nmodels:\n  - catalog: qwen3:8b-q8_0\n    device: cuda\n"
      "  - catalog: qwen3-fast\n    device: cpu\n  - catalog: qwen3:0.6b\n",
      "x.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->models.size(), 3u);
  EXPECT_EQ(c->models[0].device, runtime::DeviceChoice::kCuda);
  EXPECT_EQ(c->models[1].device, runtime::DeviceChoice::kCpu);
  EXPECT_FALSE(c->models[2].device.has_value());  // the server's --device (auto)
  EXPECT_FALSE(c->models[0].thinking.has_value());  // Qwen3's default
  EXPECT_FALSE(c->memory.gpu_budget.is_percent);
  EXPECT_EQ(c->memory.gpu_budget.bytes, 20ull << 30);
  // Default: 90% of the free device memory; the flag overrides the file, same parser.
  Result<Config> d = ParseConfig("", "x.yaml");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->memory.gpu_budget.is_percent);
  EXPECT_EQ(d->memory.gpu_budget.percent, 90.0);
  ASSERT_TRUE(ApplyGpuMemoryBudgetFlag(*c, "50%").ok());
  EXPECT_TRUE(c->memory.gpu_budget.is_percent);
  EXPECT_EQ(c->memory.gpu_budget.Resolve(10ull << 30), 5ull << 30);
  Status bad = ApplyGpuMemoryBudgetFlag(*c, "lots");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("--gpu-memory-budget"), std::string::npos);
}

TEST(OrchestratorConfig, ThinkingPerModel) {
  Result<Config> c = ParseConfig("models:\n  - catalog: qwen3:8b-q8_0\n    thinking: false\n  - catalog: qwen3-fast\n    thinking: true\n", "x.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->models[0].thinking, std::optional<bool>(false));
  EXPECT_EQ(c->models[1].thinking, std::optional<bool>(true));
}

TEST(OrchestratorConfig, MissingFile) {
  Result<Config> c = LoadConfig("/nonexistent/qwenmux.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace qwenmux::orchestrator
