// --device on the commands that load a model (run, bench, refcheck) and what `inspect` says about
// GPU memory: bad values refused by the one parser, cpu and auto run (auto says what it chose and
// why), cuda without a usable GPU is an error naming why.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/run_command.h"
#include "common/testdata.h"
#include "runtime/cuda/cuda_device.h"

namespace {

using qwenmux::testing::RunQwenmux;

const std::string kDense = qwenmux::testing::ModelPath("tiny-dense.q8_0.gguf");

bool HasGpu() { return qwenmux::runtime::QueryCudaDevice(0).available; }

TEST(DeviceCli, BadDeviceRefusedEverywhere) {
  for (const std::string& cmd : {"run " + kDense + " -p hi -n 1", "bench " + kDense + " -p 4 -n 1",
                                 "refcheck " + kDense + " /dev/null"}) {
    auto r = RunQwenmux(cmd + " --device gpu", /*merge_stderr=*/true);
    EXPECT_NE(r.code, 0) << cmd;
    EXPECT_NE(r.out.find("--device"), std::string::npos) << cmd << "\n" << r.out;
    EXPECT_NE(r.out.find("not one of cpu, cuda, auto"), std::string::npos) << cmd << "\n" << r.out;
  }
}

TEST(DeviceCli, CpuAndAutoRun) {
  auto r = RunQwenmux("run " + kDense + " -p Hello -n 2 --temp 0 -t 2 --device cpu", true);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.find("device:"), std::string::npos) << "cpu is quiet";
  r = RunQwenmux("run " + kDense + " -p Hello -n 2 --temp 0 -t 2 --device auto", true);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find(HasGpu() ? "device: auto chose cuda" : "device: auto chose cpu: no usable GPU"),
            std::string::npos)
      << r.out;
  r = RunQwenmux("bench " + kDense + " -p 4 -n 2 -t 2 --json --no-bandwidth --device cpu");
  ASSERT_EQ(r.code, 0);
  EXPECT_EQ(nlohmann::json::parse(r.out)["device"], "cpu");
}

TEST(DeviceCli, CudaWithoutAGpuIsAClearError) {
  if (HasGpu()) GTEST_SKIP() << "a GPU is present";
  const std::string why = qwenmux::runtime::QueryCudaDevice(0).why;
  for (const std::string& cmd : {"run " + kDense + " -p hi -n 1", "bench " + kDense + " -p 4 -n 1",
                                 "refcheck " + kDense + " " + qwenmux::testing::RefPath("tiny-dense.hf-q8_0.json")}) {
    auto r = RunQwenmux(cmd + " --device cuda", true);
    EXPECT_EQ(r.code, 1) << cmd << "\n" << r.out;
    EXPECT_NE(r.out.find("error: device cuda: no usable GPU: cuda:0 unavailable: " + why), std::string::npos)
        << cmd << "\n" << r.out;
  }
}

TEST(DeviceCli, InspectShowsRamAndGpuMemory) {
  auto r = RunQwenmux("inspect " + kDense + " --json --ctx 1024 --parallel 2");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  const auto& m = j["memory"];
  EXPECT_EQ(m["context"], 1024);
  EXPECT_EQ(m["sequences"], 2);
  EXPECT_EQ(m["device"]["weights"], j["weights_bytes"]);
  // f16 K and V: 2 x 2 bytes x layers x kv_dim x context x sequences.
  const auto& h = j["hparams"];
  const uint64_t kv = 2ull * 2 * h["block_count"].get<uint64_t>() * h["head_count_kv"].get<uint64_t>() *
                      h["head_dim"].get<uint64_t>() * 1024 * 2;
  EXPECT_EQ(m["device"]["kv_cache"], kv);
  EXPECT_EQ(m["ram"]["kv_cache"], kv);
  EXPECT_GT(m["device_bytes"].get<uint64_t>(), m["device"]["weights"].get<uint64_t>());
  EXPECT_EQ(m["gpu"]["available"], HasGpu());
  if (!HasGpu()) {
    EXPECT_FALSE(m["fits_gpu"].get<bool>());
  }
  r = RunQwenmux("inspect " + kDense);
  ASSERT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("memory at context 4096 x 1 sequence(s):"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("GPU memory (on the GPU)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("GPU: cuda:0"), std::string::npos) << r.out;
  r = RunQwenmux("inspect " + kDense + " --gpu-memory-budget lots", true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("--gpu-memory-budget"), std::string::npos) << r.out;
}

}  // namespace
