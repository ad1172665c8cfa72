// Model manager on a GPU, with a fake device (capacities chosen by the test) and a fake placement
// (records the device each load asked for, then loads on the CPU: this machine has no GPU): the
// GPU budget (bytes or a share of free memory), auto placement and its CPU fallback with the
// reason, explicit cuda refused with a clear error, LRU eviction on device memory independent of
// RAM, CPU models not counting against the GPU, unloading giving the bytes back, the metrics.
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "orchestrator/manager/model_manager.h"
#include "orchestrator/manager_test_util.h"

namespace qwenmux::orchestrator {
namespace {

using namespace std::chrono_literals;
using runtime::DeviceChoice;
using test::FakeClock;
using test::TestOptions;
using test::TinySpec;

constexpr uint64_t kGiB = uint64_t{1} << 30;

runtime::CudaDeviceInfo FakeGpu(uint64_t total, uint64_t free) {
  runtime::CudaDeviceInfo d;
  d.available = true;
  d.name = "Fake GPU";
  d.cc_major = 9;
  d.total_bytes = total;
  d.free_bytes = free;
  return d;
}

// Where each load went: the fake backend placement.
struct Placements {
  std::mutex mu;
  std::vector<std::pair<std::string, DeviceChoice>> loads;  // (path, device asked of the engine)
  std::vector<std::string> log;
  DeviceChoice Last() {
    std::lock_guard lk(mu);
    return loads.empty() ? DeviceChoice::kAuto : loads.back().second;
  }
  std::string Log() {
    std::lock_guard lk(mu);
    std::string s;
    for (const auto& l : log) s += l + "\n";
    return s;
  }
};

ManagerOptions GpuOptions(const runtime::CudaDeviceInfo& gpu, MemoryAmount gpu_budget, Metrics* metrics,
                          FakeClock* clock, Placements* p, uint64_t ram_budget = 64 * kGiB) {
  ManagerOptions o = TestOptions(ram_budget, metrics, clock);
  o.query_device = [gpu](int index) {
    runtime::CudaDeviceInfo d = gpu;
    d.index = index;
    return d;
  };
  o.gpu_budget = gpu_budget;
  o.load_model = [p](const std::string& path, const engine::LoadOptions& lo) {
    {
      std::lock_guard lk(p->mu);
      p->loads.emplace_back(path, lo.device);
    }
    engine::LoadOptions cpu = lo;
    cpu.device = DeviceChoice::kCpu;
    return engine::Model::Load(path, cpu);
  };
  o.log = [p](const std::string& line) {
    std::lock_guard lk(p->mu);
    p->log.push_back(line);
  };
  return o;
}

MemoryAmount Bytes(uint64_t b) { return MemoryAmount{false, b, 0}; }

ModelSpec Spec(const std::string& name, DeviceChoice device) {
  ModelSpec s = TinySpec(name);
  s.load.device = device;
  return s;
}

ModelEstimates EstimatesOf(const ModelSpec& s) {
  auto e = EstimateModelMemories(s.path, s.load);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? *e : ModelEstimates{};
}

std::map<std::string, runtime::Device> Loaded(const ModelManager& m) {
  std::map<std::string, runtime::Device> out;
  for (const auto& i : m.Snapshot()) out[i.name] = i.device;
  return out;
}

TEST(ManagerGpuTest, BudgetIsBytesOrShareOfFreeMemory) {
  const auto gpu = FakeGpu(80 * kGiB, 10 * kGiB);
  EXPECT_EQ(ResolveGpuBudget(MemoryAmount{true, 0, 50.0}, gpu), 5 * kGiB);
  EXPECT_EQ(ResolveGpuBudget(MemoryAmount{true, 0, 90.0}, gpu), 9 * kGiB);
  EXPECT_EQ(ResolveGpuBudget(Bytes(4 * kGiB), gpu), 4 * kGiB);
  EXPECT_EQ(ResolveGpuBudget(Bytes(40 * kGiB), gpu), 10 * kGiB);  // never above what is free
  runtime::CudaDeviceInfo none;
  none.why = "no CUDA device";
  EXPECT_EQ(ResolveGpuBudget(Bytes(4 * kGiB), none), 0u);
  // The same parser as --memory-budget.
  auto pct = ParseMemoryAmount("90%");
  ASSERT_TRUE(pct.ok());
  EXPECT_EQ(ResolveGpuBudget(*pct, gpu), 9 * kGiB);
  auto gib = ParseMemoryAmount("2GiB");
  ASSERT_TRUE(gib.ok());
  EXPECT_EQ(ResolveGpuBudget(*gib, gpu), 2 * kGiB);
  EXPECT_FALSE(ParseMemoryAmount("lots").ok());

  Metrics metrics;
  Placements p;
  ModelManager m(GpuOptions(gpu, MemoryAmount{true, 0, 90.0}, &metrics, nullptr, &p));  // the default share
  EXPECT_EQ(m.gpu_budget_bytes(), 9 * kGiB);
  EXPECT_EQ(m.gpu().name, "Fake GPU");
  EXPECT_NE(metrics.RenderText().find("qwenmux_gpu_memory_budget_bytes " + std::to_string(9 * kGiB)), std::string::npos);
}

TEST(ManagerGpuTest, DeviceEstimateCountsWeightsKvAndScratch) {
  ModelSpec s = TinySpec("x");
  auto f = gguf::File::Open(s.path);
  ASSERT_TRUE(f.ok());
  auto c = model::ReadConfig(*f);
  ASSERT_TRUE(c.ok());
  const ModelEstimates e = EstimatesOf(s);
  EXPECT_EQ(e.device.weights, model::WeightBytes(*f));
  EXPECT_EQ(e.device.kv_cache, uint64_t{2} * 2 * c->n_layer * c->kv_dim() * 256);  // f16 K+V, n_ctx 256, 1 seq
  EXPECT_GT(e.device.scratch, kDeviceFixedBytes);
  ModelSpec four = s;
  four.load.n_seq = 4;
  EXPECT_EQ(EstimatesOf(four).device.kv_cache, 4 * e.device.kv_cache);
  EXPECT_NE(e.device.ToString().find("kv cache"), std::string::npos);
}

TEST(ManagerGpuTest, AutoPlacesOnTheGpuWhenItFits) {
  Metrics metrics;
  Placements p;
  const ModelEstimates est = EstimatesOf(Spec("a", DeviceChoice::kAuto));
  const uint64_t d = est.device.total();
  ModelManager m(GpuOptions(FakeGpu(80 * kGiB, 70 * kGiB), Bytes(3 * d), &metrics, nullptr, &p),
                 {Spec("a", DeviceChoice::kAuto), Spec("c", DeviceChoice::kCpu)});
  {
    auto l = m.Acquire("a");
    ASSERT_TRUE(l.ok()) << l.status().ToString();
  }
  EXPECT_EQ(p.Last(), DeviceChoice::kCuda);  // the engine was asked for the GPU
  auto snap = m.Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].device, runtime::Device::kCuda);
  EXPECT_EQ(snap[0].vram_bytes, d);
  EXPECT_EQ(snap[0].bytes, est.ram.metadata + est.ram.compute);  // RAM: no weights, no KV cache
  EXPECT_LT(snap[0].bytes, est.ram.total());
  EXPECT_NE(snap[0].placement.find("auto chose cuda"), std::string::npos) << snap[0].placement;
  EXPECT_NE(p.Log().find("auto chose cuda: cuda:0 Fake GPU"), std::string::npos) << p.Log();
  EXPECT_EQ(m.gpu_in_use_bytes(), d);
  EXPECT_NE(metrics.RenderText().find("qwenmux_gpu_memory_in_use_bytes " + std::to_string(d)), std::string::npos);
  // A CPU model holds nothing against the GPU budget.
  {
    auto l = m.Acquire("c");
    ASSERT_TRUE(l.ok());
  }
  EXPECT_EQ(p.Last(), DeviceChoice::kCpu);
  EXPECT_EQ(m.gpu_in_use_bytes(), d);
  EXPECT_EQ(Loaded(m), (std::map<std::string, runtime::Device>{{"a", runtime::Device::kCuda}, {"c", runtime::Device::kCpu}}));
  // Unloading gives the device bytes back.
  ASSERT_TRUE(m.Unload("a").ok());
  EXPECT_EQ(m.gpu_in_use_bytes(), 0u);
  EXPECT_NE(metrics.RenderText().find("qwenmux_gpu_memory_in_use_bytes 0"), std::string::npos);
  EXPECT_EQ(m.in_use_bytes(), est.ram.total());  // only c, in RAM
}

