// qwenmux plan: catalog memory figures, speed estimates, the speed cache, tier suggestions and
// the command's JSON.
#include "orchestrator/plan/plan.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <ctime>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/run_command.h"
#include "common/testdata.h"
#include "orchestrator/temp_dir.h"

namespace qwenmux::orchestrator {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using qwenmux::testing::ModelPath;
using qwenmux::testing::TempDir;

constexpr uint64_t GiB = 1ull << 30;

const CatalogEntry& Entry(const char* name) {
  auto e = FindInCatalog(name);
  EXPECT_TRUE(e.ok()) << name;
  return **e;
}

TEST(PlanTest, VocabMetadataMatchesAFileWithTheRealVocab) {
  engine::LoadOptions o;
  o.n_ctx = 256;
  auto est = EstimateModelMemory(ModelPath("tiny-dense.q8_0.gguf"), o);
  ASSERT_TRUE(est.ok());
  const double ratio = static_cast<double>(Qwen3VocabMetadataBytes()) / static_cast<double>(est->metadata);
  EXPECT_NEAR(ratio, 1.0, 0.03) << "metadata of tiny-dense: " << est->metadata;
}

TEST(PlanTest, CatalogWeightsMatchPublishedFileSizes) {
  // File sizes of the official GGUFs (catalog.cc): all tensor data plus a ~6 MB header
  // (tokenizer metadata); our weight bytes must be the file minus that header.
  struct Known { const char* name; uint64_t file_bytes; };
  for (const Known& k : {Known{"qwen3:1.7b-q8_0", 1'834'426'016ull}, Known{"qwen3-embedding:0.6b-q8_0", 639'150'592ull}}) {
    auto cost = CatalogCost(Entry(k.name));
    ASSERT_TRUE(cost.ok()) << cost.status().ToString();
    EXPECT_LT(cost->weight_bytes, k.file_bytes) << k.name;
    EXPECT_GT(cost->weight_bytes, k.file_bytes - 12'000'000) << k.name;  // header of 6-12 MB
  }
}

TEST(PlanTest, CatalogMemoryGrowsWithContextAndQuantization) {
  engine::LoadOptions small, big;
  small.n_ctx = 1024;
  big.n_ctx = 16384;
  auto a = EstimateCatalogMemory(Entry("qwen3:8b-q4_k_m"), small);
  auto b = EstimateCatalogMemory(Entry("qwen3:8b-q4_k_m"), big);
  auto c = EstimateCatalogMemory(Entry("qwen3:8b-q8_0"), small);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  // KV: 2 x 36 layers x 8 heads x 128 x 2 bytes = 144 KiB per token.
  EXPECT_EQ(b->kv_cache - a->kv_cache, (16384ull - 1024) * 2 * 36 * 8 * 128 * 2);
  EXPECT_EQ(a->weights + a->metadata, b->weights + b->metadata);
  EXPECT_GT(c->weights, a->weights * 3 / 2);
  // The catalog lists only files the engine can run (the Q5_0 files of the Qwen repos are left out).
  for (const CatalogEntry& e : Catalog()) {
    auto cost = CatalogCost(e);
    ASSERT_TRUE(cost.ok()) << e.name;
    EXPECT_TRUE(cost->engine_supported) << e.name;
  }
  EXPECT_FALSE(FindInCatalog("qwen3:8b-q5_0").ok());
  EXPECT_TRUE(CatalogCost(Entry("qwen3:8b-q5_k_m"))->engine_supported);
}

TEST(PlanTest, ModelCostsCountWhatDecodeReads) {
  std::vector<gguf::TensorInfo> t(4);
  t[0].name = "token_embd.weight";
  t[0].n_dims = 2;
  t[0].ne[0] = 64;
  t[0].ne[1] = 1000;
  t[0].n_bytes = 64000;
  t[1].name = "blk.0.ffn_up_exps.weight";
  t[1].n_dims = 3;
  t[1].ne[0] = 64;
  t[1].ne[1] = 32;
  t[1].ne[2] = 8;
  t[1].n_bytes = 8 * 4096;
  t[2].name = "blk.0.attn_norm.weight";
  t[2].n_dims = 1;
  t[2].ne[0] = 64;
  t[2].n_bytes = 256;
  t[3].name = "output.weight";
  t[3].n_dims = 2;
  t[3].ne[0] = 64;
  t[3].ne[1] = 1000;
  t[3].n_bytes = 64000;
  std::vector<TensorCost> c = ModelCosts(t, 8, 2);
  ASSERT_EQ(c.size(), 2u);  // embedding lookup and norm skipped
  EXPECT_EQ(c[0].bytes_per_token, 2u * 4096);  // 2 of 8 experts
  EXPECT_EQ(c[0].macs_per_token, 2u * 64 * 32);
  EXPECT_EQ(c[0].calls, 2u);
  EXPECT_EQ(c[1].bytes_per_token, 64000u);
  EXPECT_FALSE(c[0].head);
  EXPECT_TRUE(c[1].head);
  // Tied: the embedding table is the output head.
  t.pop_back();
  c = ModelCosts(t, 8, 2);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].bytes_per_token, 64000u);
  EXPECT_TRUE(c[0].head);
}

TEST(PlanTest, EstimateSpeed) {
  std::vector<TensorCost> costs = {{gguf::TensorType::kQ8_0, 1'000'000'000, 1'000'000'000},
                                   {gguf::TensorType::kQ6_K, 500'000'000, 1'000'000'000}};
  EXPECT_EQ(EstimateSpeed(costs, nullptr).source, "");
  MachineSpeed bw;
  bw.read_GBps = 10;
  SpeedEstimate e = EstimateSpeed(costs, &bw);
  EXPECT_EQ(e.source, "bandwidth");
  EXPECT_NEAR(e.decode_tok_s, 10e9 * kAssumedDecodeEfficiency / 1.5e9, 1e-9);
  EXPECT_EQ(e.prefill_tok_s, 0.0);
  MachineSpeed m = bw;
  m.types["q8_0"] = {5.0, 20.0};
  m.types["q6_K"] = {2.5, 10.0};
  e = EstimateSpeed(costs, &m);
  EXPECT_EQ(e.source, "measured");
  EXPECT_NEAR(e.decode_tok_s, 1.0 / (1.0 / 5 + 0.5 / 2.5), 1e-9);     // 0.2 s + 0.2 s per token
  EXPECT_NEAR(e.prefill_tok_s, 1.0 / (1.0 / 20 + 1.0 / 10), 1e-9);   // 0.05 s + 0.1 s per token
  // An unmeasured type: bandwidth x efficiency for decode, the slowest prefill rate.
  costs.push_back({gguf::TensorType::kF32, 700'000'000, 100'000'000});
  e = EstimateSpeed(costs, &m);
  EXPECT_NEAR(e.decode_tok_s, 1.0 / (0.4 + 0.7 / 7.0), 1e-9);
  EXPECT_NEAR(e.prefill_tok_s, 1.0 / (0.15 + 0.1 / 10), 1e-9);
  // A fixed cost per matmul call adds to decode only.
  m.call_overhead_us = 50000;  // 0.05 s
  costs[0].calls = 2;
  e = EstimateSpeed(costs, &m);
  EXPECT_NEAR(e.decode_tok_s, 1.0 / (0.5 + 4 * 0.05), 1e-9);
  EXPECT_NEAR(e.prefill_tok_s, 1.0 / (0.15 + 0.1 / 10), 1e-9);
  // The output head is read for every decoded token but runs for a prompt's last position only.
  m.call_overhead_us = 0;
  costs.push_back({gguf::TensorType::kQ8_0, 1'000'000'000, 2'000'000'000, 1, /*head=*/true});
  e = EstimateSpeed(costs, &m);
  EXPECT_NEAR(e.decode_tok_s, 1.0 / (0.5 + 1.0 / 5), 1e-9);
  EXPECT_NEAR(e.prefill_tok_s, 1.0 / (0.15 + 0.1 / 10), 1e-9);
}

TEST(PlanTest, SpeedCacheRoundTrip) {
  TempDir tmp;
  const std::string path = SpeedCachePath(tmp.path() + "/sub");
  auto none = LoadSpeedCache(path, "m1");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  MachineSpeed a;
  a.machine = "m1";
  a.threads = 2;
  a.read_GBps = 9.5;
  a.types["q4_K"] = {7.0, 30.0};
  a.measured_unix = 1234;
  a.call_overhead_us = 12.5;
  MachineSpeed b = a;
  b.machine = "m2";
  b.read_GBps = 20;
  ASSERT_TRUE(SaveSpeedCache(path, a).ok());
  ASSERT_TRUE(SaveSpeedCache(path, b).ok());
  auto got = LoadSpeedCache(path, "m1");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->read_GBps, 9.5);
  EXPECT_EQ((*got)->types.at("q4_K").prefill_GMACs, 30.0);
  EXPECT_EQ((*got)->measured_unix, 1234);
  EXPECT_EQ((*got)->call_overhead_us, 12.5);
  EXPECT_EQ((*LoadSpeedCache(path, "m2"))->read_GBps, 20.0);
  // A corrupt cache is an error when read and replaced when written.
  std::ofstream(path) << "{ not json";
  auto bad = LoadSpeedCache(path, "m1");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kCorrupt);
  std::ofstream(path) << R"({"m1": {"machine": "m1", "threads": 2, "read_GBps": "fast", "types": {}}})";
  EXPECT_FALSE(LoadSpeedCache(path, "m1").ok());
  ASSERT_TRUE(SaveSpeedCache(path, a).ok());
  EXPECT_TRUE(LoadSpeedCache(path, "m1").ok());
}

TEST(PlanTest, MeasureSmallRing) {
  MeasureOptions o;
  o.threads = 1;
  o.ring_bytes = 4 << 20;
  o.decode_passes = 1;
  o.prefill_tokens = 8;
  o.types = {gguf::TensorType::kQ8_0, gguf::TensorType::kQ4_K};
  auto m = MeasureMachineSpeed(o);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->machine, MachineKey(1));
  EXPECT_GT(m->read_GBps, 0.0);
  EXPECT_GE(m->call_overhead_us, 0.0);  // an intercept: may come out 0 on a noisy machine
  ASSERT_EQ(m->types.size(), 2u);
  for (const auto& [name, r] : m->types) {
    EXPECT_GT(r.decode_GBps, 0.0) << name;
    EXPECT_GT(r.prefill_GMACs, 0.0) << name;
    EXPECT_GE(r.decode_spread, 0.0) << name;
    EXPECT_LE(r.decode_spread, m->spread) << name;
    EXPECT_LE(r.prefill_spread, m->spread) << name;
  }
  EXPECT_EQ(m->binary, BinaryId());
  EXPECT_FALSE(m->binary.empty());
  EXPECT_TRUE(m->load_1m >= 0.0);  // /proc/loadavg
  o.types = {gguf::TensorType::kQ5_0};  // no kernel
  EXPECT_FALSE(MeasureMachineSpeed(o).ok());
}

