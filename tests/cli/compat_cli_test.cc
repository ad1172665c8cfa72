// First-use polish of the command line (issue 21 items 11-18): store names wherever a model file
// is taken, the interactive chat of `run` without -p, `-p -`, multi-value options that leave the
// positionals alone, unknown-command suggestions and grouped help, refcheck's verdict, aligned
// tables. Each runs the qwenmux binary (built with the orchestrator and RAG: CMakeLists.txt leaves
// tests/cli/ out otherwise).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/paths.h"
#include "common/run_command.h"
#include "common/testdata.h"
#include "orchestrator/store/model_store.h"
#include "orchestrator/temp_dir.h"

namespace qwenmux::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kDense = ModelPath("tiny-dense.q8_0.gguf");

// A store in `dir` holding tiny-dense as "qwen3:0.6b-q8_0" with the alias "mine" (symlinked blob).
void MakeStore(const std::string& dir) {
  auto store = orchestrator::ModelStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  orchestrator::StoredModel m;
  m.name = "qwen3:0.6b-q8_0";
  m.aliases = {"mine"};
  m.sha256 = std::string(64, 'a');
  m.size = std::filesystem::file_size(kDense);
  std::filesystem::create_directories(std::filesystem::path(store->BlobPath(m.sha256)).parent_path());
  std::filesystem::create_symlink(kDense, store->BlobPath(m.sha256));
  ASSERT_TRUE(store->Add(m).ok());
}

CommandResult Qm(const std::string& args) { return RunQwenmux(args, /*merge_stderr=*/true); }

TEST(CompatCli, StoreNamesWhereverAModelFileIsTaken) {
  TempDir tmp;
  MakeStore(tmp.path());
  const std::string md = " --models-dir " + tmp.path();
  // The same generation by path, by name and by alias.
  auto by_path = RunQwenmux("run " + kDense + " -p Hello -n 4 --temp 0 -t 2 --device cpu");
  auto by_name = RunQwenmux("run qwen3:0.6b-q8_0 -p Hello -n 4 --temp 0 -t 2 --device cpu" + md);
  auto by_alias = RunQwenmux("run mine -p Hello -n 4 --temp 0 -t 2 --device cpu" + md);
  ASSERT_EQ(by_path.code, 0);
  ASSERT_EQ(by_name.code, 0) << Qm("run qwen3:0.6b-q8_0 -p Hello -n 4 -t 2" + md).out;
  ASSERT_EQ(by_alias.code, 0);
  EXPECT_EQ(by_name.out, by_path.out);
  EXPECT_EQ(by_alias.out, by_path.out);
  // $QWENMUX_HOME/models is the default store.
  std::filesystem::create_directories(tmp / "home");
  std::filesystem::create_directory_symlink(tmp.path(), tmp / "home/models");
  auto by_home = RunCommand("QWENMUX_HOME=" + (tmp / "home") + " " + QwenmuxBinary() +
                            " run qwen3:0.6b-q8_0 -p Hello -n 4 --temp 0 -t 2 --device cpu 2>/dev/null");
  EXPECT_EQ(by_home.code, 0);
  EXPECT_EQ(by_home.out, by_path.out);
  // Every other command that takes a model file.
  for (const std::string& cmd : std::vector<std::string>{"inspect qwen3:0.6b-q8_0", "tokenize mine hello", "bench mine -p 4 -n 2 -t 2 --no-bandwidth --device cpu",
        "refcheck mine " + RefPath("tiny-dense.hf-q8_0.json") + " -t 2 --device cpu --no-bars",
        "lora synth mine " + (tmp / "r.gguf") + " --rank 2",
        "quantize mine " + (tmp / "q.gguf") + " q4_0 --allow-requantize"}) {
    auto r = Qm(cmd + md);
    EXPECT_EQ(r.code, 0) << cmd << "\n" << r.out;
  }
  // Neither a file nor a name: the error names the argument and the store it looked in.
  auto bad = Qm("inspect nosuch:model" + md);
  EXPECT_NE(bad.code, 0);
  EXPECT_THAT(bad.out, HasSubstr("nosuch:model"));
  EXPECT_THAT(bad.out, HasSubstr(tmp.path()));
  auto not_pulled = Qm("run qwen3:8b-q8_0 -p hi" + md);
  EXPECT_NE(not_pulled.code, 0);
  EXPECT_THAT(not_pulled.out, HasSubstr("qwenmux pull qwen3:8b-q8_0"));
}

