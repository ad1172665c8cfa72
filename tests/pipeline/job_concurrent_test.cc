// pipeline::Job in process (the library API the HTTP endpoint uses): stages on several threads,
// progress snapshots from another thread while it runs, cancellation. Named *Concurrent* so the
// TSan CI job runs it.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "common/testdata.h"
#include "orchestrator/temp_dir.h"
#include "pipeline/job.h"

namespace qwenmux::pipeline {
namespace {

using qwenmux::testing::ModelPath;
using qwenmux::testing::TempDir;

constexpr const char* kDef = R"(name: job-test
context: 512
stages:
  - {name: read, type: read, concurrency: 2}
  - name: classify
    type: classify
    model: fast
    batch: 2
    labels:
      order: {description: an order, schema: {type: object, properties: {n: {type: integer}, who: {type: string, maxLength: 12}}}}
      other: {description: anything else, schema: {type: object, properties: {topic: {type: string, maxLength: 12}}}}
  - {name: extract, type: extract, model: quality, batch: 2, max_tokens: 48}
  - {name: validate, type: validate, model: balanced, batch: 2}
  - {name: chunk, type: chunk, chunk_tokens: 64, chunk_overlap: 8}
  - {name: embed, type: embed, model: fast, batch: 4}
)";

RunOptions Options(const std::string& dir, int docs) {
  std::filesystem::create_directories(dir + "/docs");
  for (int i = 0; i < docs; ++i) {
    std::ofstream(fmt::format("{}/docs/d{}.txt", dir, i)) << fmt::format("Order {} for {} units from shop {}.\n", i, i + 2, i * 3);
  }
  std::ofstream(dir + "/docs/empty.txt") << "";
  RunOptions o;
  o.inputs = {dir + "/docs"};
  o.models = {{"fast", ModelPath("tiny-dense.q8_0.gguf")},
              {"balanced", ModelPath("tiny-moe.q4_k_m.gguf")},
              {"quality", ModelPath("tiny-dense.q8_0.gguf")}};
  o.results_path = dir + "/results.jsonl";
  o.threads = 1;
  return o;
}

TEST(PipelineJobConcurrent, StagesRunTogetherAndProgressIsConsistent) {
  TempDir dir;
  auto def = ParsePipeline(kDef, "job.yaml");
  ASSERT_TRUE(def.ok()) << def.status().ToString();
  std::atomic<int> callbacks{0};
  auto job = Job::Start(*def, Options(dir.path(), 6), [&](const nlohmann::ordered_json& r) {
    EXPECT_TRUE(r.contains("document"));
    ++callbacks;
  });
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  std::atomic<bool> stop{false};
  std::thread watcher([&] {
    int64_t last = 0;
    while (!stop) {
      const JobProgress p = (*job)->Progress();
      EXPECT_GE(p.done, last);  // monotonic
      EXPECT_LE(p.done, p.total);
      EXPECT_EQ(p.ok + p.failed + p.empty, p.done);  // an empty file is reported as skipped
      last = p.done;
      (void)(*job)->Results();
      (void)p.ToJson();
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  auto summary = (*job)->Wait();
  stop = true;
  watcher.join();
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ((*summary)["state"], "done");
  EXPECT_EQ((*summary)["documents"], 7);
  EXPECT_EQ((*summary)["done"], 7);
  EXPECT_EQ(callbacks.load(), 7);
  EXPECT_EQ((*job)->Results().size(), 7u);
  EXPECT_EQ((*summary)["empty"], 1);  // empty.txt: skipped, not a failure
  EXPECT_FALSE((*summary)["stages"][0]["failures"].contains("empty document"));
  // Documents that passed validation went on to chunk and embed.
  int embedded = 0;
  for (const auto& r : (*job)->Results()) {
    if (r["status"] == "ok") {
      EXPECT_GT(r["chunks"].get<int>(), 0) << r.dump();
      EXPECT_EQ(r["embedding_dim"], 256) << r.dump();
      ++embedded;
    }
  }
  EXPECT_GT(embedded, 0) << "no document passed validation, so the loop above checked nothing";
}

TEST(PipelineJobConcurrent, CancelStopsWithoutResultsForUnfinishedDocuments) {
  TempDir dir;
  auto def = ParsePipeline(kDef, "job.yaml");
  ASSERT_TRUE(def.ok());
  auto job = Job::Start(*def, Options(dir.path(), 8));
  ASSERT_TRUE(job.ok());
  (*job)->Cancel();
  auto summary = (*job)->Wait();
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ((*summary)["state"], "cancelled");
  EXPECT_LT((*summary)["done"].get<int>(), 9);
  // The destructor joins every worker (no hang, no race) even right after a cancel.
  job->reset();
}

TEST(PipelineJobConcurrent, StartErrors) {
  TempDir dir;
  auto def = ParsePipeline(kDef, "job.yaml");
  ASSERT_TRUE(def.ok());
  RunOptions o = Options(dir.path(), 1);
  o.inputs.clear();
  EXPECT_EQ(Job::Start(*def, o).status().code(), StatusCode::kInvalidArgument);
  o = Options(dir.path(), 1);
  o.models.erase("balanced");
  o.models_dir = dir / "no-store";
  auto j = Job::Start(*def, o);
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("--model balanced=FILE.gguf"), std::string::npos) << j.status().message();
  o = Options(dir.path(), 1);
  o.results_path = dir / "no/such/dir/results.jsonl";
  EXPECT_FALSE(Job::Start(*def, o).ok());
  // An embed stage that stores needs a store directory.
  auto storing = ParsePipeline(
      "name: s\nstages:\n  - {name: read, type: read}\n  - {name: chunk, type: chunk}\n"
      "  - {name: embed, type: embed, model: fast, collection: docs}\n", "s.yaml");
  ASSERT_TRUE(storing.ok()) << storing.status().ToString();
  o = Options(dir.path(), 1);
  auto no_store = Job::Start(*storing, o);
  ASSERT_FALSE(no_store.ok());
  EXPECT_NE(no_store.status().message().find("collection 'docs' but no store directory"), std::string::npos)
      << no_store.status().message();
}

}  // namespace
}  // namespace qwenmux::pipeline
