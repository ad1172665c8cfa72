// `qwenmux pipeline run` end to end with the tiny models: a mixed corpus (txt, md, html, pdf, an
// empty file, a corrupt PDF) through the shipped document-processing pipeline; every extraction
// validates against its class's schema (checked by python3-jsonschema, independently of our
// validator); failures are reported per document; a kill -9 and restart resumes.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/run_command.h"
#include "common/testdata.h"
#include "orchestrator/temp_dir.h"
#include "pipeline/definition.h"

namespace qwenmux::pipeline {
namespace {

using Json = nlohmann::ordered_json;
using qwenmux::testing::ModelPath;
using qwenmux::testing::TempDir;

void Write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<Json> JsonLines(const std::string& text) {
  std::vector<Json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = Json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << line;
    if (!j.is_discarded()) out.push_back(j);
  }
  return out;
}

struct Cli {
  int code;
  std::string out;
};
Cli RunCli(const std::string& args, bool merge_stderr = false) {
  qwenmux::testing::CommandResult r = qwenmux::testing::RunQwenmux(args, merge_stderr);
  return {r.code, std::move(r.out)};
}

std::string ModelFlags() {
  return fmt::format("--model fast={0} --model balanced={1} --model quality={0} --model max={1} -t 2",
                     ModelPath("tiny-dense.q8_0.gguf"), ModelPath("tiny-moe.q4_k_m.gguf"));
}

void WriteMixedCorpus(const std::string& dir) {
  std::filesystem::create_directories(dir);
  Write(dir + "/invoice.txt",
        "INVOICE No. INV-2024-0042\nVendor: Acme Tools GmbH\nDate: 2024-03-05\nTotal due: 1,250.00 EUR\nStatus: unpaid\n");
  Write(dir + "/contract.md",
        "# Service Agreement\n\nThis agreement is made between Northwind Ltd and Contoso LLC, effective 1 January 2025, "
        "for a term of 24 months. It is governed by the laws of England.\n");
  Write(dir + "/report.html",
        "<html><head><title>Q3 Field Report</title></head><body><h1>Q3 Field Report</h1><p>By Dana Scully.</p>"
        "<p>Sensor uptime rose to 99.2% after the firmware update.</p></body></html>");
  Write(dir + "/memo.txt", "Lunch is moved to Friday. Bring snacks.\n");
  Write(dir + "/empty.txt", "");
  Write(dir + "/corrupt.pdf", "%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> garbage garbage\n%%EOF");
}

// Validates each {"schema", "instance"} with python3-jsonschema; returns the number valid.
int PythonValidCount(const std::string& dir, const Json& pairs) {
  const std::string in = dir + "/pairs.json";
  Write(in, pairs.dump());
  const std::string script = dir + "/check.py";
  Write(script,
        "import json, sys, jsonschema\n"
        "pairs = json.load(open(sys.argv[1]))\n"
        "ok = 0\n"
        "for p in pairs:\n"
        "    try:\n"
        "        jsonschema.validate(p['instance'], p['schema']); ok += 1\n"
        "    except jsonschema.ValidationError as e:\n"
        "        print('invalid:', e.message, file=sys.stderr)\n"
        "print(ok)\n");
  FILE* p = popen(("python3 " + script + " " + in).c_str(), "r");
  char buf[64] = {0};
  const size_t n = fread(buf, 1, sizeof buf - 1, p);
  pclose(p);
  return n > 0 ? std::atoi(buf) : -1;
}

TEST(PipelineCli, DocumentPipelineEndToEndOnTinyModels) {
  TempDir dir;
  WriteMixedCorpus(dir / "docs");
  const std::string results = dir / "results.jsonl";
  const std::string store = dir / "rag";
  const std::string args = fmt::format("pipeline run examples/pipelines/document-processing.yaml {} {} --json -q -o {} --store {}",
                                       dir / "docs", ModelFlags(), results, store);
  const Cli r = RunCli(args);
  EXPECT_EQ(r.code, 3) << r.out;  // some documents failed (the corrupt PDF)
  const std::vector<Json> lines = JsonLines(r.out);
  ASSERT_EQ(lines.size(), 7u) << r.out;
  ASSERT_TRUE(lines.back().contains("summary")) << lines.back().dump();
  const Json& summary = lines.back()["summary"];
  EXPECT_EQ(summary["documents"], 6);
  EXPECT_EQ(summary["skipped"], 0);
  EXPECT_EQ(summary["done"], 6);
  EXPECT_EQ(summary["empty"], 1);  // empty.txt: skipped, not a failure
  EXPECT_EQ(summary["ok"].get<int>() + summary["failed"].get<int>(), 5);
  ASSERT_EQ(summary["stages"].size(), 6u);
  for (const Json& st : summary["stages"]) {
    EXPECT_TRUE(st.contains("items") && st.contains("seconds") && st.contains("tokens_per_second") && st.contains("failures")) << st.dump();
  }
  EXPECT_FALSE(summary["stages"][0]["failures"].contains("empty document")) << summary.dump();
  EXPECT_EQ(summary["stages"][0]["failures"]["corrupt or unreadable"], 1) << summary.dump();
  EXPECT_GT(summary["stages"][1]["tokens"].get<int64_t>(), 0);
  ASSERT_EQ(summary["stages"][5]["type"], "embed");
  EXPECT_GT(summary["stages"][5]["tokens"].get<int64_t>(), summary["stages"][5]["items"].get<int64_t>());  // >1 token per chunk

  auto def = LoadPipeline("examples/pipelines/document-processing.yaml");
  ASSERT_TRUE(def.ok());
  std::map<std::string, Json> schema_of;
  for (const LabelDef& l : def->Find(StageType::kClassify)->labels) schema_of[l.name] = l.schema;
  std::map<std::string, Json> by_name;
  Json pairs = Json::array();
  int extracted = 0;
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    const Json& l = lines[i];
    ASSERT_TRUE(l.contains("document") && l.contains("status")) << l.dump();
    by_name[std::filesystem::path(l["document"].get<std::string>()).filename()] = l;
    if (!l.contains("class")) continue;
    EXPECT_TRUE(schema_of.count(l["class"].get<std::string>())) << l.dump();
    EXPECT_GT(l["confidence"].get<double>(), 0.0);
    EXPECT_LE(l["confidence"].get<double>(), 1.0);
    double sum = 0;
    for (auto it = l["scores"].begin(); it != l["scores"].end(); ++it) sum += it.value().get<double>();
    EXPECT_NEAR(sum, 1.0, 1e-6);
    const Json& schema = schema_of[l["class"].get<std::string>()];
    if (schema.is_null()) {
      EXPECT_FALSE(l.contains("extracted")) << l.dump();
      continue;
    }
    ASSERT_TRUE(l.contains("extracted")) << l.dump();
    ASSERT_TRUE(l.contains("validation")) << l.dump();
    const Json& v = l["validation"];
    EXPECT_TRUE(v["verdict"] == "pass" || v["verdict"] == "fail");
    EXPECT_TRUE(v["schema_valid"].get<bool>()) << l.dump();
    EXPECT_FALSE(v["reasons"].empty());
    EXPECT_GE(l["attempts"].get<int>(), 1);
    if (v["verdict"] == "fail") {
      // Retried once on the next tier up (quality -> max: the MoE file), then reported.
      EXPECT_EQ(l["attempts"], 2) << l.dump();
      EXPECT_EQ(l["status"], "failed");
      EXPECT_EQ(l["models"]["extract"], ModelPath("tiny-moe.q4_k_m.gguf"));
    } else {
      EXPECT_EQ(l["status"], "ok");
    }
    pairs.push_back({{"schema", schema}, {"instance", l["extracted"]}});
    ++extracted;
  }
  EXPECT_EQ(by_name.size(), 6u);
  EXPECT_EQ(by_name["empty.txt"]["status"], "skipped");
  EXPECT_EQ(by_name["empty.txt"]["reason"], "empty document");
  EXPECT_EQ(by_name["corrupt.pdf"]["status"], "failed");
  EXPECT_EQ(by_name["corrupt.pdf"]["stage"], "read");
  EXPECT_FALSE(by_name["corrupt.pdf"]["error"].get<std::string>().empty());
  // Every extraction validates (independent validator); there is at least one to check.
  ASSERT_GT(extracted, 0) << "nothing was extracted, so the validator would compare 0 with 0";
  EXPECT_EQ(PythonValidCount(dir.path(), pairs), extracted) << pairs.dump();
  // The embed stage stored what it embedded: the store's collection holds exactly the documents
  // whose line names it, with their chunks.
  int64_t stored_docs = 0, stored_chunks = 0;
  for (const auto& [name, l] : by_name) {
    if (!l.contains("collection")) continue;
    EXPECT_EQ(l["collection"], "documents");
    EXPECT_EQ(l["status"], "ok") << l.dump();
    ++stored_docs;
    stored_chunks += l["chunks"].get<int64_t>();
  }
  EXPECT_GT(stored_docs, 0);
  const Cli stats = RunCli(fmt::format("collection stats documents --store {} --json", store));
  ASSERT_EQ(stats.code, 0) << stats.out;
  const Json st = Json::parse(stats.out, nullptr, false);
  EXPECT_EQ(st["documents"], stored_docs) << stats.out;
  EXPECT_EQ(st["chunks"], stored_chunks) << stats.out;