TEST(ManagerGpuTest, LruEvictionOnDeviceMemoryLeavesCpuModelsAlone) {
  Metrics metrics;
  FakeClock clock;
  Placements p;
  const uint64_t d = EstimatesOf(Spec("x", DeviceChoice::kAuto)).device.total();
  // Two GPU models fit the GPU budget, not three; RAM is plenty.
  ModelManager m(GpuOptions(FakeGpu(80 * kGiB, 70 * kGiB), Bytes(2 * d + d / 2), &metrics, &clock, &p),
                 {Spec("cpu", DeviceChoice::kCpu), Spec("a", DeviceChoice::kAuto), Spec("b", DeviceChoice::kCuda),
                  Spec("c", DeviceChoice::kAuto)});
  for (const char* n : {"cpu", "a", "b"}) {  // the CPU model is the oldest
    {
      auto l = m.Acquire(n);
      ASSERT_TRUE(l.ok()) << n << ": " << l.status().ToString();
    }
    clock.Advance(1s);
  }
  { auto l = m.Acquire("a"); ASSERT_TRUE(l.ok()); }  // a is now more recent than b
  clock.Advance(1s);
  { auto l = m.Acquire("c"); ASSERT_TRUE(l.ok()) << l.status().ToString(); }
  // b (least recently used on the GPU) made room; the older CPU model stays.
  EXPECT_EQ(Loaded(m), (std::map<std::string, runtime::Device>{{"cpu", runtime::Device::kCpu},
                                                               {"a", runtime::Device::kCuda},
                                                               {"c", runtime::Device::kCuda}}));
  EXPECT_EQ(m.Stats("b").evictions, 1u);
  EXPECT_EQ(m.Stats("cpu").evictions, 0u);
  EXPECT_EQ(m.gpu_in_use_bytes(), 2 * d);
  EXPECT_LE(m.gpu_in_use_bytes(), m.gpu_budget_bytes());
  EXPECT_NE(metrics.RenderText().find("qwenmux_model_evictions_total{model=\"b\",reason=\"lru\"} 1"), std::string::npos);
}

