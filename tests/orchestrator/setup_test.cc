// Config -> model manager specs and router candidates (orchestrator/setup).
#include "orchestrator/setup/setup.h"

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/testdata.h"
#include "orchestrator/store/model_store.h"
#include "orchestrator/temp_dir.h"

namespace qwenmux::orchestrator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using qwenmux::testing::ModelPath;
using qwenmux::testing::TempDir;

constexpr uint64_t GiB = 1ull << 30;

// A store whose catalog models are the tiny test files (symlinked blobs).
void AddToStore(const std::string& dir, const std::string& name, const std::string& file, char digit,
                std::vector<std::string> aliases = {}) {
  auto store = ModelStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  StoredModel m;
  m.name = name;
  m.aliases = std::move(aliases);
  m.sha256 = std::string(64, digit);
  m.size = std::filesystem::file_size(file);
  std::filesystem::create_directories(std::filesystem::path(store->BlobPath(m.sha256)).parent_path());
  std::filesystem::create_symlink(file, store->BlobPath(m.sha256));
  ASSERT_TRUE(store->Add(m).ok());
}

Config Parse(const std::string& yaml) {
  auto c = ParseConfig(yaml, "qwenmux.yaml");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : Config{};
}

ServeInputs Inputs(const std::string& yaml, const std::string& dir) {
  ServeInputs in;
  in.config = Parse(yaml);
  in.models_dir = dir;
  in.total_ram = 32 * GiB;
  return in;
}

const char* kYaml = R"(memory:
  budget: 50%
  reserve: 1GiB
models:
  - name: qwen3-fast
    catalog: qwen3:1.7b-q4_k_m
    context: 512
    parallel: 4
    keep_alive: -1
    pinned: true
  - catalog: qwen3:8b-q8_0
    context: 256
    preload: true
    keep_alive: 30s
  - name: moe
    file: MOE
    aliases: [qwen3-quality, big]
router:
  default: qwen3-fast
  ttft_target: 1500ms
)";

std::string Yaml() {
  std::string y = kYaml;
  y.replace(y.find("MOE"), 3, ModelPath("tiny-moe.q4_k_m.gguf"));
  return y;
}