  // The results file holds the same lines; a second run skips the documents that are done
  // ("ok" or "skipped") and retries the failed ones, which fail again (the corrupt PDF at least):
  // exit 3 again, where it used to say 0 because failures were never retried.
  EXPECT_EQ(JsonLines(Slurp(results)).size(), 6u);
  const int failed1 = summary["failed"].get<int>();
  const Cli again = RunCli(args);
  const std::vector<Json> lines2 = JsonLines(again.out);
  ASSERT_EQ(lines2.size(), static_cast<size_t>(failed1 + 1)) << again.out;
  EXPECT_EQ(lines2.back()["summary"]["skipped"], 6 - failed1);
  EXPECT_EQ(lines2.back()["summary"]["done"], failed1);
  EXPECT_EQ(again.code, 3) << again.out;
  EXPECT_EQ(JsonLines(Slurp(results)).size(), static_cast<size_t>(6 + failed1));
}

// Issue 20 items 11 and 13 in the read stage (no model needed): a binary file (control
// characters) fails like a corrupt PDF, an empty file is "skipped"; a rerun retries the failure
// and exits 3 again until the file is fixed.
TEST(PipelineCli, BinaryFailsEmptySkippedAndRerunRetriesFailures) {
  TempDir dir;
  std::filesystem::create_directories(dir / "docs");
  Write(dir / "docs/good.txt", "A plain text document.\n");
  Write(dir / "docs/empty.txt", "");
  Write(dir / "docs/binary.txt", std::string(2048, '\x1c'));
  Write(dir / "p.yaml", "name: read-only\nstages:\n  - {name: read, type: read}\n");
  const std::string results = dir / "results.jsonl";
  const std::string args = fmt::format("pipeline run {} {} --json -q -o {}", dir / "p.yaml", dir / "docs", results);
  Cli r = RunCli(args);
  EXPECT_EQ(r.code, 3) << r.out;
  std::vector<Json> lines = JsonLines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  std::map<std::string, Json> by_name;
  for (size_t i = 0; i + 1 < lines.size(); ++i)
    by_name[std::filesystem::path(lines[i]["document"].get<std::string>()).filename()] = lines[i];
  EXPECT_EQ(by_name["good.txt"]["status"], "ok");
  EXPECT_EQ(by_name["empty.txt"]["status"], "skipped") << by_name["empty.txt"].dump();
  EXPECT_EQ(by_name["empty.txt"]["reason"], "empty document");
  EXPECT_EQ(by_name["binary.txt"]["status"], "failed") << by_name["binary.txt"].dump();
  EXPECT_EQ(by_name["binary.txt"]["reason"], "corrupt or unreadable");
  EXPECT_NE(by_name["binary.txt"]["error"].get<std::string>().find("control characters"), std::string::npos)
      << by_name["binary.txt"].dump();
  const Json& s1 = lines.back()["summary"];
  EXPECT_EQ(s1["ok"], 1);
  EXPECT_EQ(s1["failed"], 1);
  EXPECT_EQ(s1["empty"], 1);

  r = RunCli(args);  // the failure is retried, and fails again
  EXPECT_EQ(r.code, 3) << r.out;
  lines = JsonLines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_EQ(std::filesystem::path(lines[0]["document"].get<std::string>()).filename().string(), "binary.txt");
  EXPECT_EQ(lines.back()["summary"]["skipped"], 2);

  Write(dir / "docs/binary.txt", "Fixed: now it is text.\n");
  r = RunCli(args);
  EXPECT_EQ(r.code, 0) << r.out;
  lines = JsonLines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_EQ(lines[0]["status"], "ok");
  EXPECT_EQ(lines.back()["summary"]["failed"], 0);
}

