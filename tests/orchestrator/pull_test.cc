#include "orchestrator/store/pull.h"

#include <filesystem>
#include <random>

#include <gtest/gtest.h>

#include "orchestrator/fake_hub.h"
#include "base/sha256.h"

namespace qwenmux::orchestrator {
namespace {

namespace fs = std::filesystem;
using qwenmux::testing::FakeHub;
using qwenmux::testing::TempDir;

using qwenmux::testing::GgufBytes;

const char* kRepoFile = "Qwen/Qwen3-1.7B-GGUF/Qwen3-1.7B-Q4_K_M.gguf";

struct PullFixture {
  std::string bytes = GgufBytes(3 << 20, 7);  // 3 MiB of tensor data
  std::string sha = Sha256Hex(bytes.data(), bytes.size());
  TempDir tmp;
  ModelStore store = *ModelStore::Open(tmp / "models");
  HubOptions Options(const FakeHub& hub) const {
    HubOptions o;
    o.base_url = hub.url();
    o.connect_timeout_s = 5;
    o.stall_timeout_s = 10;
    return o;
  }
  bool StoreEmpty() const {
    for (const auto& e : fs::directory_iterator(store.dir() + "/blobs")) {
      if (!e.path().string().ends_with(".partial")) return false;
    }
    return store.List()->empty();
  }
};

TEST(OrchestratorPull, FullPullOfCatalogTier) {
  PullFixture f;
  FakeHub hub({{kRepoFile, f.bytes}}, "normal");
  Result<PullResult> r = Pull(f.store, "qwen3-fast", f.Options(hub));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->already_present);
  EXPECT_EQ(r->model.name, "qwen3:1.7b-q4_k_m");
  EXPECT_EQ(r->model.aliases, std::vector<std::string>{"qwen3-fast"});
  EXPECT_EQ(r->model.sha256, f.sha);
  EXPECT_EQ(r->model.size, f.bytes.size());
  EXPECT_EQ(r->model.quantization, "Q4_K_M");
  EXPECT_EQ(r->model.role, "chat");
  EXPECT_EQ(*Sha256File(f.store.BlobPath(f.sha)), f.sha);
  EXPECT_FALSE(fs::exists(f.store.PartialPath(f.sha)));
  // The hub flow: HEAD resolve (302 with X-Linked-*), then GET following the redirect to /cdn/.
  std::string log = hub.log();
  EXPECT_NE(log.find("\"method\": \"HEAD\", \"path\": \"/Qwen/Qwen3-1.7B-GGUF/resolve/main/Qwen3-1.7B-Q4_K_M.gguf\""),
            std::string::npos) << log;
  EXPECT_NE(log.find("\"path\": \"/cdn/" + f.sha + "\", \"range\": null"), std::string::npos) << log;

  // A second pull finds the blob and downloads nothing.
  Result<PullResult> again = Pull(f.store, "qwen3:1.7b-q4_k_m", f.Options(hub));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(again->already_present);
  EXPECT_EQ(again->model.aliases, std::vector<std::string>{"qwen3-fast"});  // kept
  EXPECT_EQ(f.store.List()->size(), 1u);
}

TEST(OrchestratorPull, HfReferenceWithProgress) {
  PullFixture f;
  f.bytes = GgufBytes(6 * 1024, 3);
  f.sha = Sha256Hex(f.bytes.data(), f.bytes.size());
  FakeHub hub({{"someone/repo/sub/model-Q8_0.gguf", f.bytes}}, "slow");
  HubOptions o = f.Options(hub);
  std::vector<uint64_t> seen;
  o.on_progress = [&](uint64_t done, uint64_t total) {
    EXPECT_EQ(total, f.bytes.size());
    seen.push_back(done);
  };
  Result<PullResult> r = Pull(f.store, "hf:someone/repo/sub/model-Q8_0.gguf", o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->model.name, "hf:someone/repo/sub/model-Q8_0.gguf");
  EXPECT_EQ(r->model.quantization, "Q8_0");
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(seen.back(), f.bytes.size());
  EXPECT_GT(std::count_if(seen.begin(), seen.end(), [&](uint64_t d) { return d > 0 && d < f.bytes.size(); }), 0);
}

TEST(OrchestratorPull, ResumesAfterDroppedConnection) {
  PullFixture f;
  FakeHub hub({{kRepoFile, f.bytes}}, "drop");
  Result<PullResult> first = Pull(f.store, "qwen3:1.7b-q4_k_m", f.Options(hub));
  ASSERT_FALSE(first.ok());
  EXPECT_NE(first.status().message().find("run pull again to resume"), std::string::npos)
      << first.status().message();
  ASSERT_TRUE(fs::exists(f.store.PartialPath(f.sha)));
  uint64_t kept = fs::file_size(f.store.PartialPath(f.sha));
  EXPECT_GT(kept, 0u);
  EXPECT_LT(kept, f.bytes.size());
  EXPECT_TRUE(f.store.List()->empty());
  EXPECT_FALSE(fs::exists(f.store.BlobPath(f.sha)));

  Result<PullResult> second = Pull(f.store, "qwen3:1.7b-q4_k_m", f.Options(hub));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->stats.resumed_from, kept);
  EXPECT_EQ(second->stats.downloaded, f.bytes.size() - kept);
  EXPECT_EQ(*Sha256File(f.store.BlobPath(f.sha)), f.sha);
  // The server saw the Range request.
  EXPECT_NE(hub.log().find("\"range\": \"bytes=" + std::to_string(kept) + "-\""), std::string::npos) << hub.log();
}