TEST(SetupTest, ConfigBecomesSpecsAndCandidates) {
  TempDir tmp;
  AddToStore(tmp.path(), "qwen3:1.7b-q4_k_m", ModelPath("tiny-dense.q8_0.gguf"), 'a', {"qwen3-fast"});
  AddToStore(tmp.path(), "qwen3:8b-q8_0", ModelPath("tiny-dense.q8_0.gguf"), 'b');
  auto s = BuildServeSetup(Inputs(Yaml(), tmp.path()));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->budget_bytes, 16 * GiB);
  EXPECT_EQ(s->manager.budget_bytes, 16 * GiB);
  ASSERT_EQ(s->specs.size(), 3u);
  ASSERT_EQ(s->candidates.size(), 3u);

  const ModelSpec& fast = s->specs[0];
  EXPECT_EQ(fast.name, "qwen3-fast");
  EXPECT_EQ(fast.path, tmp.path() + "/blobs/sha256-" + std::string(64, 'a'));
  EXPECT_EQ(fast.load.n_ctx, 512);
  EXPECT_EQ(fast.load.n_seq, 4);
  EXPECT_EQ(fast.keep_alive, kKeepForever);
  EXPECT_TRUE(fast.pinned);
  EXPECT_FALSE(fast.preload);
  EXPECT_TRUE(fast.fallbacks.empty());

  const ModelSpec& bal = s->specs[1];
  EXPECT_EQ(bal.name, "qwen3:8b-q8_0");
  EXPECT_EQ(bal.load.n_ctx, 256);
  EXPECT_EQ(bal.load.n_seq, 1);
  EXPECT_EQ(bal.keep_alive, std::chrono::milliseconds(30000));
  EXPECT_TRUE(bal.preload);
  EXPECT_THAT(bal.fallbacks, ElementsAre("qwen3-fast"));

  const ModelSpec& moe = s->specs[2];
  EXPECT_EQ(moe.path, ModelPath("tiny-moe.q4_k_m.gguf"));
  // No context given: the model's training context.
  auto f = gguf::File::Open(moe.path);
  ASSERT_TRUE(f.ok());
  auto mc = model::ReadConfig(*f);
  ASSERT_TRUE(mc.ok());
  EXPECT_EQ(moe.load.n_ctx, static_cast<int32_t>(mc->n_ctx_train));
  EXPECT_THAT(moe.fallbacks, ElementsAre("qwen3:8b-q8_0", "qwen3-fast"));  // tier order, highest first

  // Candidates: tiers from names/aliases, else the catalog's tier targets.
  EXPECT_EQ(s->candidates[0].tier, "qwen3-fast");
  EXPECT_EQ(s->candidates[1].tier, "qwen3-balanced");  // qwen3:8b-q8_0 is the balanced tier's target
  EXPECT_THAT(s->candidates[1].aliases, ElementsAre("qwen3-balanced"));
  EXPECT_EQ(s->candidates[1].label, "8B Q8_0");
  EXPECT_EQ(s->candidates[2].tier, "qwen3-quality");
  EXPECT_EQ(s->candidates[2].role, ModelRole::kChat);
  EXPECT_EQ(s->candidates[0].aliases, std::vector<std::string>({"qwen3:1.7b-q4_k_m"}));
  // Memory (wiring check): the estimator's figure at the spec's context and sequences; the
  // estimator itself is held to measured RSS in manager_estimate_test.
  for (size_t i = 0; i < 3; ++i) {
    auto est = EstimateModelMemory(s->specs[i].path, s->specs[i].load);
    ASSERT_TRUE(est.ok());
    EXPECT_EQ(s->candidates[i].memory_bytes, est->total()) << i;
    EXPECT_GT(s->candidates[i].params, 0u);
    EXPECT_EQ(s->candidates[i].decode_tok_s, 0.0);  // no speed figures given
  }
  EXPECT_GT(s->candidates[0].memory_bytes, s->candidates[1].memory_bytes);  // 4 x 512 vs 1 x 256 KV
  EXPECT_EQ(s->policy.default_model, "qwen3-fast");
  EXPECT_EQ(s->policy.ttft_target_ms, 1500);
  EXPECT_FALSE(s->log.empty());
  EXPECT_THAT(s->log[0], HasSubstr("memory budget: 16.0 GiB (50% of 32.0 GiB RAM, 1.0 GiB reserved)"));

  // The router takes the candidates as they are.
  RequestInput in;
  in.texts = {"hello"};
  auto feats = ExtractFeatures(in);
  ASSERT_TRUE(feats.ok());
  auto d = Route("big", *feats, s->candidates, {}, s->policy);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->model, "moe");
  d = Route("", *feats, s->candidates, {}, s->policy);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->model, "qwen3-fast");
  EXPECT_EQ(d->reason, RouteReason::kDefault);
}

TEST(SetupTest, NotDownloadedNamesTheLineAndThePull) {
  TempDir tmp;
  AddToStore(tmp.path(), "qwen3:1.7b-q4_k_m", ModelPath("tiny-dense.q8_0.gguf"), 'a');
  auto s = BuildServeSetup(Inputs(Yaml(), tmp.path()));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(s.status().message(), HasSubstr("qwenmux.yaml:11: models[1] (qwen3:8b-q8_0): qwen3:8b-q8_0 is not downloaded"));
  EXPECT_THAT(s.status().message(), HasSubstr("run `qwenmux pull qwen3:8b-q8_0`"));
}

TEST(SetupTest, MissingOrBadFileNamesTheLine) {
  TempDir tmp;
  auto s = BuildServeSetup(Inputs("models:\n  - name: x\n    file: /nonexistent/x.gguf\n", tmp.path()));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().ToString(), HasSubstr("qwenmux.yaml:2: models[0] (x)"));
  EXPECT_THAT(s.status().ToString(), HasSubstr("/nonexistent/x.gguf"));
  // A GGUF that is not a model (the vocab-only file).
  s = BuildServeSetup(Inputs("models:\n  - name: v\n    file: " + ModelPath("qwen3-vocab.gguf") + "\n", tmp.path()));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().ToString(), HasSubstr("models[0] (v)"));
}

