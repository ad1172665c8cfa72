// Security checks of issue 20 against the in-process server: a repeated Host header is refused
// in either order, no server path reaches a client (/api/ps, /api/show, the RAG 404), collection
// names are checked over HTTP, and the pipeline jobs' default work directory is never a planted
// symbolic link or another user's directory.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/run_command.h"
#include "common/testdata.h"
#include "orchestrator/temp_dir.h"
#include "server/app.h"
#include "server/http_client.h"
#include "server/pipeline_jobs.h"

namespace qwenmux::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::ModelPath;
using qwenmux::testing::Raw;
using qwenmux::testing::RawStatus;
using qwenmux::testing::TempDir;

struct Server {
  TempDir dir;
  std::unique_ptr<App> app;
  uint16_t port() const { return app->port(); }
};

// The tiny model served from a file inside the test's temp dir (a link to the test data), the
// RAG store and the job work dir there too: any of these paths in an answer is a leak.
std::unique_ptr<Server> StartServer() {
  auto s = std::make_unique<Server>();
  fs::create_directories(s->dir / "models");
  fs::create_symlink(ModelPath("tiny-dense.q8_0.gguf"), s->dir / "models/tiny-model.gguf");
  AppOptions o;
  o.model_flags = {(s->dir / "models/tiny-model.gguf") + "=tiny"};
  o.http.port = 0;
  o.http.security.check_host = true;
  o.models.n_ctx = 256;
  o.models.parallel = 1;
  o.models.threads = 1;
  o.shutdown_grace = std::chrono::milliseconds(500);
  o.rag.store_dir = s->dir / "rag";
  o.jobs.work_dir = s->dir / "work";
  auto app = App::Create(std::move(o), [](const std::string&) {});
  EXPECT_TRUE(app.ok()) << app.status().ToString();
  if (!app.ok()) return nullptr;
  s->app = std::move(*app);
  EXPECT_TRUE(s->app->Start().ok());
  return s;
}

std::string Get(uint16_t port, const std::string& host_lines) {
  return Raw(port, "GET /health HTTP/1.1\r\n" + host_lines + "Connection: close\r\n\r\n");
}

TEST(ServerSecurityHost, RepeatedHostHeaderIsRefusedInEitherOrder) {
  auto s = StartServer();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(RawStatus(Get(s->port(), "Host: localhost\r\n")), 200);
  // Before the fix the first order passed the rebinding check (it read the first Host only).
  EXPECT_EQ(RawStatus(Get(s->port(), "Host: localhost\r\nHost: evil.example\r\n")), 400);
  EXPECT_EQ(RawStatus(Get(s->port(), "Host: evil.example\r\nHost: localhost\r\n")), 400);
  EXPECT_EQ(RawStatus(Get(s->port(), "Host: localhost\r\nHost: localhost\r\n")), 400);
  const std::string r = Get(s->port(), "Host: localhost\r\nHost: evil.example\r\n");
  EXPECT_NE(r.find("more than one Host header"), std::string::npos) << r;
}

TEST(ServerSecurityPaths, NoServerPathInPsShowOrRagErrors) {
  auto s = StartServer();
  ASSERT_NE(s, nullptr);
  const std::string model_dir = fs::path(ModelPath("tiny-dense.q8_0.gguf")).parent_path().string();
  auto leaks = [&](const std::string& body) {
    return body.find(s->dir.path()) != std::string::npos || body.find(model_dir) != std::string::npos ||
           body.find(fs::canonical(s->dir.path()).string()) != std::string::npos;
  };
  ASSERT_EQ(Call(s->port(), "POST", "/api/generate", json{{"model", "tiny"}, {"prompt", ""}}.dump()).status, 200);  // load
  auto ps = Call(s->port(), "GET", "/api/ps");
  ASSERT_EQ(ps.status, 200);
  EXPECT_FALSE(leaks(ps.body)) << ps.body;
  const json pj = json::parse(ps.body);
  ASSERT_EQ(pj["models"].size(), 1u) << ps.body;
  EXPECT_EQ(pj["models"][0]["qwenmux"]["file"], "tiny-model.gguf") << ps.body;  // the name, not the path

  auto show = Call(s->port(), "POST", "/api/show", json{{"model", "tiny"}}.dump());
  ASSERT_EQ(show.status, 200);
  EXPECT_FALSE(leaks(show.body)) << show.body;
  EXPECT_EQ(json::parse(show.body)["modelfile"], "FROM tiny\n");

  auto rag = Call(s->port(), "POST", "/v1/rag", json{{"collection", "absent"}, {"question", "q"}}.dump());
  EXPECT_EQ(rag.status, 404) << rag.body;
  EXPECT_FALSE(leaks(rag.body)) << rag.body;
  EXPECT_NE(rag.body.find("absent"), std::string::npos) << rag.body;
}