TEST(OrchestratorPull, HashMismatchLeavesNothing) {
  PullFixture f;
  FakeHub hub({{kRepoFile, f.bytes}}, "wrong-hash");
  Result<PullResult> r = Pull(f.store, "qwen3:1.7b-q4_k_m", f.Options(hub));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(r.status().message().find("SHA-256 mismatch"), std::string::npos) << r.status().message();
  EXPECT_TRUE(f.StoreEmpty());
  EXPECT_TRUE(fs::is_empty(f.store.dir() + "/blobs"));  // the .partial was deleted too
}

// A hub or proxy that serves an HTML error page under the model's name (correct hash and size
// for those bytes): pull used to store it ("pulled, 25 B") and list it. It is refused before the
// rename into the store, with the bytes it got quoted, and nothing is left behind.
TEST(OrchestratorPull, NonGgufDownloadIsRefused) {
  PullFixture f;
  const std::string html = "<!DOCTYPE html><html><body>502 Bad Gateway</body></html>\n";
  // A GGUF cut short: the magic is right but the header does not parse.
  const std::string cut = GgufBytes(4096, 1).substr(0, 40);
  FakeHub hub({{kRepoFile, html}, {"someone/repo/cut-Q8_0.gguf", cut}}, "normal");
  Result<PullResult> r = Pull(f.store, "qwen3:1.7b-q4_k_m", f.Options(hub));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(r.status().message().find("is not a GGUF file"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("<!DOCTYPE html>"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("the download was deleted"), std::string::npos) << r.status().message();
  EXPECT_TRUE(f.StoreEmpty());
  EXPECT_TRUE(fs::is_empty(f.store.dir() + "/blobs"));

  Result<PullResult> c = Pull(f.store, "hf:someone/repo/cut-Q8_0.gguf", f.Options(hub));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("gguf"), std::string::npos) << c.status().message();
  EXPECT_TRUE(f.StoreEmpty());
  EXPECT_TRUE(fs::is_empty(f.store.dir() + "/blobs"));
}

TEST(OrchestratorPull, BodyBeyondAnnouncedSizeIsRefused) {
  PullFixture f;
  FakeHub hub({{kRepoFile, f.bytes}}, "wrong-size");
  Result<PullResult> r = Pull(f.store, "qwen3:1.7b-q4_k_m", f.Options(hub));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("beyond the"), std::string::npos) << r.status().message();
  EXPECT_TRUE(f.StoreEmpty());
  EXPECT_TRUE(fs::is_empty(f.store.dir() + "/blobs"));
}

TEST(OrchestratorPull, RedirectLoopIsAnError) {
  PullFixture f;
  FakeHub hub({{kRepoFile, f.bytes}}, "redirect-loop");
  Result<PullResult> r = Pull(f.store, "qwen3:1.7b-q4_k_m", f.Options(hub));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("too many redirects"), std::string::npos) << r.status().message();
  EXPECT_TRUE(f.StoreEmpty());
}

TEST(OrchestratorPull, NoPublishedHashIsRefused) {
  PullFixture f;
  FakeHub hub({{kRepoFile, f.bytes}}, "no-etag");
  Result<PullResult> r = Pull(f.store, "qwen3:1.7b-q4_k_m", f.Options(hub));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("X-Linked-Etag"), std::string::npos) << r.status().message();
  EXPECT_EQ(hub.log().find("\"GET\""), std::string::npos) << hub.log();  // never downloaded
  EXPECT_TRUE(f.StoreEmpty());
}

TEST(OrchestratorPull, MissingFileIsNotFound) {
  PullFixture f;
  FakeHub hub({{kRepoFile, f.bytes}}, "normal");
  Result<PullResult> r = Pull(f.store, "qwen3:8b-q8_0", f.Options(hub));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("404"), std::string::npos);
}

TEST(OrchestratorPull, UnsafeNamesAreRefusedBeforeAnyRequest) {
  PullFixture f;
  FakeHub hub({{kRepoFile, f.bytes}}, "normal");
  for (const char* bad : {"hf:Qwen/Qwen3-8B-GGUF/../../etc/passwd", "hf:Qwen/Qwen3-8B-GGUF//etc/passwd",
                          "hf:../x/y.gguf", "hf:Qwen/Qwen3-8B-GGUF/./a.gguf", "hf:Qwen/Qwen3-8B-GGUF/a b.gguf",
                          "hf:Qwen/Qwen3-8B-GGUF/a\\b.gguf", "hf:Qwen/only-repo", "hf:Qwen/Qwen3-8B-GGUF/dir/",
                          "qwen3:7b", "qwen3-reranker:8b-q8_0"}) {
    Result<PullResult> r = Pull(f.store, bad, f.Options(hub));
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().code(), StatusCode::kIo) << bad << ": " << r.status().message();
  }
  EXPECT_EQ(hub.log(), "");  // the server never saw a request
  EXPECT_TRUE(f.StoreEmpty());
}

TEST(OrchestratorPull, UnreachableHub) {
  PullFixture f;
  HubOptions o;
  o.base_url = "http://127.0.0.1:1";
  o.connect_timeout_s = 5;
  Result<PullResult> r = Pull(f.store, "qwen3-fast", o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIo);
  o.base_url = "file:///etc";
  EXPECT_EQ(Pull(f.store, "qwen3-fast", o).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qwenmux::orchestrator