TEST(CompatCli, PromptFromStdin) {
  auto direct = RunQwenmux("run " + kDense + " -p Hello -n 4 --temp 0 -t 2 --device cpu");
  auto piped = RunCommand("printf Hello | " + QwenmuxBinary() + " run " + kDense +
                          " -p - -n 4 --temp 0 -t 2 --device cpu 2>/dev/null");
  ASSERT_EQ(direct.code, 0);
  ASSERT_EQ(piped.code, 0);
  EXPECT_EQ(piped.out, direct.out);
  auto empty = RunCommand("printf '' | " + QwenmuxBinary() + " run " + kDense + " -p - -t 2 2>&1");
  EXPECT_EQ(empty.code, 1);
  EXPECT_THAT(empty.out, HasSubstr("empty prompt"));
}

// The prompt tokens of each "[prefill N tokens" line on stderr.
// (No std::regex in these tests: GCC 12 under ASan raises -Wmaybe-uninitialized inside <regex>.)
std::vector<int> PrefillCounts(const std::string& text) {
  std::vector<int> out;
  const std::string marker = "[prefill ";
  for (size_t at = text.find(marker); at != std::string::npos; at = text.find(marker, at + 1)) {
    size_t end = at + marker.size();
    while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
    if (end > at + marker.size() && text.compare(end, 7, " tokens") == 0)
      out.push_back(std::stoi(text.substr(at + marker.size(), end - at - marker.size())));
  }
  return out;
}

// A number printed with 8 or more digits after the point ("0.123456789").
bool HasLongFloat(const std::string& text) {
  auto digit = [&](size_t i) { return i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); };
  for (size_t i = 1; i < text.size(); ++i) {
    if (text[i] != '.' || !digit(i - 1)) continue;
    size_t n = 0;
    while (digit(i + 1 + n)) ++n;
    if (n >= 8) return true;
  }
  return false;
}

// "WORD", white space, then "VALUE" somewhere in `text` (a table cell after its label).
bool HasLabelThenValue(const std::string& text, const std::string& word, const std::string& value) {
  for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) {
    size_t i = at + word.size(), spaces = 0;
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i, ++spaces;
    if (spaces > 0 && text.compare(i, value.size(), value) == 0) return true;
  }
  return false;
}

TEST(CompatCli, RunWithoutPromptIsAChatWithHistory) {
  TempDir tmp;
  const std::string run = QwenmuxBinary() + " run " + kDense + " -n 6 --temp 0 -t 2 --device cpu";
  // Two turns, /no_think between them, /bye ends it (the line after it is never read).
  auto chat = RunCommand("printf 'Hello there\\n/no_think\\nAnd again\\n/bye\\nnever\\n' | " + run + " 2>" + (tmp / "err"));
  ASSERT_EQ(chat.code, 0) << chat.out;
  std::ifstream ef(tmp / "err");
  std::stringstream err;
  err << ef.rdbuf();
  EXPECT_THAT(err.str(), HasSubstr("thinking off"));
  const std::vector<int> turns = PrefillCounts(err.str());
  ASSERT_EQ(turns.size(), 2u) << err.str();
  // The same second message alone: the chat's second turn also carries the first turn and its
  // answer (history kept).
  auto alone = RunCommand("printf '/no_think\\nAnd again\\n' | " + run + " 2>&1 >/dev/null");
  ASSERT_EQ(alone.code, 0) << alone.out;  // end of input (Ctrl-D) leaves
  const std::vector<int> single = PrefillCounts(alone.out);
  ASSERT_EQ(single.size(), 1u) << alone.out;
  // "<|im_start|>user\nHello there<|im_end|>\n" alone is more than 5 tokens.
  EXPECT_GT(turns[1], single[0] + 5) << err.str();
  // Constraints belong to one prompt.
  auto c = RunCommand("printf 'hi\\n' | " + run + " --format json 2>&1");
  EXPECT_NE(c.code, 0);
  EXPECT_THAT(c.out, HasSubstr("need -p"));
}