TEST(PipelineCli, BadArgumentsAndDefinitions) {
  TempDir dir;
  Write(dir / "bad.yaml", "name: t\nstages:\n  - {name: read, type: read}\n  - {name: c, type: classify, model: fast, labels: {a: , b: }, colour: 1}\n");
  Write(dir / "a.txt", "hello");
  Cli r = RunCli(fmt::format("pipeline run {} {} {}", dir / "bad.yaml", dir / "a.txt", ModelFlags()));
  EXPECT_EQ(r.code, 1);
  r = RunCli(fmt::format("pipeline run {} {} --model fast", dir / "bad.yaml", dir / "a.txt"));
  EXPECT_NE(r.code, 0);
  // A stage model that cannot be resolved is refused before anything runs.
  const std::string cmd = fmt::format("{} pipeline run examples/pipelines/document-processing.yaml {} --model fast={} --models-dir {} 2>&1",
                                      ::qwenmux::testing::QwenmuxBinary(), dir / "a.txt", ModelPath("tiny-dense.q8_0.gguf"), dir / "store");
  FILE* p = popen(cmd.c_str(), "r");
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  EXPECT_NE(pclose(p), 0);
  EXPECT_NE(text.find("qwen3-quality"), std::string::npos) << text;
  EXPECT_NE(text.find("--model quality=FILE.gguf"), std::string::npos) << text;
  // check
  r = RunCli(fmt::format("pipeline check {}", dir / "bad.yaml"), true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("bad.yaml:4: stages[1].colour: unknown key"), std::string::npos) << r.out;
}