// Issue 21 item 16 (part): a calibration expires (a week; an hour when taken on a busy machine),
// a busy one is said, a decode share over 100% of the bandwidth is never printed, and a call
// overhead under a microsecond is not "0.0 us".
TEST(PlanTest, CalibrationExpiresBusyIsSaidSharesCapped) {
  MachineSpeed s;
  s.machine = "m";
  s.threads = 2;
  s.read_GBps = 5.0;
  s.call_overhead_us = 0.04;
  s.types["q8_0"] = {12.65, 40.0};  // 253% of the (under-measured) bandwidth
  s.measured_unix = 1000;
  s.cpus = 2;
  s.load_1m = 0.2;
  EXPECT_FALSE(s.Busy());
  EXPECT_FALSE(s.Expired(1000 + 6 * 86400));
  EXPECT_TRUE(s.Expired(1000 + 8 * 86400));
  EXPECT_TRUE(s.Expired(500));  // from the future: the clock moved
  // Another build of qwenmux re-measures; "" skips that check.
  s.binary = "123-456";
  EXPECT_FALSE(s.Expired(1000 + 600, "123-456"));
  EXPECT_EQ(s.ExpiredReason(1000 + 600, "999-456"), "taken by another build of qwenmux");
  EXPECT_FALSE(s.Expired(1000 + 600));
  // Repeats that disagreed count as busy.
  s.spread = 0.6;
  EXPECT_TRUE(s.Noisy());
  EXPECT_TRUE(s.Busy());
  EXPECT_TRUE(s.Expired(1000 + 3601));
  s.spread = 0.1;
  EXPECT_FALSE(s.Busy());
  s.load_1m = 3.0;
  EXPECT_TRUE(s.Busy());
  EXPECT_FALSE(s.Expired(1000 + 600));
  EXPECT_TRUE(s.Expired(1000 + 3601));
  EXPECT_EQ(s.ExpiredReason(1000 + 3601), "taken on a busy machine over an hour ago");
  TempDir tmp;
  const std::string path = SpeedCachePath(tmp.path());
  ASSERT_TRUE(SaveSpeedCache(path, s).ok());
  auto back = LoadSpeedCache(path, "m");
  ASSERT_TRUE(back.ok() && back->has_value());
  EXPECT_EQ((*back)->load_1m, 3.0);
  EXPECT_EQ((*back)->cpus, 2u);
  EXPECT_EQ((*back)->binary, "123-456");
  EXPECT_EQ((*back)->spread, 0.1);

  PlanOptions o;
  o.context = 4096;
  o.total_ram = 64 * GiB;
  o.budget_bytes = 16 * GiB;
  o.speed = &s;
  auto plan = BuildPlan(o);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  const std::string text = PlanToText(*plan);
  EXPECT_EQ(text.find("253%"), std::string::npos) << text;
  EXPECT_NE(text.find("100% of bandwidth, suspicious: bandwidth measured low"), std::string::npos) << text;
  const nlohmann::json j = PlanToJson(*plan);
  EXPECT_EQ(j["speed"]["types"]["q8_0"]["decode_efficiency"].get<double>(), 1.0) << j["speed"].dump();
  EXPECT_TRUE(j["speed"]["types"]["q8_0"].value("suspicious", false)) << j["speed"].dump();
  EXPECT_EQ(s.SuspiciousTypes(), std::vector<std::string>{"q8_0"});
  EXPECT_NE(text.find("warning: measured while the machine was busy (load 3.0 on 2 cpus)"), std::string::npos) << text;
  EXPECT_NE(text.find("40 ns per matmul call"), std::string::npos) << text;
  EXPECT_EQ(text.find("0.0 us"), std::string::npos) << text;
  EXPECT_EQ(text.find("repeats of the measurement disagreed"), std::string::npos) << text;
  s.spread = 0.45;
  auto noisy = BuildPlan(o);
  ASSERT_TRUE(noisy.ok());
  EXPECT_NE(PlanToText(*noisy).find("warning: the repeats of the measurement disagreed by up to 45%"), std::string::npos);
}

