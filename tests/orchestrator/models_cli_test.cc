// qwenmux pull/list/rm/tag as a user runs them (build/qwenmux against the fake hub).
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/run_command.h"
#include "common/testdata.h"
#include "orchestrator/fake_hub.h"
#include "orchestrator/store/model_store.h"

namespace qwenmux::orchestrator {
namespace {

using qwenmux::testing::FakeHub;
using qwenmux::testing::TempDir;

struct CliRun {
  int code = -1;
  std::string out;  // stdout and stderr
};

CliRun Qwenmux(const std::string& args) {
  qwenmux::testing::CommandResult c = qwenmux::testing::RunQwenmux(args, /*merge_stderr=*/true);
  CliRun r;
  r.code = c.code;
  r.out = std::move(c.out);
  return r;
}

TEST(OrchestratorModelsCli, PullListTagRm) {
  const std::string bytes = qwenmux::testing::GgufBytes(200000, 11);
  FakeHub hub({{"Qwen/Qwen3-8B-GGUF/Qwen3-8B-Q8_0.gguf", bytes}}, "normal");
  TempDir tmp;
  std::string dir = " --models-dir " + tmp.path() + "/m";

  CliRun pull = Qwenmux("pull qwen3:8b-q8_0 --hub-url " + hub.url() + dir);
  ASSERT_EQ(pull.code, 0) << pull.out;
  EXPECT_NE(pull.out.find("pulled qwen3:8b-q8_0"), std::string::npos) << pull.out;
  EXPECT_NE(pull.out.find("models dir: " + tmp.path() + "/m (--models-dir)"), std::string::npos) << pull.out;

  CliRun tag = Qwenmux("tag qwen3:8b-q8_0 qwen3-balanced" + dir);
  ASSERT_EQ(tag.code, 0) << tag.out;

  CliRun list = Qwenmux("list" + dir);
  ASSERT_EQ(list.code, 0) << list.out;
  EXPECT_NE(list.out.find("qwen3:8b-q8_0"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("Q8_0"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("qwen3-balanced"), std::string::npos) << list.out;

  CliRun json = Qwenmux("list --json" + dir);
  ASSERT_EQ(json.code, 0) << json.out;
  nlohmann::json j = nlohmann::json::parse(json.out);
  ASSERT_EQ(j["models"].size(), 1u);
  EXPECT_EQ(j["models"][0]["size"], bytes.size());
  EXPECT_EQ(j["models"][0]["aliases"][0], "qwen3-balanced");
  EXPECT_EQ(j["models"][0]["source"], "hf:Qwen/Qwen3-8B-GGUF/Qwen3-8B-Q8_0.gguf");

  CliRun rm_unknown = Qwenmux("rm ghost" + dir);
  EXPECT_EQ(rm_unknown.code, 2);
  EXPECT_NE(rm_unknown.out.find("no model \"ghost\""), std::string::npos) << rm_unknown.out;
  CliRun tag_unknown = Qwenmux("tag ghost x" + dir);
  EXPECT_EQ(tag_unknown.code, 2);
  EXPECT_NE(tag_unknown.out.find("no model \"ghost\""), std::string::npos) << tag_unknown.out;
  CliRun bad_pull = Qwenmux("pull hf:Qwen/Qwen3-8B-GGUF/../../x.gguf --hub-url " + hub.url() + dir);
  EXPECT_EQ(bad_pull.code, 2) << bad_pull.out;

  CliRun rm = Qwenmux("rm qwen3:8b-q8_0" + dir);
  ASSERT_EQ(rm.code, 0) << rm.out;
  CliRun empty = Qwenmux("list --json" + dir);
  EXPECT_EQ(nlohmann::json::parse(empty.out)["models"].size(), 0u);
}

// An HTML page served as the model: pull refuses it and the store stays empty. An entry that is
// already bad (stored by an older qwenmux, or damaged since) is skipped by `list` with a warning.
TEST(OrchestratorModelsCli, NonGgufPullRefusedAndBadEntrySkipped) {
  const std::string html = "<html>404 Not Found</html>";
  FakeHub hub({{"Qwen/Qwen3-8B-GGUF/Qwen3-8B-Q8_0.gguf", html}}, "normal");
  TempDir tmp;
  const std::string mdir = tmp.path() + "/m";
  const std::string dir = " --models-dir " + mdir;
  CliRun pull = Qwenmux("pull qwen3:8b-q8_0 --hub-url " + hub.url() + dir);
  EXPECT_EQ(pull.code, 1) << pull.out;
  EXPECT_NE(pull.out.find("is not a GGUF file"), std::string::npos) << pull.out;
  EXPECT_EQ(pull.out.find("pulled"), std::string::npos) << pull.out;
  qwenmux::testing::CommandResult json = qwenmux::testing::RunQwenmux("list --json" + dir);
  ASSERT_EQ(json.code, 0) << json.out;
  EXPECT_EQ(nlohmann::json::parse(json.out)["models"].size(), 0u);
  EXPECT_TRUE(std::filesystem::is_empty(mdir + "/blobs"));

  // Plant a bad entry beside a good one, as an older pull would have left it.
  auto store = ModelStore::Open(mdir);
  ASSERT_TRUE(store.ok());
  StoredModel bad;
  bad.name = "hf:someone/repo/bad.gguf";
  bad.sha256 = std::string(64, 'b');
  bad.size = html.size();
  std::ofstream(store->BlobPath(bad.sha256)) << html;
  ASSERT_TRUE(store->Add(bad).ok());
  StoredModel good;
  good.name = "hf:someone/repo/good.gguf";
  good.sha256 = std::string(64, 'a');
  good.size = std::filesystem::file_size(qwenmux::testing::ModelPath("tiny-dense.q8_0.gguf"));
  std::filesystem::create_symlink(qwenmux::testing::ModelPath("tiny-dense.q8_0.gguf"), store->BlobPath(good.sha256));
  ASSERT_TRUE(store->Add(good).ok());

  CliRun list = Qwenmux("list" + dir);
  EXPECT_EQ(list.code, 0) << list.out;
  EXPECT_NE(list.out.find("warning: skipping hf:someone/repo/bad.gguf"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("is not a GGUF file"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("hf:someone/repo/good.gguf"), std::string::npos) << list.out;
  json = qwenmux::testing::RunQwenmux("list --json" + dir);
  ASSERT_EQ(json.code, 0) << json.out;
  nlohmann::json j = nlohmann::json::parse(json.out);
  ASSERT_EQ(j["models"].size(), 1u);
  EXPECT_EQ(j["models"][0]["name"], "hf:someone/repo/good.gguf");
}

TEST(OrchestratorModelsCli, CatalogListing) {
  CliRun r = Qwenmux("list --catalog --json");
  ASSERT_EQ(r.code, 0) << r.out;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tiers"]["qwen3-fast"], "qwen3:1.7b-q4_k_m");
  bool found = false;
  for (const auto& m : j["models"])
    if (m["name"] == "qwen3:30b-a3b-q8_0") found = m["params_active"].get<uint64_t>() < 4000000000ull;
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace qwenmux::orchestrator
