// `qwenmux tokenize` end to end.
#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "common/run_command.h"
#include "common/testdata.h"

namespace {

struct CmdResult {
  int code;
  std::string out;
};

CmdResult RunCommand(const std::string& args) {
  qwenmux::testing::CommandResult r = qwenmux::testing::RunQwenmux("tokenize " + args, /*merge_stderr=*/false);
  return {r.code, std::move(r.out)};
}

std::string Vocab() { return qwenmux::testing::ModelPath("qwen3-vocab.gguf"); }

TEST(TokenizeCli, Json) {
  // Reference: "Hello world" -> [9707, 1879].
  CmdResult r = RunCommand(Vocab() + " 'Hello world' --json");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "{\"ids\": [9707, 1879]}\n");
  r = RunCommand(qwenmux::testing::ModelPath("tiny-moe.q4_k_m.gguf") + " ' Hello world'");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "21927 1879\n");
}

TEST(TokenizeCli, SpecialFlag) {
  CmdResult with = RunCommand(Vocab() + " '<|im_end|>' --json --special");
  EXPECT_EQ(with.code, 0);
  EXPECT_EQ(with.out, "{\"ids\": [151645]}\n");
  CmdResult without = RunCommand(Vocab() + " '<|im_end|>' --json");
  EXPECT_EQ(without.code, 0);
  EXPECT_EQ(without.out.find("151645"), std::string::npos);
}

TEST(TokenizeCli, Errors) {
  EXPECT_EQ(RunCommand("/nonexistent/model.gguf hello").code, 1);
  // A file that is not GGUF.
  EXPECT_EQ(RunCommand(qwenmux::testing::RefPath("tokenizer-cases.json") + " hello").code, 1);
  // Missing TEXT argument: CLI11 usage error, non-zero.
  EXPECT_NE(RunCommand(Vocab()).code, 0);
}

TEST(TokenizeCli, ErrorGoesToStderr) {
  const std::string cmd =
      ::qwenmux::testing::QwenmuxBinary() + " tokenize /nonexistent/model.gguf hello 2>&1 1>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[512];
  const size_t n = fread(buf, 1, sizeof(buf) - 1, p);
  pclose(p);
  EXPECT_GT(n, 0u);
  EXPECT_NE(std::string(buf, n).find("error"), std::string::npos);
}

}  // namespace
