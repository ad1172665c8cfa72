// The LoRA command line: `lora convert`, `refcheck --lora --section`, `run --lora FILE:SCALE`,
// `bench --lora`, `lora synth`, and a clear error for a bad --lora.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/run_command.h"
#include "lora/lora_util.h"

namespace qwenmux::testing {
namespace {

TEST(LoraCli, ConvertThenRefcheckMeetsTheBars) {
  LoraTempDir tmp;
  auto c = RunQwenmux("lora convert " + kLoraPeft + " " + (tmp / "a.gguf"), true);
  ASSERT_EQ(c.code, 0) << c.out;
  auto r = RunQwenmux("refcheck " + kLoraBase + " " + RefPath("tiny-dense.lora.json") +
                      " --section inference_q8_0_base --json -t 2 --device cpu --lora " + (tmp / "a.gguf") + ":1");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GE(j["top1"].get<double>(), 0.97);
  EXPECT_LE(j["probe_rms"].get<double>(), 0.12);
  EXPECT_GE(j["greedy_match"].get<int>(), 90);
}

TEST(LoraCli, RunAndBenchWithAnAdapter) {
  LoraTempDir tmp;
  auto base = RunQwenmux("run " + kLoraBase + " -p Hello -n 6 --temp 0 -t 2 --device cpu");
  auto full = RunQwenmux("run " + kLoraBase + " -p Hello -n 6 --temp 0 -t 2 --device cpu --lora " + kLoraGguf);
  auto zero = RunQwenmux("run " + kLoraBase + " -p Hello -n 6 --temp 0 -t 2 --device cpu --lora " + kLoraPeft + ":0");
  ASSERT_EQ(base.code, 0);
  ASSERT_EQ(full.code, 0);
  ASSERT_EQ(zero.code, 0);
  EXPECT_EQ(zero.out, base.out);  // scale 0 is the base model
  auto s = RunQwenmux("lora synth " + kLoraBase + " " + (tmp / "r16.gguf") + " --rank 16", true);
  ASSERT_EQ(s.code, 0) << s.out;
  auto b = RunQwenmux("bench " + kLoraBase + " -p 8 -n 4 -t 2 --device cpu --json --no-bandwidth --lora-seqs 2 --lora " + (tmp / "r16.gguf"));
  ASSERT_EQ(b.code, 0) << b.out;
  const auto j = nlohmann::json::parse(b.out);
  ASSERT_TRUE(j.contains("lora"));
  EXPECT_EQ(j["lora"]["rank"], 16);
  EXPECT_EQ(j["lora"]["projections"], 14);
  EXPECT_GT(j["lora"]["decode_tok_s"].get<double>(), 0);
  EXPECT_GT(j["decode_tok_s"].get<double>(), 0);
  ASSERT_TRUE(j["lora"].contains("mix"));
  EXPECT_EQ(j["lora"]["mix"]["sequences"], 2);
  EXPECT_GT(j["lora"]["mix"]["distinct_adapters_decode_tok_s"].get<double>(), 0);
}

TEST(LoraCli, BadAdapterIsAClearError) {
  auto r = RunQwenmux("run " + kLoraBase + " -p Hello -n 2 -t 2 --device cpu --lora " + kLoraBase, true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("not a LoRA adapter file"), std::string::npos) << r.out;
  r = RunQwenmux("lora convert /nonexistent-dir " + ::testing::TempDir() + "/x.gguf", true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("/nonexistent-dir/adapter_config.json"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace qwenmux::testing