TEST(ManagerGpuTest, AutoFallsBackToTheCpuWhenTheGpuBudgetIsTooSmall) {
  Metrics metrics;
  Placements p;
  const uint64_t d = EstimatesOf(Spec("x", DeviceChoice::kAuto)).device.total();
  ModelManager m(GpuOptions(FakeGpu(80 * kGiB, 70 * kGiB), Bytes(d / 2), &metrics, nullptr, &p),
                 {Spec("a", DeviceChoice::kAuto), Spec("b", DeviceChoice::kCuda)});
  {
    auto l = m.Acquire("a");
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    EXPECT_EQ(l->model().config().n_vocab > 0, true);  // it serves
  }
  EXPECT_EQ(p.Last(), DeviceChoice::kCpu);
  auto snap = m.Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].device, runtime::Device::kCpu);
  EXPECT_EQ(snap[0].vram_bytes, 0u);
  EXPECT_NE(snap[0].placement.find("auto chose cpu"), std::string::npos) << snap[0].placement;
  EXPECT_NE(snap[0].placement.find("cannot fit a on the GPU"), std::string::npos) << snap[0].placement;
  EXPECT_NE(p.Log().find("a: auto chose cpu: model manager: cannot fit a on the GPU"), std::string::npos) << p.Log();
  EXPECT_EQ(m.gpu_in_use_bytes(), 0u);
  // Explicit cuda: refused, naming the need and the GPU budget; nothing was loaded.
  const size_t loads = p.loads.size();
  auto b = m.Acquire("b");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), StatusCode::kResourceExhausted);
  const std::string msg = b.status().message();
  EXPECT_NE(msg.find("cannot fit b on the GPU"), std::string::npos) << msg;
  EXPECT_NE(msg.find("GPU budget " + FormatBytes(d / 2)), std::string::npos) << msg;
  EXPECT_NE(msg.find("Fake GPU"), std::string::npos) << msg;
  EXPECT_EQ(p.loads.size(), loads);
  EXPECT_EQ(m.Stats("b").load_failures, 1u);
}