TEST(PlanTest, FitsAndTiersFollowTheBudget) {
  PlanOptions o;
  o.context = 4096;
  o.total_ram = 64 * GiB;
  for (uint64_t budget : {1 * GiB / 2, 3 * GiB / 2, 4 * GiB, 12 * GiB, 24 * GiB, 100 * GiB}) {
    o.budget_bytes = budget;
    auto plan = BuildPlan(o);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    ASSERT_EQ(plan->rows.size(), Catalog().size());
    // Wiring check: `fits` is the row's own estimate against the budget (the estimate itself is
    // held to measured RSS in manager_estimate_test and to file sizes above).
    for (const PlanRow& r : plan->rows) EXPECT_EQ(r.fits, r.memory.total() <= budget) << r.entry->name;
    ASSERT_EQ(plan->tiers.size(), 4u);
    // The fast tier's own note never speaks of fitting beside the fast tier (issue 21 item 18).
    EXPECT_EQ(plan->tiers[0].note.find("beside the fast tier"), std::string::npos) << plan->tiers[0].note;
    const PlanRow* fast = plan->tiers[0].row;
    for (const TierPick& t : plan->tiers) {
      if (!t.row) continue;
      EXPECT_TRUE(t.row->engine_supported);
      // Each tier's model fits beside the fast tier's.
      ASSERT_NE(fast, nullptr) << t.tier;
      const uint64_t together = t.row == fast ? fast->memory.total() : fast->memory.total() + t.row->memory.total();
      EXPECT_LE(together, budget) << t.tier;
    }
    if (budget == 100 * GiB) {  // everything fits: the default tiers
      for (size_t i = 0; i < 4; ++i) {
        ASSERT_NE(plan->tiers[i].row, nullptr);
        EXPECT_EQ(plan->tiers[i].row->entry->name, DefaultTiers()[i].target);
        EXPECT_EQ(plan->tiers[i].note, "");
      }
    }
    if (budget == GiB / 2) {
      for (const TierPick& t : plan->tiers) EXPECT_EQ(t.row, nullptr);
    }
    if (budget == 12 * GiB) {  // 1.7B Q4_K_M + 8B Q8_0 fit; 14B Q8_0 does not beside it
      EXPECT_EQ(plan->tiers[0].row->entry->name, "qwen3:1.7b-q4_k_m");
      EXPECT_EQ(plan->tiers[1].row->entry->name, "qwen3:8b-q8_0");
      EXPECT_NE(plan->tiers[2].row->entry->name, "qwen3:14b-q8_0");
      EXPECT_THAT(plan->tiers[2].note, HasSubstr("does not fit beside"));
    }
  }
  o.context = 0;
  EXPECT_FALSE(BuildPlan(o).ok());
}