TEST(SetupTest, ModelFlagsAndBudgetFlag) {
  TempDir tmp;
  ServeInputs in;
  in.models_dir = tmp.path();
  in.total_ram = 8 * GiB;
  in.memory_budget = "3GiB";
  in.extra_models = {ModelPath("tiny-dense.q8_0.gguf") + "=mini", ModelPath("tiny-moe.q4_k_m.gguf")};
  auto s = BuildServeSetup(in);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->budget_bytes, 3 * GiB);
  ASSERT_EQ(s->specs.size(), 2u);
  EXPECT_EQ(s->specs[0].name, "mini");
  EXPECT_EQ(s->specs[1].name, "tiny-moe.q4_k_m");  // the file stem
  EXPECT_EQ(s->candidates[1].quantization, "Q4_K_M");
  EXPECT_THAT(s->log[0], HasSubstr("from --memory-budget"));

  // The budget is capped at RAM minus the reserve (default 2 GiB).
  in.memory_budget = "100%";
  s = BuildServeSetup(in);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->budget_bytes, 6 * GiB);

  in.memory_budget = "lots";
  s = BuildServeSetup(in);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().ToString(), HasSubstr("--memory-budget"));

  in.memory_budget = "";
  in.total_ram = GiB;  // 75% of 1 GiB, capped at 1 GiB - 2 GiB = 0
  s = BuildServeSetup(in);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("leaves nothing for models"));

  in.total_ram = 8 * GiB;
  in.extra_models = {ModelPath("tiny-dense.q8_0.gguf") + "=m", ModelPath("tiny-moe.q4_k_m.gguf") + "=m"};
  s = BuildServeSetup(in);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("name or alias \"m\" is already used"));
}

// --ctx above the file's trained context is clamped, and the start-up log says so with both numbers.
TEST(SetupTest, ContextAboveTrainedIsClampedAndSaid) {
  TempDir tmp;
  ServeInputs in;
  in.models_dir = tmp.path();
  in.total_ram = 8 * GiB;
  in.extra_models = {ModelPath("tiny-dense.q8_0.gguf") + "=mini"};
  in.flag_models.n_ctx = 1 << 20;
  auto s = BuildServeSetup(in);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->specs.size(), 1u);
  const int32_t trained = s->facts[0].n_ctx_train;
  ASSERT_GT(trained, 0);
  ASSERT_LT(trained, 1 << 20);
  EXPECT_EQ(s->specs[0].load.n_ctx, trained);
  bool said = false;
  for (const std::string& line : s->log)
    said |= line.find(fmt::format("warning: model mini: context {} (--ctx) is above its trained context {}: clamped",
                                  1 << 20, trained)) != std::string::npos;
  EXPECT_TRUE(said) << ::testing::PrintToString(s->log);
  // Within the trained context: no warning.
  in.flag_models.n_ctx = 64;
  s = BuildServeSetup(in);
  ASSERT_TRUE(s.ok());
  for (const std::string& line : s->log) EXPECT_EQ(line.find("clamped"), std::string::npos) << line;
}