TEST(ManagerGpuTest, BusyGpuModels) {
  Metrics metrics;
  Placements p;
  const uint64_t d = EstimatesOf(Spec("x", DeviceChoice::kAuto)).device.total();
  ModelManager m(GpuOptions(FakeGpu(80 * kGiB, 70 * kGiB), Bytes(d + d / 2), &metrics, nullptr, &p),
                 {Spec("held", DeviceChoice::kCuda), Spec("auto", DeviceChoice::kAuto), Spec("cuda", DeviceChoice::kCuda)});
  auto held = m.Acquire("held");
  ASSERT_TRUE(held.ok());
  // auto does not wait for a busy GPU model: it runs on the CPU now.
  {
    auto l = m.Acquire("auto");
    ASSERT_TRUE(l.ok()) << l.status().ToString();
  }
  EXPECT_EQ(Loaded(m).at("auto"), runtime::Device::kCpu);
  // cuda fails (busy_wait 0), saying it fits once the busy model is released.
  auto c = m.Acquire("cuda");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("held ("), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("in use"), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("fits once models in use are released"), std::string::npos);
  held->Release();
  auto c2 = m.Acquire("cuda");
  ASSERT_TRUE(c2.ok()) << c2.status().ToString();
  EXPECT_EQ(Loaded(m).at("cuda"), runtime::Device::kCuda);
  EXPECT_EQ(Loaded(m).count("held"), 0u);  // evicted from the GPU for it
}

TEST(ManagerGpuTest, NoUsableGpu) {
  Metrics metrics;
  Placements p;
  runtime::CudaDeviceInfo none;
  none.why = "no CUDA device";
  ModelManager m(GpuOptions(none, MemoryAmount{true, 0, 90.0}, &metrics, nullptr, &p),
                 {Spec("auto", DeviceChoice::kAuto), Spec("cuda", DeviceChoice::kCuda)});
  EXPECT_EQ(m.gpu_budget_bytes(), 0u);
  {
    auto l = m.Acquire("auto");
    ASSERT_TRUE(l.ok()) << l.status().ToString();
  }
  EXPECT_EQ(p.Last(), DeviceChoice::kCpu);
  const auto snap = m.Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_NE(snap[0].placement.find("auto chose cpu: no usable GPU: cuda:0 unavailable: no CUDA device"), std::string::npos)
      << snap[0].placement;
  auto c = m.Acquire("cuda");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(c.status().message().find("no usable GPU"), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("no CUDA device"), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("'cuda'"), std::string::npos) << c.status().message();
}

// On a real GPU (the CUDA build on the device machine): a model placed there takes device memory
// (cudaMemGetInfo through QueryCudaDevice) and unloading gives it back. Skips without a GPU.
TEST(ManagerGpuTest, RealDeviceUnloadFreesDeviceMemory) {
  const runtime::CudaDeviceInfo before = runtime::QueryCudaDevice(0);
  if (!before.available) GTEST_SKIP() << "no CUDA device: " << before.why;
  Metrics metrics;
  ManagerOptions o;
  o.metrics = &metrics;
  o.respect_system_memory = false;
  ModelSpec s = Spec("real", DeviceChoice::kCuda);
  s.load.n_ctx = 4096;
  s.load.n_seq = 4;  // a KV cache large enough to see
  ModelManager m(o, {s});
  const uint64_t est = EstimatesOf(s).device.total();
  {
    auto l = m.Acquire("real");
    ASSERT_TRUE(l.ok()) << l.status().ToString();
  }
  const runtime::CudaDeviceInfo loaded = runtime::QueryCudaDevice(0);
  ASSERT_TRUE(loaded.available);
  EXPECT_GT(before.free_bytes, loaded.free_bytes + est / 2) << "the model should take device memory";
  ASSERT_TRUE(m.Unload("real").ok());
  EXPECT_EQ(m.gpu_in_use_bytes(), 0u);
  const runtime::CudaDeviceInfo after = runtime::QueryCudaDevice(0);
  // Back to within 64 MiB of the start (allocator caches and the context aside).
  EXPECT_GE(after.free_bytes + (uint64_t{64} << 20), before.free_bytes)
      << "before " << before.free_bytes << " loaded " << loaded.free_bytes << " after " << after.free_bytes;
}

}  // namespace
}  // namespace qwenmux::orchestrator
