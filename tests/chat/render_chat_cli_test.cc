// `qwenmux render-chat CASE.json` prints the prompt byte for byte; errors go to stderr, exit 1.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include "common/paths.h"

namespace {

using Json = nlohmann::ordered_json;

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

RunResult RunRenderChat(const std::filesystem::path& case_file) {
  const std::filesystem::path dir = testing::TempDir();
  const std::filesystem::path out = dir / "render_chat.out";
  const std::filesystem::path err = dir / "render_chat.err";
  const std::string cmd = std::string("'") + ::qwenmux::testing::QwenmuxBinary() + "' render-chat '" +
                          case_file.string() + "' >'" + out.string() + "' 2>'" + err.string() + "'";
  RunResult r;
  const int status = std::system(cmd.c_str());
  if (status != -1 && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  r.out = ReadAll(out);
  r.err = ReadAll(err);
  return r;
}

std::filesystem::path WriteTemp(const std::string& name, const std::string& text) {
  const std::filesystem::path path = std::filesystem::path(testing::TempDir()) / name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(RenderChatCli, PrintsReferenceRenderExactly) {
  const Json cases =
      Json::parse(ReadAll(::qwenmux::testing::TestdataDir() + "/refs/chat-template-cases.json"), nullptr, false);
  ASSERT_TRUE(cases.is_array());
  // One case with tools and tool results, one with enable_thinking=false.
  for (const char* name : {"tool_roundtrip", "no_think"}) {
    for (const Json& c : cases) {
      if (c.at("name") != name || !c.at("add_generation_prompt").get<bool>()) continue;
      const RunResult r = RunRenderChat(WriteTemp("render_chat_case.json", c.dump()));
      EXPECT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(r.out, c.at("rendered").get<std::string>()) << name;
      EXPECT_EQ(r.err, "");
    }
  }
}

TEST(RenderChatCli, ErrorsGoToStderr) {
  RunResult r = RunRenderChat(
      WriteTemp("render_chat_bad.json", R"({"messages": [{"role": "foo", "content": "x"}]})"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("messages[0].role: unknown role \"foo\""), std::string::npos) << r.err;

  r = RunRenderChat(WriteTemp("render_chat_notjson.json", "{not json"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("not valid JSON"), std::string::npos) << r.err;

  r = RunRenderChat(std::filesystem::path(testing::TempDir()) / "does-not-exist.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot open"), std::string::npos) << r.err;
}

}  // namespace