// Ctrl-C (SIGINT) during an answer stops that answer, not the program: the chat goes on and
// /bye then leaves with exit 0.
TEST(CompatCli, CtrlCStopsTheAnswerNotTheChat) {
  TempDir tmp;
  int in_fd[2], out_fd[2];
  ASSERT_EQ(pipe(in_fd), 0);
  ASSERT_EQ(pipe(out_fd), 0);
  const std::string err = tmp / "err";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(in_fd[0], STDIN_FILENO);
    dup2(out_fd[1], STDOUT_FILENO);
    const int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(e, STDERR_FILENO);
    close(in_fd[1]);
    close(out_fd[0]);
    const std::string bin = QwenmuxBinary();
    execl(bin.c_str(), bin.c_str(), "run", kDense.c_str(), "-n", "100000", "-c", "4096", "--temp", "0", "-t", "2",
          "--device", "cpu", "--no-think", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(in_fd[0]);
  close(out_fd[1]);
  const std::string line = "Tell me a very long story\n";
  ASSERT_EQ(write(in_fd[1], line.data(), line.size()), static_cast<ssize_t>(line.size()));
  char buf[256];
  ASSERT_GT(read(out_fd[0], buf, sizeof buf), 0);  // the answer is streaming
  kill(pid, SIGINT);
  const std::string bye = "/bye\n";
  ASSERT_EQ(write(in_fd[1], bye.data(), bye.size()), static_cast<ssize_t>(bye.size()));
  close(in_fd[1]);
  while (read(out_fd[0], buf, sizeof buf) > 0) {
  }
  close(out_fd[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  std::ifstream ef(err);
  std::stringstream text;
  text << ef.rdbuf();
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status) << "\n" << text.str();
  EXPECT_EQ(WEXITSTATUS(status), 0) << text.str();
  EXPECT_THAT(text.str(), HasSubstr("[stopped]"));
  EXPECT_THAT(text.str(), HasSubstr("finish: cancelled"));
}

TEST(CompatCli, MultiValueOptionsLeaveThePositionals) {
  TempDir tmp;
  std::ofstream(tmp / "a.md") << "# A\nalpha text\n";
  std::ofstream(tmp / "b.md") << "# B\nbeta text\n";
  // `... a.md --model embedding=FILE b.md`: b.md is a second document, not a second --model
  // value (which failed with "--model b.md: expected TIER=FILE.gguf").
  auto run = Qm("pipeline run " + SourceDir() + "/examples/pipelines/rag.yaml " + (tmp / "a.md") +
                " --model embedding=" + kDense + " " + (tmp / "b.md") + " -o " + (tmp / "out.jsonl") + " --store " +
                (tmp / "store") + " -q -t 2 --device cpu");
  EXPECT_EQ(run.code, 0) << run.out;
  EXPECT_THAT(run.out, Not(HasSubstr("expected TIER=FILE")));
  std::ifstream in(tmp / "out.jsonl");
  std::stringstream results;
  results << in.rdbuf();
  EXPECT_THAT(results.str(), HasSubstr("a.md"));
  EXPECT_THAT(results.str(), HasSubstr("b.md"));
  // Repeating the option still collects every value.
  auto stops = Qm("run " + kDense + " -p Hello -n 4 --temp 0 -t 2 --device cpu --stop x --stop y");
  EXPECT_EQ(stops.code, 0) << stops.out;
}

TEST(CompatCli, UnknownCommandSuggestsTheClosest) {
  auto typo = Qm("lsit");
  EXPECT_EQ(typo.code, 2);
  EXPECT_THAT(typo.out, HasSubstr("unknown command \"lsit\""));
  EXPECT_THAT(typo.out, HasSubstr("did you mean \"list\""));
  auto ollama = Qm("chat");
  EXPECT_EQ(ollama.code, 2);
  EXPECT_THAT(ollama.out, HasSubstr("did you mean \"run\""));
  auto far = Qm("xyzzyplugh");
  EXPECT_EQ(far.code, 2);
  EXPECT_THAT(far.out, HasSubstr("unknown command \"xyzzyplugh\""));
  EXPECT_THAT(far.out, Not(HasSubstr("did you mean")));
  // --help: the commands under their headings, in this order.
  auto help = Qm("--help");
  EXPECT_EQ(help.code, 0);
  const size_t models = help.out.find("Models:"), running = help.out.find("Running:"),
               serving = help.out.find("Serving:");
  ASSERT_NE(models, std::string::npos) << help.out;
  ASSERT_NE(running, std::string::npos) << help.out;
  ASSERT_NE(serving, std::string::npos) << help.out;
  EXPECT_LT(help.out.find("  pull"), running);
  EXPECT_GT(help.out.find("  serve"), serving);
}

TEST(CompatCli, RefcheckGivesAVerdict) {
  const std::string ref = RefPath("tiny-dense.hf-q8_0.json");
  auto pass = Qm("refcheck " + kDense + " " + ref + " -t 2 --device cpu");
  EXPECT_EQ(pass.code, 0) << pass.out;
  EXPECT_THAT(pass.out, HasSubstr("verdict: pass"));
  // No 15-digit floats for people.
  EXPECT_FALSE(HasLongFloat(pass.out)) << pass.out;
  auto fail = Qm("refcheck " + kDense + " " + ref + " -t 2 --device cpu --min-top1 1.01 --max-probe-rms 0.000001");
  EXPECT_EQ(fail.code, 3) << fail.out;
  EXPECT_THAT(fail.out, HasSubstr("verdict: FAIL"));
  EXPECT_THAT(fail.out, HasSubstr("top1"));
  EXPECT_THAT(fail.out, HasSubstr("probe_rms"));
  EXPECT_THAT(fail.out, Not(HasSubstr("greedy 9")));  // the greedy bar holds
  auto json = RunQwenmux("refcheck " + kDense + " " + ref + " -t 2 --device cpu --json --min-top1 1.01");
  EXPECT_EQ(json.code, 3);
  auto j = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << json.out;
  EXPECT_FALSE(j["pass"].get<bool>());
  ASSERT_EQ(j["missed"].size(), 1u);
}

TEST(CompatCli, BenchTextHasNoLongFloats) {
  auto b = Qm("bench " + kDense + " -p 8 -n 4 -t 2 --device cpu");
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_FALSE(HasLongFloat(b.out)) << b.out;
}

TEST(CompatCli, PlanTableAlignedAndContextClampSaid) {
  TempDir tmp;
  auto p = Qm("plan --no-measure --cache-dir " + tmp.path() + " --memory-budget 16GiB --context 1000000");
  ASSERT_EQ(p.code, 0) << p.out;
  EXPECT_THAT(p.out, HasSubstr("warning: context 1000000 is above the trained context of"));
  // Every table row (model name first) ends its fixed columns where the header does.
  std::istringstream in(p.out);
  std::string line;
  size_t header = 0, rows = 0;
  while (std::getline(in, line)) {
    if (line.rfind("model ", 0) == 0) header = line.size();
    else if (header != 0 && !line.empty() && line.find(':') != std::string::npos && line[0] != ' ' &&
             line.find("suggested") == std::string::npos) {
      EXPECT_EQ(line.size(), header) << line;
      ++rows;
    } else if (header != 0 && line.empty() && rows > 0) {
      break;
    }
  }
  EXPECT_GT(rows, 10u);
  auto small = Qm("plan --no-measure --cache-dir " + tmp.path() + " --memory-budget 16GiB --context 4096");
  EXPECT_THAT(small.out, Not(HasSubstr("warning: context")));
}

TEST(CompatCli, ListColumnsAligned) {
  auto l = Qm("list --catalog");
  ASSERT_EQ(l.code, 0) << l.out;
  // The SOURCE column starts at the same offset on every row.
  std::istringstream in(l.out);
  std::string line;
  size_t at = std::string::npos;
  while (std::getline(in, line)) {
    if (line.rfind("tier ", 0) == 0) break;
    const size_t s = line.rfind("  ");
    ASSERT_NE(s, std::string::npos) << line;
    if (line.rfind("NAME", 0) == 0) {
      at = line.find("SOURCE");
      continue;
    }
    ASSERT_NE(at, std::string::npos);
    EXPECT_EQ(line.find_first_not_of(' ', at - 2), at) << line;
    EXPECT_EQ(line.substr(at - 2, 2), "  ") << line;
  }
}

// Item 10: ask finds the embedding model the collection was ingested with (no --embed-model), and
// -c holds when the answer model is the same file (it was loaded at the embedder's larger context).
TEST(CompatCli, AskReusesTheCollectionsEmbeddingModelAndKeepsContext) {
  TempDir tmp;
  std::ofstream(tmp / "otters.md") << "# Otters\n\nSea otters hold hands while sleeping so they do not drift apart.\n";
  // An empty QWENMUX_HOME: no store, so no default embedding model to fall back on.
  const std::string env = "QWENMUX_HOME=" + (tmp / "home") + " ";
  const std::string store = " --store " + (tmp / "store");
  auto ingest = RunCommand(env + QwenmuxBinary() + " ingest " + (tmp / "otters.md") + " -C kb --embed-model " + kDense +
                           " -t 2 --device cpu" + store + " 2>&1");
  ASSERT_EQ(ingest.code, 0) << ingest.out;
  const std::string ask = env + QwenmuxBinary() + " ask 'Do otters hold hands?' -C kb --model " + kDense +
                          " --no-rewrite --no-rerank --no-score -n 4 --temp 0 -t 2 --device cpu" + store;
  auto a = RunCommand(ask + " --json 2>&1");
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_THAT(a.out, HasSubstr("otters.md"));
  // -c 64 leaves no room for sources: said with the asked 64, not the 512 the shared file loaded with.
  auto small = RunCommand(ask + " -c 64 2>&1");
  EXPECT_NE(small.code, 0) << small.out;
  EXPECT_THAT(small.out, HasSubstr("context (64 tokens)"));
}

// Item 18: `ingest` on a terminal ends with a table, not a raw JSON line (JSON when piped or with
// --json). util-linux's `script` (Debian's essential bsdutils) gives it a terminal.
TEST(CompatCli, IngestOnATerminalEndsWithATable) {
  TempDir tmp;
  std::ofstream(tmp / "a.md") << "# A\n\nalpha text about otters\n";
  const std::string ingest = QwenmuxBinary() + " ingest " + (tmp / "a.md") + " -C kb --embed-model " + kDense +
                             " -t 2 --device cpu --store " + (tmp / "store");
  auto tty = RunCommand("script -qec '" + ingest + "' /dev/null 2>&1");
  ASSERT_EQ(tty.code, 0) << tty.out;
  EXPECT_THAT(tty.out, HasSubstr("collection kb in"));
  EXPECT_TRUE(HasLabelThenValue(tty.out, "added", "1")) << tty.out;
  EXPECT_THAT(tty.out, Not(HasSubstr("{\"summary\"")));
  auto piped = RunCommand(ingest + " 2>/dev/null");
  ASSERT_EQ(piped.code, 0) << piped.out;
  EXPECT_THAT(piped.out, HasSubstr("{\"summary\""));
  auto json = RunCommand("script -qec '" + ingest + " --json' /dev/null 2>&1");
  EXPECT_THAT(json.out, HasSubstr("{\"summary\""));
}

}  // namespace
}  // namespace qwenmux::testing
