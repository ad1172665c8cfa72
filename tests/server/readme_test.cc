// The README's examples still run (issue 21, README items): the quick-start chat request, sent as
// written to a server with the tiny model under the quick start's name, answers with content; every
// command of the "Commands" list exists (`qwenmux CMD --help`).
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/paths.h"
#include "common/run_command.h"
#include "common/testdata.h"
#include "server/http_client.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::ModelPath;
using qwenmux::testing::ServerProcess;

std::string Readme() {
  std::ifstream in(qwenmux::testing::SourceDir() + "/README.md");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The body of the first `curl ... /v1/chat/completions ... -d '...'` of the README.
std::string QuickStartBody(const std::string& readme) {
  const size_t curl = readme.find("curl -s localhost:11434/v1/chat/completions");
  if (curl == std::string::npos) return "";
  const size_t open = readme.find("-d '", curl);
  if (open == std::string::npos) return "";
  const size_t close = readme.find('\'', open + 4);
  if (close == std::string::npos) return "";
  return readme.substr(open + 4, close - open - 4);
}

TEST(ReadmeExamples, QuickStartRequestAnswersWithContent) {
  const std::string readme = Readme();
  ASSERT_FALSE(readme.empty());
  const std::string body = QuickStartBody(readme);
  const json request = json::parse(body, nullptr, false);
  ASSERT_FALSE(request.is_discarded()) << "the quick-start request is not JSON:\n" << body;
  ASSERT_EQ(request.value("model", ""), "tiny") << body;  // scripts/run.sh serves the tiny model as "tiny"
  const std::string log = ::testing::TempDir() + "/readme-quickstart.log";
  ServerProcess server({"--model", ModelPath("tiny-dense.q8_0.gguf") + "=tiny", "-t", "2", "--device", "cpu"}, log);
  ASSERT_TRUE(server.WaitReady());
  const auto r = Call(server.port(), "POST", "/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.body;
  const std::string content = j["choices"][0]["message"].value("content", "");
  EXPECT_FALSE(content.empty()) << r.body;
  EXPECT_EQ(server.Stop(), 0);
}

TEST(ReadmeExamples, EveryListedCommandExists) {
  const std::string readme = Readme();
  const size_t start = readme.find("## Commands");
  ASSERT_NE(start, std::string::npos);
  const size_t end = readme.find("\n\n", readme.find("    qwenmux", start));
  std::istringstream block(readme.substr(start, end - start));
  std::vector<std::string> commands;
  for (std::string line; std::getline(block, line);) {
    // "    qwenmux CMD ..." and "... · qwenmux CMD ..." on one line.
    for (size_t at = line.find("qwenmux "); at != std::string::npos; at = line.find("qwenmux ", at + 8)) {
      std::istringstream words(line.substr(at + 8));
      std::string cmd;
      words >> cmd;
      if (!cmd.empty() && cmd[0] != '-') commands.push_back(cmd);
    }
  }
  ASSERT_GT(commands.size(), 10u);
  for (const std::string& cmd : commands) {
    const auto r = qwenmux::testing::RunQwenmux(cmd + " --help");
    EXPECT_EQ(r.code, 0) << "README lists `qwenmux " << cmd << "`, which does not run";
  }
}

}  // namespace
}  // namespace qwenmux::server