// GPU columns with a fake 24 GiB card: each model's device-memory estimate against the GPU budget.
TEST(PlanTest, GpuMemoryAndWhatFitsThere) {
  PlanOptions o;
  o.context = 4096;
  o.total_ram = 64 * GiB;
  o.budget_bytes = 48 * GiB;
  o.gpu.available = true;
  o.gpu.name = "Fake 24GB";
  o.gpu.total_bytes = 24 * GiB;
  o.gpu.free_bytes = 23 * GiB;
  o.gpu_budget_bytes = ResolveGpuBudget(MemoryAmount{true, 0, 90.0}, o.gpu);
  auto plan = BuildPlan(o);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  int fit = 0, not_fit = 0;
  for (const PlanRow& r : plan->rows) {
    EXPECT_EQ(r.fits_gpu, r.device_memory.total() <= o.gpu_budget_bytes) << r.entry->name;
    EXPECT_GE(r.device_memory.weights, r.memory.weights - r.memory.weights / 100) << r.entry->name;  // as uploaded
    EXPECT_EQ(r.device_memory.kv_cache, r.memory.kv_cache) << r.entry->name;  // f16 K and V alike
    (r.fits_gpu ? fit : not_fit)++;
    if (r.entry->name == std::string("qwen3:8b-q4_k_m")) {
      EXPECT_TRUE(r.fits_gpu);
    }
    if (r.entry->name == std::string("qwen3:30b-a3b-q8_0")) {
      EXPECT_FALSE(r.fits_gpu);  // 30+ GiB of weights
    }
  }
  EXPECT_GT(fit, 0);
  EXPECT_GT(not_fit, 0);
  const auto j = PlanToJson(*plan);
  EXPECT_EQ(j["gpu"]["name"], "Fake 24GB");
  EXPECT_EQ(j["gpu"]["budget_bytes"], o.gpu_budget_bytes);
  EXPECT_TRUE(j["models"][0].contains("device_memory_bytes"));
  EXPECT_TRUE(j["models"][0].contains("fits_gpu"));
  const std::string text = PlanToText(*plan);
  EXPECT_THAT(text, HasSubstr("GPU cuda:0 Fake 24GB (23.0 GiB free of 24.0 GiB), GPU budget"));
  EXPECT_THAT(text, HasSubstr("gpu memory"));
}