// --memory-budget reads as `serve` reads it: a share of RAM ("75%") or a size, through the one
// parser (orchestrator::ResolveMemoryBudget); a bad value is refused before anything runs.
TEST(PipelineCli, MemoryBudgetAsServeTakesIt) {
  TempDir dir;
  Write(dir / "p.yaml", "name: t\nstages:\n  - {name: read, type: read}\n"
                        "  - {name: c, type: classify, model: fast, labels: {a: {description: one}, b: {description: two}}}\n");
  Write(dir / "a.txt", "hello there");
  const std::string base = fmt::format("pipeline run {} {} --model fast={} -t 2 -o {} --store {}", dir / "p.yaml",
                                       dir / "a.txt", ModelPath("tiny-dense.q8_0.gguf"), dir / "out.jsonl", dir / "rag");
  Cli r = RunCli(base + " --memory-budget 75%", true);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("memory budget"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("75% from --memory-budget"), std::string::npos) << r.out;
  EXPECT_EQ(JsonLines(Slurp(dir / "out.jsonl")).size(), 1u);
  r = RunCli(base + " --memory-budget 1GiB", true);
  EXPECT_EQ(r.code, 0) << r.out;
  r = RunCli(base + " --memory-budget lots", true);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("--memory-budget"), std::string::npos) << r.out;
}