TEST(SetupTest, DeviceFromConfigElseFlag) {
  TempDir tmp;
  const std::string dense = ModelPath("tiny-dense.q8_0.gguf");
  auto cfg = ParseConfig("memory:\n  gpu_budget: 60%\nmodels:\n  - file: " + dense + "\n    name: g\n    device: cuda\n"
                         "  - file: " + dense + "\n    name: c\n    device: cpu\n  - file: " + dense + "\n    name: d\n",
                         "q.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  ServeInputs in;
  in.config = *cfg;
  in.models_dir = tmp.path();
  in.total_ram = 8 * GiB;
  in.extra_models = {dense + "=flag"};
  for (runtime::DeviceChoice flag : {runtime::DeviceChoice::kAuto, runtime::DeviceChoice::kCpu}) {
    in.device = flag;
    auto s = BuildServeSetup(in);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_EQ(s->specs.size(), 4u);
    EXPECT_EQ(s->specs[0].load.device, runtime::DeviceChoice::kCuda);
    EXPECT_EQ(s->specs[1].load.device, runtime::DeviceChoice::kCpu);
    EXPECT_EQ(s->specs[2].load.device, flag);  // no `device:`: --device
    EXPECT_EQ(s->specs[3].load.device, flag);  // --model file
    EXPECT_EQ(s->manager.gpu_budget.percent, 60.0);
  }
  in.gpu_memory_budget = "4GiB";
  auto s = BuildServeSetup(in);
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->manager.gpu_budget.is_percent);
  EXPECT_EQ(s->manager.gpu_budget.bytes, 4 * GiB);
  in.gpu_memory_budget = "lots";
  EXPECT_FALSE(BuildServeSetup(in).ok());
}

TEST(SetupTest, ParseModelFlag) {
  auto a = ParseModelFlag("/m/Qwen3-8B-Q8_0.gguf");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->first, "/m/Qwen3-8B-Q8_0.gguf");
  EXPECT_EQ(a->second, "Qwen3-8B-Q8_0");
  auto b = ParseModelFlag("/m/x.gguf=fast");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->first, "/m/x.gguf");
  EXPECT_EQ(b->second, "fast");
  for (const char* bad : {"", "x.gguf=", "=name", "x.gguf=a b"}) {
    auto r = ParseModelFlag(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(SetupTest, NoModelsSectionServesTheStore) {
  TempDir tmp;
  ServeInputs in;
  in.models_dir = tmp.path();
  in.total_ram = 8 * GiB;
  auto empty = BuildServeSetup(in);
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(empty.status().message(), HasSubstr("qwenmux pull"));
  AddToStore(tmp.path(), "qwen3:0.6b-q8_0", ModelPath("tiny-dense.q8_0.gguf"), 'c', {"qwen3-fast"});
  auto s = BuildServeSetup(in);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->candidates.size(), 1u);
  EXPECT_EQ(s->candidates[0].name, "qwen3:0.6b-q8_0");
  EXPECT_EQ(s->candidates[0].tier, "qwen3-fast");
}

// `serve` with no models configured serves the store: one bad entry (an HTML page stored by an
// older pull, or a GGUF that is not a model) used to stop the server from starting. It is skipped
// with a warning in the startup log; a store with only bad entries says so.
TEST(SetupTest, BadStoreEntryIsSkippedWithAWarning) {
  TempDir tmp;
  ServeInputs in;
  in.models_dir = tmp.path();
  in.total_ram = 8 * GiB;
  auto store = ModelStore::Open(tmp.path());
  ASSERT_TRUE(store.ok());
  StoredModel bad;
  bad.name = "hf:someone/repo/page.gguf";
  bad.sha256 = std::string(64, 'e');
  const std::string page = "<html>error</html>\n";
  bad.size = page.size();
  std::filesystem::create_directories(std::filesystem::path(store->BlobPath(bad.sha256)).parent_path());
  { std::ofstream(store->BlobPath(bad.sha256)) << page; }
  ASSERT_TRUE(store->Add(bad).ok());
  auto only_bad = BuildServeSetup(in);
  ASSERT_FALSE(only_bad.ok());
  EXPECT_THAT(only_bad.status().message(), HasSubstr("1 unusable store entries were skipped"));

  AddToStore(tmp.path(), "qwen3:0.6b-q8_0", ModelPath("tiny-dense.q8_0.gguf"), 'c');
  // A GGUF that parses but is not a model (vocab only) is skipped too.
  AddToStore(tmp.path(), "hf:someone/repo/vocab.gguf", ModelPath("qwen3-vocab.gguf"), 'd');
  auto s = BuildServeSetup(in);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->candidates.size(), 1u);
  EXPECT_EQ(s->candidates[0].name, "qwen3:0.6b-q8_0");
  std::string log;
  for (const std::string& l : s->log) log += l + "\n";
  EXPECT_THAT(log, HasSubstr("warning: store model hf:someone/repo/page.gguf: skipped"));
  EXPECT_THAT(log, HasSubstr("is not a GGUF file"));
  EXPECT_THAT(log, HasSubstr("warning: store model hf:someone/repo/vocab.gguf: skipped"));
}

