// The RAG commands end to end, and crash safety: the real `qwenmux ingest` is killed with SIGKILL
// right after its k-th committed document; every document it reported as committed must then be present and
// searchable, and the store must open and answer (the vector index repaired from SQLite).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "rag/store.h"
#include "rag_test_util.h"
#include "common/paths.h"

namespace qwenmux::rag {
namespace {

using qwenmux::testing::kTinyDense;
using qwenmux::testing::RunQwenmux;
using qwenmux::testing::TempDir;
using qwenmux::testing::WriteFile;

void WriteCorpus(const std::string& dir, int n) {
  std::filesystem::create_directories(dir);
  for (int i = 0; i < n; ++i) {
    std::string text = fmt::format("# Note {}\n\nThis note carries the marker crashword{} and some filler.\n\n", i, i);
    for (int p = 0; p < 6; ++p)
      text += fmt::format("Paragraph {} of note {} repeats plain words about rivers hills and lamps so that the "
                          "chunker has something to pack into several chunks of text.\n\n", p, i);
    WriteFile(fmt::format("{}/note{:03d}.md", dir, i), text);
  }
}

// Starts `qwenmux args...` with stdout on a pipe; returns (pid, read end).
std::pair<pid_t, int> Spawn(const std::vector<std::string>& args) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    const int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, STDERR_FILENO);
    close(fds[0]);
    std::vector<char*> argv;
    std::string bin = ::qwenmux::testing::QwenmuxBinary();
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  close(fds[1]);
  return {pid, fds[0]};
}

// Each run is killed right after its k-th "added" line (k differs per run, so the kills land at
// different points of the embed/commit cycle): what was reported before the kill, and anything
// already in the pipe, must be in the store.
TEST(RagCrash, KillNineDuringIngestLosesNothingCommitted) {
  TempDir dir;
  const int kDocs = 120;
  WriteCorpus(dir / "docs", kDocs);
  const std::string store_dir = dir / "store";
  const std::vector<std::string> args = {"ingest", dir / "docs", "--collection", "kb", "--store", store_dir,
                                         "--embed-model", kTinyDense, "--events", "--save-every", "0.02",
                                         "-t", "1", "--chunk-tokens", "64", "--overlap", "8"};
  std::set<std::string> committed;  // across runs: a committed document stays committed
  int killed_mid_batch = 0;
  for (const int kill_after : {1, 4, 9, 2, 15}) {
    const size_t before = committed.size();
    auto [pid, fd] = Spawn(args);
    FILE* in = fdopen(fd, "r");
    ASSERT_NE(in, nullptr);
    bool finished = false, killed = false;
    int added = 0;
    char* line = nullptr;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, in)) > 0) {
      auto j = nlohmann::json::parse(std::string(line, static_cast<size_t>(n)), nullptr, false);
      ASSERT_FALSE(j.is_discarded()) << line;
      if (j.contains("summary")) finished = true;
      if (j.value("status", "") == "added" || j.value("status", "") == "replaced") {
        committed.insert(j["path"]);
        if (++added == kill_after && !killed) {
          kill(pid, SIGKILL);  // the lines already in the pipe are still read
          killed = true;
        }
      }
    }
    free(line);
    fclose(in);
    int status = 0;
    waitpid(pid, &status, 0);
    const std::string run = fmt::format("kill after {}", kill_after);
    ASSERT_TRUE(killed) << run << ": the run ended before its " << kill_after << "th added document";
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << run;
    EXPECT_GE(committed.size(), before + kill_after) << run;
    if (!finished) ++killed_mid_batch;

    // Reopen as a fresh process would: every committed document is there and searchable.
    auto store = Store::Open(store_dir);
    ASSERT_TRUE(store.ok()) << run << ": " << store.status().ToString();
    auto coll = (*store)->GetCollection("kb");
    ASSERT_TRUE(coll.ok()) << run << ": " << coll.status().ToString();  // something was committed
    IndexRepair repair;
    ASSERT_TRUE((*store)->Vectors(*coll, &repair).ok()) << run;
    for (const std::string& path : committed) {
      const int i = std::stoi(path.substr(path.size() - 6, 3));
      auto hits = (*store)->SearchBm25(*coll, fmt::format("crashword{}", i), 3);
      ASSERT_TRUE(hits.ok());
      ASSERT_FALSE(hits->empty()) << run << ": committed " << path << " not found";
      auto rec = (*store)->GetChunks(std::vector<int64_t>{hits->front().first}).value();
      ASSERT_EQ(rec.size(), 1u);
      EXPECT_EQ(rec[0].source, path);
    }
    auto stats = (*store)->Stats("kb");
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    EXPECT_GE(stats->documents, static_cast<int64_t>(committed.size()));
    EXPECT_EQ(stats->indexed_vectors, stats->chunks) << run;
    auto v = (*store)->SearchVector(*coll, std::vector<float>(coll->dim, 1.0f / 16), 5);
    EXPECT_TRUE(v.ok());
  }
  EXPECT_GT(killed_mid_batch, 0) << "no run was killed mid-batch: raise the corpus size";
  // Resume: a full run completes the collection, skipping what is there.
  std::string cmd = "ingest " + (dir / "docs") + " --collection kb --store " + store_dir + " --embed-model " +
                    kTinyDense + " -t 2 --chunk-tokens 64 --overlap 8";
  auto r = RunQwenmux(cmd);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto last = nlohmann::json::parse(r.out.substr(r.out.rfind('{', r.out.rfind("{\"summary\""))));
  EXPECT_EQ(last["summary"]["unchanged"].get<int>() + last["summary"]["added"].get<int>(), kDocs) << r.out;
  EXPECT_GE(last["summary"]["unchanged"].get<int>(), static_cast<int>(committed.size()));
  auto st = RunQwenmux("collection stats kb --store " + store_dir + " --json");
  ASSERT_EQ(st.code, 0);
  EXPECT_EQ(nlohmann::json::parse(st.out)["documents"].get<int>(), kDocs);
}