// kill -9 of a real `qwenmux pipeline run` mid-corpus; the restart does only what is left.
TEST(PipelineCli, KillNineAndRestartResumes) {
  TempDir dir;
  const int kDocs = 14;
  std::filesystem::create_directories(dir / "docs");
  for (int i = 0; i < kDocs; ++i) {
    Write(fmt::format("{}/doc{:02d}.txt", dir / "docs", i), fmt::format("Order {} from customer {} for {} units.\n", 1000 + i, i * 7, i + 1));
  }
  Write(dir / "p.yaml",
        "name: kill-test\ncontext: 512\nstages:\n  - {name: read, type: read}\n"
        "  - name: classify\n    type: classify\n    model: fast\n    batch: 1\n    labels: {order: , other: }\n"
        "  - name: extract\n    type: extract\n    model: fast\n    batch: 1\n    max_tokens: 64\n"
        "    schema: {type: object, properties: {order: {type: integer}, units: {type: integer}, customer: {type: string, maxLength: 24}}}\n");
  const std::string results = dir / "results.jsonl";
  const std::string bin = ::qwenmux::testing::QwenmuxBinary();
  const std::vector<std::string> args = {bin, "pipeline", "run", dir / "p.yaml", dir / "docs", "--model",
                                         "fast=" + ModelPath("tiny-dense.q8_0.gguf"), "-t", "1", "--json", "-q", "-o", results};
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], STDOUT_FILENO);
    const int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, STDERR_FILENO);
    close(pipefd[0]);
    std::vector<char*> argv;
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  close(pipefd[1]);
  // Wait for the first finished document, then kill.
  std::string seen;
  char buf[4096];
  while (seen.find('\n') == std::string::npos) {
    const ssize_t n = read(pipefd[0], buf, sizeof buf);
    if (n <= 0) break;
    seen.append(buf, static_cast<size_t>(n));
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  close(pipefd[0]);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run ended before it could be killed";
  const std::string killed_file = Slurp(results);
  const std::vector<Json> before = JsonLines(killed_file.substr(0, killed_file.rfind('\n') + 1));  // a cut line is redone
  ASSERT_GE(before.size(), 1u);
  ASSERT_LT(before.size(), static_cast<size_t>(kDocs)) << "the run finished before the kill: raise kDocs";
  std::set<std::string> done_before;
  for (const Json& l : before) done_before.insert(l["document"].get<std::string>());

  std::string cmd;
  for (size_t i = 1; i < args.size(); ++i) cmd += " " + args[i];
  const Cli r = RunCli(cmd);
  const std::vector<Json> out = JsonLines(r.out);
  ASSERT_FALSE(out.empty());
  const Json& summary = out.back()["summary"];
  EXPECT_EQ(summary["documents"], kDocs);
  EXPECT_EQ(summary["skipped"].get<size_t>(), done_before.size());
  EXPECT_EQ(summary["done"].get<size_t>(), kDocs - done_before.size());
  // No finished document was redone; every document has exactly one line in the results file.
  for (size_t i = 0; i + 1 < out.size(); ++i) EXPECT_FALSE(done_before.count(out[i]["document"].get<std::string>())) << out[i].dump();
  const std::vector<Json> after = JsonLines(Slurp(results));
  std::map<std::string, int> count;
  for (const Json& l : after) ++count[l["document"].get<std::string>()];
  EXPECT_EQ(count.size(), static_cast<size_t>(kDocs));
  for (const auto& [doc, n] : count) EXPECT_EQ(n, 1) << doc;
}

}  // namespace
}  // namespace qwenmux::pipeline