TEST(SetupTest, UnknownRouterDefault) {
  TempDir tmp;
  ServeInputs in = Inputs("router:\n  default: qwen3:8b-q8_0\n", tmp.path());
  in.extra_models = {ModelPath("tiny-dense.q8_0.gguf") + "=mini"};
  auto s = BuildServeSetup(in);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("router.default: \"qwen3:8b-q8_0\" is not a configured model"));
}

TEST(SetupTest, SpeedsFromCachedFigures) {
  TempDir tmp;
  ServeInputs in;
  in.models_dir = tmp.path();
  in.total_ram = 8 * GiB;
  in.extra_models = {ModelPath("tiny-dense.q8_0.gguf") + "=mini"};
  MachineSpeed speed;
  speed.read_GBps = 10;
  speed.types["q8_0"] = {5.0, 20.0};
  in.speed = &speed;
  auto s = BuildServeSetup(in);
  ASSERT_TRUE(s.ok());
  EXPECT_GT(s->candidates[0].decode_tok_s, 0.0);
  EXPECT_GT(s->candidates[0].prefill_tok_s, 0.0);
}

TEST(SetupTest, RouterStateFromManagerSnapshot) {
  std::vector<LoadedModelInfo> snap(4);
  snap[0].name = "idle";
  snap[0].bytes = 3 * GiB;
  snap[1].name = "busy";
  snap[1].bytes = 2 * GiB;
  snap[1].in_use = 2;
  snap[2].name = "pinned";
  snap[2].bytes = GiB;
  snap[2].pinned = true;
  snap[3].name = "loading";
  snap[3].bytes = GiB;
  snap[3].loading = true;
  RouterState s = MakeRouterState(snap, 10 * GiB);
  EXPECT_EQ(s.free_bytes, 3 * GiB);
  EXPECT_EQ(s.evictable_bytes, 3 * GiB);
  ASSERT_EQ(s.models.size(), 4u);
  EXPECT_EQ(s.models[1].queue_depth, 2);  // leases when no queue is given
  s = MakeRouterState(snap, 5 * GiB, [](const std::string& n) { return n == "idle" ? 7 : 0; });
  EXPECT_EQ(s.free_bytes, 0u);
  EXPECT_EQ(s.models[0].queue_depth, 7);
}

}  // namespace
}  // namespace qwenmux::orchestrator

namespace qwenmux::orchestrator {
namespace {

using ::testing::Not;

// --memory-budget over the config's memory section: the one rule of serve, plan and pipeline.
TEST(SetupTest, ResolveMemoryBudgetFlagOverridesFile) {
  const Config c = Parse("memory:\n  budget: 75%\n  reserve: 1GiB\n");
  auto b = ResolveMemoryBudget(c.memory, "24G", 64 * GiB);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->bytes, 24 * GiB);
  EXPECT_EQ(b->total_ram, 64 * GiB);
  EXPECT_THAT(b->description, HasSubstr("from --memory-budget"));
  b = ResolveMemoryBudget(c.memory, "75%", 64 * GiB);  // a share of RAM, as serve takes it
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->bytes, 48 * GiB);
  b = ResolveMemoryBudget(c.memory, "", 8 * GiB);  // the file's 75%, capped at 8 - 1 GiB reserved
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->bytes, 6 * GiB);
  EXPECT_THAT(b->description, Not(HasSubstr("--memory-budget")));
  b = ResolveMemoryBudget(c.memory, "100%", 8 * GiB);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->bytes, 7 * GiB);
  for (const char* bad : {"lots", "-1G", "0%", "150%"}) {
    auto r = ResolveMemoryBudget(c.memory, bad, 8 * GiB);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_THAT(r.status().ToString(), HasSubstr("--memory-budget")) << bad;
  }
  auto none = ResolveMemoryBudget(c.memory, "", GiB / 2);
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(none.status().message(), HasSubstr("leaves nothing for models"));
}

