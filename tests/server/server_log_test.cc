// Issue 20 item 14: `qwenmux serve` logs after startup. Its stderr is captured: one line per
// request (method, path, model, status, tokens, duration; no prompt text unless --log-prompts),
// model loads and unloads with their reason and time, errors; --log-format json gives lines that
// each parse as JSON; --quiet keeps only the startup and shutdown lines.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "orchestrator/config/units.h"
#include "server/http_client.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::ModelPath;
using qwenmux::testing::ServerProcess;

const char* kSecret = "zebra-violet-secret-prompt";

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string Joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

// Runs a server with `flags`, sends a chat completion, an embedding, a request for an unknown
// route and a bad request, stops it, and returns its stderr lines.
std::vector<std::string> RunAndLog(const std::vector<std::string>& flags, const std::string& name) {
  const std::string log = ::testing::TempDir() + "/serve-log-" + name + ".txt";
  std::vector<std::string> args = {"--model", ModelPath("tiny-dense.q8_0.gguf") + "=tiny", "--ctx", "256",
                                   "--parallel", "2", "-t", "1"};
  args.insert(args.end(), flags.begin(), flags.end());
  {
    ServerProcess server(args, log);
    EXPECT_TRUE(server.WaitReady()) << Joined(Lines(log));
    const auto chat = Call(server.port(), "POST", "/v1/chat/completions",
                           json{{"model", "tiny"},
                                {"messages", json::array({json{{"role", "user"}, {"content", kSecret}}})},
                                {"max_tokens", 3},
                                {"temperature", 0}}
                               .dump());
    EXPECT_EQ(chat.status, 200) << chat.body;
    const auto emb = Call(server.port(), "POST", "/v1/embeddings", json{{"model", "tiny"}, {"input", "hello"}}.dump());
    EXPECT_EQ(emb.status, 200) << emb.body;
    EXPECT_EQ(Call(server.port(), "GET", "/no/such/route").status, 404);
    EXPECT_EQ(Call(server.port(), "POST", "/v1/chat/completions", "{\"model\": \"tiny\", \"messages\": 7}").status, 400);
    EXPECT_EQ(server.Stop(), 0);
  }
  return Lines(log);
}

const std::string* Find(const std::vector<std::string>& lines, const std::vector<std::string>& parts) {
  for (const std::string& l : lines) {
    bool all = true;
    for (const std::string& p : parts) all = all && l.find(p) != std::string::npos;
    if (all) return &l;
  }
  return nullptr;
}

TEST(ServerLog, TextLinesPerRequestAndModelEvent) {
  const auto lines = RunAndLog({}, "text");
  const std::string all = Joined(lines);
  const std::string* chat = Find(lines, {"http: POST /v1/chat/completions status=200 model=tiny prompt_tokens="});
  ASSERT_NE(chat, nullptr) << all;
  EXPECT_NE(chat->find(" completion_tokens="), std::string::npos) << *chat;
  EXPECT_NE(chat->find(" duration_ms="), std::string::npos) << *chat;
  const std::string* emb = Find(lines, {"http: POST /v1/embeddings status=200 model=tiny prompt_tokens="});
  EXPECT_NE(emb, nullptr) << all;
  EXPECT_NE(Find(lines, {"http: GET /no/such/route status=404", "error="}), nullptr) << all;
  EXPECT_NE(Find(lines, {"http: POST /v1/chat/completions status=400", "error="}), nullptr) << all;
  EXPECT_NE(Find(lines, {"http: GET /health status=200"}), nullptr) << all;
  EXPECT_NE(Find(lines, {"model: load tiny reason=request seconds=", "bytes="}), nullptr) << all;
  EXPECT_NE(Find(lines, {"model: unload tiny reason=explicit"}), nullptr) << all;
  // No prompt text without --log-prompts.
  EXPECT_EQ(all.find(kSecret), std::string::npos) << all;
}

// Issue 21 item 15: one start-up line per model with the figures that apply (the --ctx and
// --parallel it loads with, the memory the manager reserves: the load line's bytes, what ps shows),
// and no other line contradicting them.
TEST(ServerLog, OneStartupLinePerModelWithTheFiguresThatApply) {
  const auto lines = RunAndLog({}, "startup");
  const std::string all = Joined(lines);
  std::vector<const std::string*> model_lines;
  for (const std::string& l : lines)
    if (l.find("serve: model tiny") != std::string::npos) model_lines.push_back(&l);
  ASSERT_EQ(model_lines.size(), 1u) << all;
  const std::string& m = *model_lines[0];
  EXPECT_NE(m.find(" ctx=256 "), std::string::npos) << m;
  EXPECT_NE(m.find(" parallel=2 "), std::string::npos) << m;
  EXPECT_EQ(all.find("per --model sequence"), std::string::npos) << all;
  const std::string* load = Find(lines, {"model: load tiny reason=request", "bytes="});
  ASSERT_NE(load, nullptr) << all;
  const uint64_t bytes = std::stoull(load->substr(load->find("bytes=") + 6));
  EXPECT_NE(m.find(" memory=" + orchestrator::FormatSize(bytes) + " "), std::string::npos) << m << "\n" << *load;
}

TEST(ServerLog, JsonLinesParseAndCarryTheFields) {
  const auto lines = RunAndLog({"--log-format", "json", "--log-prompts"}, "json");
  ASSERT_FALSE(lines.empty());
  bool chat = false, load = false, not_found = false, listening = false;
  for (const std::string& l : lines) {
    const json j = json::parse(l, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << l;
    ASSERT_TRUE(j.contains("time") && j.contains("level") && j.contains("event")) << l;
    if (j["event"] == "message" && j["msg"].get<std::string>().find("serve: listening on") != std::string::npos)
      listening = true;
    if (j["event"] == "request" && j["path"] == "/v1/chat/completions" && j["status"] == 200) {
      chat = true;
      EXPECT_EQ(j["method"], "POST");
      EXPECT_EQ(j["model"], "tiny");
      EXPECT_GT(j["prompt_tokens"].get<int>(), 0);
      EXPECT_GE(j["completion_tokens"].get<int>(), 1);
      EXPECT_GE(j["duration_ms"].get<double>(), 0.0);
      EXPECT_NE(j["body"].get<std::string>().find(kSecret), std::string::npos) << l;  // --log-prompts
    }
    if (j["event"] == "request" && j["status"] == 404) {
      not_found = true;
      EXPECT_EQ(j["level"], "warn");
      EXPECT_FALSE(j["error"].get<std::string>().empty());
    }
    if (j["event"] == "model" && j["action"] == "load") {
      load = true;
      EXPECT_EQ(j["model"], "tiny");
      EXPECT_EQ(j["reason"], "request");
      EXPECT_GE(j["seconds"].get<double>(), 0.0);
    }
  }
  EXPECT_TRUE(chat && load && not_found && listening) << Joined(lines);
}

TEST(ServerLog, QuietKeepsOnlyStartupAndShutdown) {
  const auto lines = RunAndLog({"--quiet"}, "quiet");
  const std::string all = Joined(lines);
  EXPECT_NE(all.find("serve: listening on"), std::string::npos) << all;
  EXPECT_NE(all.find("serve: stopped"), std::string::npos) << all;
  EXPECT_EQ(all.find("http: "), std::string::npos) << all;
  EXPECT_EQ(all.find("model: load"), std::string::npos) << all;
}

}  // namespace
}  // namespace qwenmux::server
