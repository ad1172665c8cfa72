// `qwenmux run` and `qwenmux ask` with a backend's model ("NAME/MODEL", issue 18): another
// qwenmux on loopback serving the tiny model is the backend, named with --backend or the
// `backends:` of --config. `run` prints the upstream's own greedy answer (both dialects); what
// needs a local model is refused naming it; `ask` with its answer on the backend gives the same
// answer as with the same model loaded locally.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/run_command.h"
#include "orchestrator/temp_dir.h"
#include "server/http_client.h"
#include "server/upstream_fixture.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::ModelPath;
using qwenmux::testing::RunQwenmux;
using qwenmux::testing::TempDir;

class BackendCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    upstream_ = qwenmux::testing::StartTinyUpstream(1024).release();
    ASSERT_NE(upstream_, nullptr);
  }
  static void TearDownTestSuite() { delete upstream_; }
  static std::string Url() { return qwenmux::testing::LoopbackUrl(upstream_->port()); }
  static App* upstream_;
};
App* BackendCli::upstream_ = nullptr;

TEST_F(BackendCli, RunPrintsTheUpstreamsAnswer) {
  const json req{{"model", "tiny"}, {"messages", json::array({json{{"role", "user"}, {"content", "Name three colours."}}})},
                 {"max_tokens", 8}, {"temperature", 0}, {"chat_template_kwargs", {{"enable_thinking", false}}}};
  const auto direct = qwenmux::testing::Call(upstream_->port(), "POST", "/v1/chat/completions", req.dump());
  ASSERT_EQ(direct.status, 200) << direct.body;
  const std::string want = json::parse(direct.body)["choices"][0]["message"].value("content", "");
  ASSERT_FALSE(want.empty());
  auto r = RunQwenmux("run up/tiny --backend up=" + Url() + " -p 'Name three colours.' --no-think -n 8 --temp 0");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, want);
  TempDir dir;
  std::ofstream(dir / "qwenmux.yaml") << "backends:\n  - name: upo\n    url: " << Url() << "\n    dialect: ollama\n";
  r = RunQwenmux("run upo/tiny --config " + (dir / "qwenmux.yaml") + " -p 'Name three colours.' --no-think -n 8 --temp 0");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, want);
}

TEST_F(BackendCli, RunRefusesWhatNeedsALocalModel) {
  TempDir dir;
  std::ofstream(dir / "g.gbnf") << "root ::= \"a\"\n";
  auto r = RunQwenmux("run up/tiny --backend up=" + Url() + " -p hi --grammar " + (dir / "g.gbnf"), true);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("--grammar needs a local model; up/tiny is a backend's model"), std::string::npos) << r.out;
  r = RunQwenmux("run up/tiny --backend up=" + Url(), true);  // no -p: the interactive chat
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("the interactive chat (no -p) needs a local model"), std::string::npos) << r.out;
  r = RunQwenmux("run up/tiny --backend 'bad name=" + Url() + "' -p hi", true);
  EXPECT_NE(r.code, 0);
}

TEST_F(BackendCli, AskWithItsAnswerOnABackendIsTheLocalAnswer) {
  TempDir dir;
  std::filesystem::create_directories(dir / "docs");
  std::ofstream(dir / "docs/otters.md") << "# Otters\n\nSea otters hold hands while sleeping so they do not drift apart.\n";
  std::ofstream(dir / "docs/tea.txt") << "Green tea is steamed or pan-fired soon after picking to stop oxidation.\n";
  const std::string tiny = ModelPath("tiny-dense.q8_0.gguf");
  const std::string store = " --store " + (dir / "store");
  auto r = RunQwenmux("ingest " + (dir / "docs") + " --collection kb --embed-model " + tiny + " -t 1" + store);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string ask = "ask 'Why do sea otters hold hands?' -C kb --embed-model " + tiny +
                          " --no-rerank --no-score --rewrites 0 --json -n 8 --temp 0 -c 1024 -t 1" + store;
  r = RunQwenmux(ask + " -m " + tiny);
  ASSERT_EQ(r.code, 0) << r.out;
  const json want = json::parse(r.out);
  r = RunQwenmux(ask + " -m up/tiny --backend up=" + Url());
  ASSERT_EQ(r.code, 0) << r.out;
  const json got = json::parse(r.out);
  EXPECT_FALSE(want["answer"].get<std::string>().empty());
  EXPECT_EQ(got["answer"], want["answer"]);
  EXPECT_EQ(got["citations"].size(), want["citations"].size());
}

TEST_F(BackendCli, PipelineRunWithAnExtractStageOnABackend) {
  TempDir dir;
  std::filesystem::create_directories(dir / "docs");
  std::ofstream(dir / "docs/a.txt") << "Order 7 for 9 units.";
  std::ofstream(dir / "p.yaml") << "name: remote\ncontext: 1024\nstages:\n  - {name: read, type: read}\n"
                                   "  - {name: extract, type: extract, model: up/tiny, max_tokens: 48, schema: {type: object, "
                                   "properties: {n: {type: integer}}, required: [n]}}\n";
  const std::string results = dir / "out.jsonl";
  auto r = RunQwenmux("pipeline run " + (dir / "p.yaml") + " " + (dir / "docs") + " --json -q -o " + results +
                      " --backend up=" + Url());
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream in(results);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  const json j = json::parse(line);
  EXPECT_EQ(j["status"], "ok") << line;
  EXPECT_EQ(j["models"]["extract"], "up/tiny") << line;
  // Without --backend the name is no configured backend's: a clear error before anything runs.
  r = RunQwenmux("pipeline run " + (dir / "p.yaml") + " " + (dir / "docs") + " -q -o " + (dir / "out2.jsonl"), true);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("names backend \"up\", which is not configured"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace qwenmux::server
