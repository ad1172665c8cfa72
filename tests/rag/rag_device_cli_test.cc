// --device on the commands that load models for RAG, pipelines and the server (ingest, ask,
// pipeline run, serve): bad values refused by the one parser; cuda without a usable GPU is an
// error naming why, before anything is loaded.
#include <string>

#include <gtest/gtest.h>

#include "rag_test_util.h"
#include "runtime/cuda/cuda_device.h"

namespace qwenmux::rag {
namespace {

using qwenmux::testing::kTinyDense;
using qwenmux::testing::RunQwenmux;
using qwenmux::testing::TempDir;
using qwenmux::testing::WriteFile;

TEST(RagDeviceCli, DeviceFlagOnEveryCommand) {
  TempDir dir;
  WriteFile(dir / "a.txt", "Otters hold hands while they sleep.");
  const std::string store = " --store " + (dir / "store");
  const std::string commands[] = {
      "ingest " + (dir / "a.txt") + " -C kb --embed-model " + kTinyDense + store,
      "ask 'q' -C kb -m " + kTinyDense + " --embed-model " + kTinyDense + " --no-rerank --no-score --no-rewrite" + store,
      "pipeline run examples/pipelines/document-processing.yaml " + (dir / "a.txt") + " -q -o " + (dir / "r.jsonl"),
      "serve --model " + kTinyDense + " --port 0",
  };
  const runtime::CudaDeviceInfo gpu = runtime::QueryCudaDevice(0);
  // ask opens the store before it loads any model (a missing store is the first error): make one.
  const auto made = RunQwenmux(commands[0] + " --device cpu", /*merge_stderr=*/true);
  ASSERT_EQ(made.code, 0) << made.out;
  for (const std::string& cmd : commands) {
    auto r = RunQwenmux(cmd + " --device gpu", /*merge_stderr=*/true);
    EXPECT_NE(r.code, 0) << cmd;
    EXPECT_NE(r.out.find("not one of cpu, cuda, auto"), std::string::npos) << cmd << "\n" << r.out;
    if (gpu.available || cmd.starts_with("pipeline")) continue;  // pipeline: its manager refuses per model
    r = RunQwenmux(cmd + " --device cuda", true);
    EXPECT_EQ(r.code, 1) << cmd << "\n" << r.out;
    EXPECT_NE(r.out.find("no usable GPU: cuda:0 unavailable: " + gpu.why), std::string::npos) << cmd << "\n" << r.out;
  }
}

}  // namespace
}  // namespace qwenmux::rag