TEST(ServerSecurityCollections, BadCollectionNamesAre400OverHttp) {
  auto s = StartServer();
  ASSERT_NE(s, nullptr);
  const std::vector<std::string> names = {"../../x", "a/b", "/etc", ".hidden", "a..b", "sp ace", std::string(65, 'a'), ""};
  for (const std::string& name : names) {
    auto r = Call(s->port(), "POST", "/v1/rag", json{{"collection", name}, {"question", "q"}}.dump());
    EXPECT_EQ(r.status, 400) << name << ": " << r.body;
  }
  EXPECT_FALSE(fs::exists(s->dir / "x"));
}

TEST(ServerSecurityCollections, BadCollectionNamesAreRefusedByTheCli) {
  TempDir dir;
  for (const std::string& args : {"ingest --collection ../x --store " + dir.path() + " " + dir.path(),
                                 "ask q --collection a/b --store " + dir.path(),
                                 "collection stats ../../etc --store " + dir.path()}) {
    auto r = qwenmux::testing::RunQwenmux(args, /*merge_stderr=*/true);
    EXPECT_NE(r.code, 0) << args << ": " << r.out;
    EXPECT_NE(r.out.find("collection name"), std::string::npos) << args << ": " << r.out;
  }
  EXPECT_FALSE(fs::exists(dir / "store.db"));  // refused before the store was opened
}

// Points TMPDIR at `dir` for one scope (the default work dir is derived from it).
class ScopedTmpdir {
 public:
  explicit ScopedTmpdir(const std::string& dir) {
    if (const char* old = std::getenv("TMPDIR")) old_ = old;
    ::setenv("TMPDIR", dir.c_str(), 1);
  }
  ~ScopedTmpdir() {
    if (old_) ::setenv("TMPDIR", old_->c_str(), 1);
    else ::unsetenv("TMPDIR");
  }

 private:
  std::optional<std::string> old_;
};

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

TEST(PipelineJobsWorkDir, DefaultWorkDirRefusesAPlantedSymlink) {
  TempDir tmp;
  const std::string target = tmp / "victim";
  fs::create_directories(target);
  ASSERT_EQ(::chmod(target.c_str(), 0755), 0);
  const std::string link = tmp / ("qwenmux-jobs-" + std::to_string(::getuid()));
  fs::create_symlink(target, link);
  ScopedTmpdir env(tmp.path());
  PipelineJobs jobs(PipelineJobOptions{}, nullptr, nullptr, "", 1);
  EXPECT_EQ(jobs.work_dir(), link);
  Status st = jobs.PrepareWorkDir();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("symbolic link"), std::string::npos) << st.ToString();
  EXPECT_EQ(ModeOf(target), 0755u);  // the link's target was not chmod-ed
  EXPECT_TRUE(fs::is_empty(target));
  // A job submitted anyway fails the same way, and writes nothing through the link.
  JobSubmission sub;
  sub.def.name = "p";
  sub.documents.push_back({"a.txt", "text"});
  auto r = jobs.Submit(std::move(sub), nullptr);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(fs::is_empty(target));

  // serve refuses to start with the reason.
  AppOptions o;
  o.http.port = 0;
  o.models_dir = tmp / "models";
  auto app = App::Create(std::move(o), [](const std::string&) {});
  ASSERT_FALSE(app.ok());
  EXPECT_NE(app.status().message().find("symbolic link"), std::string::npos) << app.status().ToString();
}

TEST(PipelineJobsWorkDir, CreatesAPrivateDirectoryAndTightensAnOwnOne) {
  TempDir tmp;
  ScopedTmpdir env(tmp.path());
  PipelineJobs jobs(PipelineJobOptions{}, nullptr, nullptr, "", 1);
  ASSERT_TRUE(jobs.PrepareWorkDir().ok());
  EXPECT_TRUE(fs::is_directory(jobs.work_dir()));
  EXPECT_EQ(ModeOf(jobs.work_dir()), 0700u);
  ASSERT_EQ(::chmod(jobs.work_dir().c_str(), 0777), 0);
  ASSERT_TRUE(jobs.PrepareWorkDir().ok());
  EXPECT_EQ(ModeOf(jobs.work_dir()), 0700u);
  // A file where the directory should be is refused.
  PipelineJobOptions o;
  o.work_dir = tmp / "file";
  std::ofstream(o.work_dir) << "x";
  PipelineJobs on_file(o, nullptr, nullptr, "", 1);
  EXPECT_FALSE(on_file.PrepareWorkDir().ok());
}

TEST(PipelineJobsWorkDir, RefusesAnotherUsersDirectory) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a directory to another user";
  TempDir tmp;
  const std::string dir = tmp / ("qwenmux-jobs-" + std::to_string(::getuid()));
  fs::create_directories(dir);
  ASSERT_EQ(::chown(dir.c_str(), 4242, 4242), 0);
  ScopedTmpdir env(tmp.path());
  PipelineJobs jobs(PipelineJobOptions{}, nullptr, nullptr, "", 1);
  Status st = jobs.PrepareWorkDir();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("owned by uid 4242"), std::string::npos) << st.ToString();
}

}  // namespace
}  // namespace qwenmux::server