struct CliRun {
  int code = -1;
  std::string out, err;
};

CliRun Qwenmux(const std::string& env, const std::string& args) {
  TempDir tmp;
  qwenmux::testing::CommandResult c =
      qwenmux::testing::RunCommand(env + " " + ::qwenmux::testing::QwenmuxBinary() + " " + args + " 2>" + tmp.path() + "/err");
  CliRun r;
  r.code = c.code;
  r.out = std::move(c.out);
  std::ifstream e(tmp.path() + "/err");
  r.err.assign(std::istreambuf_iterator<char>(e), {});
  return r;
}

TEST(PlanCliTest, JsonFollowsTheBudget) {
  TempDir cache;
  const std::string env = "XDG_CACHE_HOME=" + cache.path();
  CliRun r = Qwenmux(env, "plan --json --no-measure --context 2048 --memory-budget 6GiB");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["context"], 2048);
  EXPECT_EQ(j["budget_bytes"], 6 * GiB);
  EXPECT_TRUE(j["speed"].is_null());
  ASSERT_EQ(j["models"].size(), Catalog().size());
  int fit = 0, not_fit = 0;
  for (const auto& m : j["models"]) {
    for (const char* k : {"name", "role", "quantization", "params", "memory_bytes", "fits", "decode_tok_s", "memory"})
      ASSERT_TRUE(m.contains(k)) << k;
    // Wiring check: the JSON's fits is memory_bytes against the 6 GiB budget.
    EXPECT_EQ(m["fits"].get<bool>(), m["memory_bytes"].get<uint64_t>() <= 6 * GiB) << m["name"];
    EXPECT_TRUE(m["decode_tok_s"].is_null());
    (m["fits"].get<bool>() ? fit : not_fit)++;
  }
  EXPECT_GT(fit, 0);
  EXPECT_GT(not_fit, 0);
  ASSERT_EQ(j["tiers"].size(), 4u);
  EXPECT_EQ(j["tiers"][0]["tier"], "qwen3-fast");
  EXPECT_EQ(j["tiers"][0]["model"], "qwen3:1.7b-q4_k_m");
  EXPECT_NE(j["tiers"][1]["model"], "qwen3:8b-q8_0");  // 9+ GiB does not fit in 6

  // With cached figures for this machine the speeds appear.
  MachineSpeed s;
  s.machine = MachineKey(0);
  s.threads = 2;
  s.read_GBps = 10;
  for (const char* t : {"q4_K", "q5_K", "q6_K", "q8_0", "f16", "bf16"}) s.types[t] = {8.0, 25.0};
  ASSERT_TRUE(SaveSpeedCache(SpeedCachePath(cache.path() + "/qwenmux"), s).ok());
  r = Qwenmux(env, "plan --json --no-measure --memory-budget 6GiB");
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["speed"]["read_GBps"], 10.0);
  EXPECT_TRUE(j["models"][0]["decode_tok_s"].is_number());
  EXPECT_EQ(j["models"][0]["speed_source"], "measured");
  // Smaller models decode faster.
  double d06 = 0, d8 = 0;
  for (const auto& m : j["models"]) {
    if (m["name"] == "qwen3:0.6b-q4_k_m") d06 = m["decode_tok_s"];
    if (m["name"] == "qwen3:8b-q4_k_m") d8 = m["decode_tok_s"];
  }
  EXPECT_GT(d06, 5 * d8);

  // Text output and errors.
  r = Qwenmux(env, "plan --no-measure --memory-budget 6GiB");
  ASSERT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("suggested tiers for this machine"));
  EXPECT_THAT(r.out, HasSubstr("qwen3-fast      qwen3:1.7b-q4_k_m"));
  r = Qwenmux(env, "plan --no-measure --memory-budget lots");
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("--memory-budget"));
}