TEST(RagCli, IngestStatsListEvalRemove) {
  TempDir dir;
  std::filesystem::create_directories(dir / "docs");
  WriteFile(dir / "docs/otters.md", "# Otters\n\nSea otters hold hands while sleeping so they do not drift apart.\n");
  WriteFile(dir / "docs/rust.txt", "Rust prevents data races with ownership and borrowing rules.\n");
  WriteFile(dir / "docs/report.pdf", qwenmux::testing::MinimalPdf({"Annual rainfall in Lisbon was low."}, "Rain"));
  WriteFile(dir / "docs/bad.pdf", "garbage");
  const std::string store = " --store " + (dir / "store");
  auto r = RunQwenmux("ingest " + (dir / "docs") + " --collection kb --embed-model " + kTinyDense + " -t 2" + store);
  ASSERT_EQ(r.code, 3) << r.out;  // bad.pdf failed
  const auto summary = nlohmann::json::parse(r.out.substr(r.out.rfind("{\"summary\"")))["summary"];
  EXPECT_EQ(summary["added"], 3);
  EXPECT_EQ(summary["failed"], 1);
  EXPECT_EQ(summary["failures"][0]["path"], dir / "docs/bad.pdf");

  r = RunQwenmux("collection stats kb --json" + store);
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["documents"], 3);
  EXPECT_GE(j["chunks"].get<int>(), 3);
  EXPECT_EQ(j["indexed_vectors"], j["chunks"]);
  EXPECT_EQ(j["dim"], 256);

  r = RunQwenmux("collection ls --json" + store);
  ASSERT_EQ(r.code, 0);
  EXPECT_EQ(nlohmann::json::parse(r.out)[0]["name"], "kb");

  WriteFile(dir / "cases.jsonl", "{\"question\": \"Do sea otters hold hands?\", \"document\": \"otters.md\"}\n"
                                 "{\"question\": \"rainfall in Lisbon\", \"document\": \"report.pdf\"}\n");
  r = RunQwenmux("eval --collection kb --cases " + (dir / "cases.jsonl") + " -k 1 --json --embed-model " + kTinyDense +
                 " --rerank-model " + kTinyDense + store);
  ASSERT_EQ(r.code, 0) << r.out;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["methods"]["bm25"]["recall@1"], 1.0);
  EXPECT_TRUE(j["methods"].contains("hybrid_rerank"));

  r = RunQwenmux("collection stats nope" + store, true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("no collection \"nope\""), std::string::npos) << r.out;
  r = RunQwenmux("collection rm kb" + store);
  EXPECT_EQ(r.code, 0);
  r = RunQwenmux("collection ls --json" + store);
  EXPECT_EQ(nlohmann::json::parse(r.out).size(), 0u);
}

nlohmann::json SummaryOf(const std::string& out) {
  const size_t at = out.rfind("{\"summary\"");
  if (at == std::string::npos) return nullptr;
  return nlohmann::json::parse(out.substr(at), nullptr, false)["summary"];
}

