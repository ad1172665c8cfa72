// The server with a fake GPU (the model manager's device query and placement are injected; this
// machine has none): /api/ps reports size_vram (Ollama's field) and the device, /metrics the GPU
// gauges; a model too big for the GPU budget under auto is served from the CPU (the server stays
// up), and the startup log names the GPU and its budget.
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "orchestrator/manager/memory_estimate.h"
#include "server/app.h"
#include "server/http_client.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::ModelPath;

struct Fake {  // declared before the app in each test: outlives it
  orchestrator::Metrics metrics;
  std::mutex mu;
  std::vector<runtime::DeviceChoice> placed;
  std::vector<std::string> log;
};

std::unique_ptr<App> StartWithFakeGpu(const std::string& gpu_budget, Fake* fake) {
  AppOptions o;
  o.model_flags = {ModelPath("tiny-dense.q8_0.gguf") + "=tiny"};
  o.http.port = 0;
  o.http.io_threads = 1;
  o.models.n_ctx = 256;
  o.models.parallel = 1;
  o.models.threads = 1;
  o.gpu_memory_budget = gpu_budget;
  o.metrics = &fake->metrics;
  o.query_device = [](int index) {
    runtime::CudaDeviceInfo d;
    d.available = true;
    d.index = index;
    d.name = "Fake GPU";
    d.total_bytes = uint64_t{16} << 30;
    d.free_bytes = uint64_t{15} << 30;
    return d;
  };
  o.load_model = [fake](const std::string& path, const engine::LoadOptions& lo) {
    {
      std::lock_guard lk(fake->mu);
      fake->placed.push_back(lo.device);
    }
    engine::LoadOptions cpu = lo;
    cpu.device = runtime::DeviceChoice::kCpu;
    return engine::Model::Load(path, cpu);
  };
  auto app = App::Create(std::move(o), [fake](const std::string& line) {
    std::lock_guard lk(fake->mu);
    fake->log.push_back(line);
  });
  EXPECT_TRUE(app.ok()) << app.status().ToString();
  if (!app.ok()) return nullptr;
  EXPECT_TRUE((*app)->Start().ok());
  return std::move(*app);
}

json Generate(uint16_t port) {
  auto r = Call(port, "POST", "/api/generate",
                json{{"model", "tiny"}, {"prompt", "hi"}, {"stream", false}, {"options", {{"num_predict", 2}}}}.dump());
  EXPECT_EQ(r.status, 200) << r.body;
  return json::parse(r.body, nullptr, false);
}

TEST(ServerGpu, PsShowsSizeVramAndMetricsTheGpu) {
  Fake fake;
  auto app = StartWithFakeGpu("8GiB", &fake);
  ASSERT_NE(app, nullptr);
  Generate(app->port());
  auto ps = json::parse(Call(app->port(), "GET", "/api/ps").body, nullptr, false);
  ASSERT_EQ(ps["models"].size(), 1u) << ps.dump();
  const json& m = ps["models"][0];
  const uint64_t vram = m["size_vram"].get<uint64_t>();
  EXPECT_GT(vram, 0u);
  EXPECT_EQ(m["size"].get<uint64_t>(), vram + m["qwenmux"]["ram_bytes"].get<uint64_t>());
  EXPECT_EQ(m["qwenmux"]["device"], "cuda");
  EXPECT_EQ(ps["memory"]["gpu_in_use_bytes"].get<uint64_t>(), vram);
  EXPECT_EQ(ps["memory"]["gpu_budget_bytes"].get<uint64_t>(), uint64_t{8} << 30);
  EXPECT_EQ(ps["memory"]["gpu"], "Fake GPU");
  {
    std::lock_guard lk(fake.mu);
    ASSERT_EQ(fake.placed.size(), 1u);
    EXPECT_EQ(fake.placed[0], runtime::DeviceChoice::kCuda);
    std::string all;
    for (const auto& l : fake.log) all += l + "\n";
    EXPECT_NE(all.find("serve: device auto ; cuda:0 Fake GPU (15.0 GiB free of 16.0 GiB), GPU budget 8.0 GiB"),
              std::string::npos)
        << all;
  }
  const std::string metrics = Call(app->port(), "GET", "/metrics").body;
  EXPECT_NE(metrics.find("qwenmux_gpu_memory_in_use_bytes " + std::to_string(vram)), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("qwenmux_gpu_memory_budget_bytes " + std::to_string(uint64_t{8} << 30)), std::string::npos);
  app->Shutdown();
}

TEST(ServerGpu, TooBigForTheGpuRunsOnTheCpu) {
  Fake fake;
  auto app = StartWithFakeGpu("1MiB", &fake);  // smaller than any model's device memory
  ASSERT_NE(app, nullptr);
  const json g = Generate(app->port());
  EXPECT_EQ(g["done"], true) << g.dump();
  auto ps = json::parse(Call(app->port(), "GET", "/api/ps").body, nullptr, false);
  ASSERT_EQ(ps["models"].size(), 1u);
  EXPECT_EQ(ps["models"][0]["size_vram"], 0);
  EXPECT_EQ(ps["models"][0]["qwenmux"]["device"], "cpu");
  EXPECT_NE(ps["models"][0]["qwenmux"]["placement"].get<std::string>().find("cannot fit tiny on the GPU"),
            std::string::npos);
  {
    std::lock_guard lk(fake.mu);
    ASSERT_EQ(fake.placed.size(), 1u);
    EXPECT_EQ(fake.placed[0], runtime::DeviceChoice::kCpu);
    std::string all;
    for (const auto& l : fake.log) all += l + "\n";
    EXPECT_NE(all.find("serve: model manager: tiny: auto chose cpu"), std::string::npos) << all;
  }
  EXPECT_EQ(Call(app->port(), "GET", "/health").status, 200);  // still up
  app->Shutdown();
}

}  // namespace
}  // namespace qwenmux::server