// What this machine's GPU query says (no GPU here: the reason), and the device-memory column.
// Item 16: a calibration taken by another build of qwenmux (a fresh one, on a quiet machine) is
// measured again, said on stderr; the new entry carries this build's identity and is reused.
TEST(PlanCliTest, AnotherBuildsCalibrationIsMeasuredAgain) {
  TempDir cache;
  const std::string env = "XDG_CACHE_HOME=" + cache.path();
  const std::string path = SpeedCachePath(cache.path() + "/qwenmux");
  MachineSpeed s;
  s.machine = MachineKey(1);
  s.threads = 1;
  s.read_GBps = 10;
  s.types["q8_0"] = {8.0, 25.0};
  s.measured_unix = static_cast<int64_t>(std::time(nullptr));
  s.cpus = 2;
  s.load_1m = 0.1;
  s.binary = "1-2.000000003";  // not this build
  ASSERT_TRUE(SaveSpeedCache(path, s).ok());
  CliRun r = Qwenmux(env, "plan --threads 1 --ring-mib 4");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("has expired (taken by another build of qwenmux); measuring again")) << r.err;
  EXPECT_THAT(r.out, HasSubstr("measured now")) << r.out;
  auto fresh = LoadSpeedCache(path, MachineKey(1));
  ASSERT_TRUE(fresh.ok() && fresh->has_value());
  EXPECT_NE((*fresh)->binary, s.binary);
  EXPECT_FALSE((*fresh)->binary.empty());
  EXPECT_EQ((*fresh)->types.size(), 6u);
  r = Qwenmux(env, "plan --threads 1 --ring-mib 4");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("expired"))) << r.err;
  EXPECT_THAT(r.out, HasSubstr("cached")) << r.out;
}