// Issue 20 items 11 and 13: ingest exits 3 when a file failed or a path does not exist (it used
// to exit 0); a binary file (2,048 x 0x1C, valid UTF-8) fails like a broken PDF instead of being
// "added" with 8 chunks; an empty file is "skipped", not added and not counted as a document.
TEST(RagCli, IngestBinaryEmptyMissingAndExitCodes) {
  TempDir dir;
  std::filesystem::create_directories(dir / "docs");
  WriteFile(dir / "docs/good.txt", "Lighthouses guide ships along rocky coasts at night.\n");
  WriteFile(dir / "docs/empty.txt", "");
  WriteFile(dir / "docs/binary.txt", std::string(2048, '\x1c'));
  const std::string store = " --store " + (dir / "store");
  auto r = RunQwenmux("ingest " + (dir / "docs") + " --events -C kb --embed-model " + kTinyDense + " -t 2" + store);
  EXPECT_EQ(r.code, 3) << r.out;
  nlohmann::json s = SummaryOf(r.out);
  ASSERT_TRUE(s.is_object()) << r.out;
  EXPECT_EQ(s["added"], 1);
  EXPECT_EQ(s["skipped"], 1);
  EXPECT_EQ(s["failed"], 1);
  ASSERT_EQ(s["failures"].size(), 1u);
  EXPECT_EQ(s["failures"][0]["path"], dir / "docs/binary.txt");
  EXPECT_NE(s["failures"][0]["error"].get<std::string>().find("control characters"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"status\":\"skipped\""), std::string::npos) << r.out;
  r = RunQwenmux("collection stats kb --json" + store);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["documents"], 1);

  // Only good (and empty) files: exit 0; empty files are not failures.
  r = RunQwenmux("ingest " + (dir / "docs/good.txt") + " " + (dir / "docs/empty.txt") + " -C kb --embed-model " +
                 kTinyDense + " -t 2" + store);
  EXPECT_EQ(r.code, 0) << r.out;
  // A path that does not exist: reported and exit 3.
  r = RunQwenmux("ingest " + (dir / "no-such-dir") + " -C kb --embed-model " + kTinyDense + " -t 2" + store, true);
  EXPECT_EQ(r.code, 3) << r.out;
  s = SummaryOf(r.out);
  ASSERT_TRUE(s.is_object()) << r.out;
  EXPECT_EQ(s["failed"], 1);
  EXPECT_NE(r.out.find("no such file or directory"), std::string::npos) << r.out;
}

// Issue 20 item 12: the commands that only read open the store read-only. Pointed at a directory
// that does not exist they say there is no store there, and create nothing (`collection ls
// --store /nonexistent/dir` used to create the directory and an empty store.db).
TEST(RagCli, ReadOnlyCommandsCreateNothing) {
  TempDir dir;
  const std::string missing = dir / "no/such/dir";
  WriteFile(dir / "cases.jsonl", "{\"question\": \"q\", \"document\": \"a.txt\"}\n");
  const std::vector<std::string> commands = {
      "collection ls --store " + missing,
      "collection ls --json --store " + missing,
      "collection stats kb --store " + missing,
      "collection rm kb --store " + missing,
      "ask \"what?\" -C kb --model " + std::string(kTinyDense) + " --store " + missing,
      "eval -C kb --cases " + (dir / "cases.jsonl") + " --embed-model " + kTinyDense + " --store " + missing,
  };
  for (const std::string& c : commands) {
    auto r = RunQwenmux(c, true);
    EXPECT_EQ(r.code, 1) << c << ": " << r.out;
    EXPECT_NE(r.out.find("there is no document store in " + missing), std::string::npos) << c << ": " << r.out;
    EXPECT_FALSE(std::filesystem::exists(dir / "no")) << c << " created " << missing;
  }
  // An existing store is read without being changed: stats on a store made by ingest leaves
  // store.db and the vectors directory as they were.
  WriteFile(dir / "a.txt", "Kites fly best in steady wind.\n");
  const std::string store = dir / "store";
  ASSERT_EQ(RunQwenmux("ingest " + (dir / "a.txt") + " -C kb --embed-model " + kTinyDense + " -t 2 --store " + store).code, 0);
  std::filesystem::remove_all(store + "/vectors");  // the index is then repaired in memory only
  const auto before = std::filesystem::last_write_time(store + "/store.db");
  auto r = RunQwenmux("collection stats kb --json --store " + store);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["indexed_vectors"], nlohmann::json::parse(r.out)["chunks"]);
  EXPECT_FALSE(std::filesystem::exists(store + "/vectors"));
  EXPECT_EQ(std::filesystem::last_write_time(store + "/store.db"), before);
}

TEST(RagCli, MixedModelsAndBadFlagsAreErrors) {
  TempDir dir;
  WriteFile(dir / "a.txt", "hello there");
  const std::string store = " --store " + (dir / "store");
  ASSERT_EQ(RunQwenmux("ingest " + (dir / "a.txt") + " -C kb --embed-model " + kTinyDense + store).code, 0);
  auto r = RunQwenmux("ingest " + (dir / "a.txt") + " -C kb --dims 32 --embed-model " + kTinyDense + store, true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("refusing to mix"), std::string::npos) << r.out;
  r = RunQwenmux("ingest " + (dir / "a.txt") + " -C kb --embed-model /nonexistent.gguf" + store, true);
  EXPECT_EQ(r.code, 1);
  r = RunQwenmux("ingest " + (dir / "a.txt") + " -C kb2 --chunk-tokens 4 --embed-model " + kTinyDense + store, true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("chunk size"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace qwenmux::rag