TEST(SetupTest, RoleFromPoolingIsTheOneRule) {
  EXPECT_EQ(RoleFromPooling(model::PoolingType::kNone), ModelRole::kChat);
  EXPECT_EQ(RoleFromPooling(model::PoolingType::kRank), ModelRole::kReranker);
  EXPECT_EQ(RoleFromPooling(model::PoolingType::kLast), ModelRole::kEmbedding);
  EXPECT_EQ(RoleFromPooling(model::PoolingType::kMean), ModelRole::kEmbedding);
  EXPECT_EQ(RoleFromPooling(model::PoolingType::kCls), ModelRole::kEmbedding);
}

// --model files get the flag options (context, sequences, threads) and a memory estimate at
// them, and the setup carries what the server shows, so nothing reopens the file.
TEST(SetupTest, ModelFlagOptionsAndFacts) {
  TempDir tmp;
  const std::string file = ModelPath("tiny-dense.q8_0.gguf");
  ServeInputs in;
  in.models_dir = tmp.path();
  in.total_ram = 8 * GiB;
  in.extra_models = {file + "=mini"};
  in.flag_models.n_ctx = 256;
  in.flag_models.parallel = 3;
  in.flag_models.threads = 2;
  auto s = BuildServeSetup(in);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->specs.size(), 1u);
  ASSERT_EQ(s->facts.size(), 1u);
  EXPECT_EQ(s->specs[0].load.n_ctx, 256);
  EXPECT_EQ(s->specs[0].load.n_seq, 3);
  EXPECT_EQ(s->specs[0].load.n_threads, 2u);
  auto est = EstimateModelMemory(file, s->specs[0].load);
  ASSERT_TRUE(est.ok());
  EXPECT_EQ(s->candidates[0].memory_bytes, est->total());

  auto f = gguf::File::Open(file);
  ASSERT_TRUE(f.ok());
  auto mc = model::ReadConfig(*f);
  ASSERT_TRUE(mc.ok());
  const ModelFacts& facts = s->facts[0];
  EXPECT_EQ(facts.arch, "qwen3");
  EXPECT_EQ(facts.file_bytes, std::filesystem::file_size(file));
  EXPECT_GT(facts.modified_unix, 0);
  EXPECT_EQ(facts.n_ctx_train, static_cast<int32_t>(mc->n_ctx_train));
  EXPECT_EQ(facts.n_embd, static_cast<int32_t>(mc->n_embd));
  EXPECT_EQ(s->candidates[0].role, ModelRole::kChat);
  EXPECT_EQ(s->candidates[0].quantization, "Q8_0");  // from the file name

  // A context above the training context is clipped to it.
  in.flag_models.n_ctx = static_cast<int32_t>(mc->n_ctx_train) * 2;
  s = BuildServeSetup(in);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->specs[0].load.n_ctx, static_cast<int32_t>(mc->n_ctx_train));
}

TEST(SetupTest, AllowNoModelsGivesAnEmptySetupWithItsBudget) {
  TempDir tmp;
  ServeInputs in;
  in.models_dir = tmp.path();
  in.total_ram = 8 * GiB;
  in.memory_budget = "2GiB";
  in.allow_no_models = true;
  auto s = BuildServeSetup(in);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(s->specs.empty());
  EXPECT_EQ(s->budget_bytes, 2 * GiB);
  EXPECT_EQ(s->manager.budget_bytes, 2 * GiB);
  EXPECT_EQ(s->models_dir, tmp.path());
  in.memory_budget = "lots";  // a bad budget is still an error
  EXPECT_FALSE(BuildServeSetup(in).ok());
}

}  // namespace
}  // namespace qwenmux::orchestrator
