// The engine's commands end to end: run streams text, bench prints its JSON fields, and bad
// input (truncated model, empty prompt, bad reference file) gives a clear error and exit code 1.
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
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

}  // namespace