TEST(PlanCliTest, ShowsTheGpu) {
  TempDir cache;
  const std::string env = "XDG_CACHE_HOME=" + cache.path();
  CliRun r = Qwenmux(env, "plan --json --no-measure --gpu-memory-budget 8GiB");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  const runtime::CudaDeviceInfo gpu = runtime::QueryCudaDevice(0);
  EXPECT_EQ(j["gpu"]["available"], gpu.available);
  if (!gpu.available) {
    EXPECT_EQ(j["gpu"]["why"], gpu.why);
    EXPECT_EQ(j["gpu"]["budget_bytes"], 0);
  } else {
    EXPECT_EQ(j["gpu"]["budget_bytes"], std::min<uint64_t>(8 * GiB, j["gpu"]["free_bytes"].get<uint64_t>()));
  }
  for (const auto& m : j["models"]) {
    EXPECT_GT(m["device_memory_bytes"].get<uint64_t>(), m["weights_bytes"].get<uint64_t>() / 2) << m["name"];
    if (!gpu.available) {
      EXPECT_FALSE(m["fits_gpu"].get<bool>());
    }
  }
  r = Qwenmux(env, "plan --no-measure");
  ASSERT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("GPU cuda:0"));
  if (!gpu.available) {
    EXPECT_THAT(r.out, HasSubstr("unavailable: " + gpu.why));
  }
  r = Qwenmux(env, "plan --no-measure --gpu-memory-budget lots");
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("--gpu-memory-budget"));
}

}  // namespace
}  // namespace qwenmux::orchestrator
