// Shared helpers of the model manager tests: specs over the tiny models under several names.
#pragma once

#include <atomic>
#include <chrono>
#include <string>

#include "common/testdata.h"
#include "orchestrator/manager/model_manager.h"

namespace qwenmux::orchestrator::test {

inline ModelSpec TinySpec(const std::string& name, int32_t n_ctx = 256,
                          const std::string& file = "tiny-dense.q8_0.gguf") {
  ModelSpec s;
  s.name = name;
  s.path = qwenmux::testing::ModelPath(file);
  s.load.n_ctx = n_ctx;
  s.load.n_seq = 1;
  s.load.n_batch = 32;
  s.load.n_threads = 1;
  s.keep_alive = kKeepForever;
  return s;
}

inline uint64_t EstimateOf(const ModelSpec& s) {
  auto e = EstimateModelMemory(s.path, s.load);
  return e.ok() ? e->total() : 0;
}

// A clock the test moves by hand.
struct FakeClock {
  std::atomic<int64_t> ms{0};
  ManagerClock::time_point Now() const { return ManagerClock::time_point(std::chrono::milliseconds(ms.load())); }
  void Advance(std::chrono::milliseconds d) { ms += d.count(); }
};

inline ManagerOptions TestOptions(uint64_t budget, Metrics* metrics, FakeClock* clock = nullptr) {
  ManagerOptions o;
  o.budget_bytes = budget;
  o.respect_system_memory = false;
  o.metrics = metrics;
  // No GPU, whatever the machine: auto places every model on the CPU (manager_gpu_test.cc gives
  // a fake GPU where it tests the GPU budget).
  o.query_device = [](int index) {
    runtime::CudaDeviceInfo d;
    d.index = index;
    d.why = "tests: no GPU";
    return d;
  };
  if (clock) o.now = [clock] { return clock->Now(); };
  return o;
}

}  // namespace qwenmux::orchestrator::test
