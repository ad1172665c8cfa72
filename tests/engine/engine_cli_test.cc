// The engine's commands end to end: run streams text, bench prints its JSON fields, and bad
// input (truncated model, empty prompt, bad reference file) gives a clear error and exit code 1.
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/run_command.h"
#include "common/testdata.h"

namespace {

struct Out {
  int code;
  std::string text;  // stdout + stderr
};

Out RunCli(const std::string& args) {
  qwenmux::testing::CommandResult r = qwenmux::testing::RunQwenmux(args, /*merge_stderr=*/true);
  return {r.code, std::move(r.out)};
}

const std::string kDense = qwenmux::testing::ModelPath("tiny-dense.q8_0.gguf");

TEST(EngineCli, RunStreamsAndReportsSpeed) {
  const Out o = RunCli("run " + kDense + " -p 'Hello' -n 8 --temp 0 -t 2");
  EXPECT_EQ(o.code, 0) << o.text;
  EXPECT_NE(o.text.find("decode 8 tokens"), std::string::npos) << o.text;
  EXPECT_NE(o.text.find("tok/s"), std::string::npos);
}

TEST(EngineCli, BenchPrintsJson) {
  const Out o = RunCli("bench " + kDense + " -p 16 -n 4 -t 2 --json --no-bandwidth 2>/dev/null");
  ASSERT_EQ(o.code, 0) << o.text;
  const auto j = nlohmann::json::parse(o.text);
  for (const char* k : {"prefill_tok_s", "decode_tok_s", "decode_GBps", "peak_rss_bytes", "weights_bytes"}) {
    ASSERT_TRUE(j.contains(k)) << k;
    EXPECT_GT(j[k].get<double>(), 0) << k;
  }
}

TEST(EngineCli, BadInputGivesClearErrors) {
  const std::string trunc = ::testing::TempDir() + "/truncated.gguf";
  {
    std::ifstream in(kDense, std::ios::binary);
    std::string head(20 << 20, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    std::ofstream(trunc, std::ios::binary) << head;
  }
  Out o = RunCli("run " + trunc + " -p hi");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("data ends past end of file"), std::string::npos) << o.text;
  o = RunCli("run " + kDense + " -p ''");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("empty prompt"), std::string::npos) << o.text;
  o = RunCli("refcheck " + kDense + " " + trunc);
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("not valid JSON"), std::string::npos) << o.text;
  o = RunCli("bench /no/such.gguf");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.text.find("/no/such.gguf"), std::string::npos) << o.text;
  std::remove(trunc.c_str());
}

// inspect --json on tiny-dense, against the file's description in ../shared/testdata/README.md:
// hidden 256, 2 layers, 4 heads, 2 KV heads, head_dim 128, FFN 768, tied embeddings, rope base
// 1e6, the real Qwen3 vocabulary; all matrices Q8_0, norms F32.
TEST(EngineCli, InspectDescribesTheFile) {
  const Out o = RunCli("inspect " + kDense + " --json 2>/dev/null");
  ASSERT_EQ(o.code, 0) << o.text;
  const auto j = nlohmann::json::parse(o.text);
  EXPECT_EQ(j["architecture"], "qwen3");
  const auto& h = j["hparams"];
  EXPECT_EQ(h["embedding_length"], 256);
  EXPECT_EQ(h["block_count"], 2);
  EXPECT_EQ(h["head_count"], 4);
  EXPECT_EQ(h["head_count_kv"], 2);
  EXPECT_EQ(h["head_dim"], 128);
  EXPECT_EQ(h["feed_forward_length"], 768);
  EXPECT_EQ(h["tied_embeddings"], true);
  EXPECT_DOUBLE_EQ(h["rope_freq_base"].get<double>(), 1e6);
  EXPECT_EQ(h["vocab_size"], 151936);
  EXPECT_EQ(j["tokenizer"]["tokens"], 151936);
  std::set<std::string> types;
  for (const auto& [type, e] : j["totals_by_type"].items()) types.insert(type);
  EXPECT_EQ(types, (std::set<std::string>{"f32", "q8_0"})) << j["totals_by_type"].dump();
  uint64_t sum = 0;
  for (const auto& t : j["tensors"]) {
    sum += t["bytes"].get<uint64_t>();
    const std::string name = t["name"];
    if (name.find("norm") != std::string::npos) EXPECT_EQ(t["type"], "f32") << name;
    else EXPECT_EQ(t["type"], "q8_0") << name;
  }
  EXPECT_EQ(j["weights_bytes"].get<uint64_t>(), sum);
  // Text form: the same facts for a person.
  const Out text = RunCli("inspect " + kDense);
  ASSERT_EQ(text.code, 0) << text.text;
  EXPECT_NE(text.text.find("architecture:  qwen3"), std::string::npos) << text.text;
  EXPECT_NE(text.text.find("token_embd.weight"), std::string::npos);
}

// refcheck's success path: the dense model against its transformers reference, at the README's
// bars (top1 >= 0.98, probe_rms <= 0.12, greedy >= 90/96), and --dump writes our outputs.
TEST(EngineCli, RefcheckMeetsTheBars) {
  const std::string dump = ::testing::TempDir() + "/refcheck-dump.json";
  const Out o = RunCli("refcheck " + kDense + " " + qwenmux::testing::RefPath("tiny-dense.hf-q8_0.json") +
                       " --json -t 2 --dump " + dump + " 2>/dev/null");
  ASSERT_EQ(o.code, 0) << o.text;
  const auto j = nlohmann::json::parse(o.text);
  EXPECT_EQ(j["positions"], 446);
  EXPECT_GE(j["top1"].get<double>(), 0.98);
  EXPECT_LE(j["probe_rms"].get<double>(), 0.12);
  EXPECT_GE(j["greedy_match"].get<int>(), 90);
  EXPECT_EQ(j["greedy_total"], 96);
  EXPECT_GE(j["embedding_min_cos"].get<double>(), 0.999);
  EXPECT_LE(j["rerank_max_diff"].get<double>(), 0.01);
  std::ifstream in(dump);
  const auto d = nlohmann::json::parse(in, nullptr, false);
  ASSERT_FALSE(d.is_discarded()) << dump;
  EXPECT_EQ(d["embeddings"].size(), 3u);
  EXPECT_EQ(d["rerank"].size(), 2u);
  std::remove(dump.c_str());
}

}  // namespace
