// Internal to the model manager (model_manager.cc, model_manager_adapters.cc): a registered
// model's state and its adapters' states, guarded by ModelManager::mu_. Not part of the API.
#pragma once

#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "orchestrator/manager/model_manager.h"

namespace qwenmux::orchestrator {

struct ModelManager::AdapterState {
  AdapterSpec spec;
  int32_t id = -1;          // engine id in the base's Model while loaded; -1: not loaded
  uint64_t bytes = 0;       // held against the RAM budget while loaded
  int32_t in_use = 0;       // live AdapterLeases
  bool loading = false;     // AcquireAdapter is reading it (outside the lock)
  ManagerClock::time_point last_used{};
};

struct ModelManager::Entry {
  enum class State { kUnloaded, kLoading, kLoaded };
  ModelSpec spec;
  State state = State::kUnloaded;
  std::unique_ptr<engine::Model> model;
  std::shared_future<Status> load;         // valid while kLoading
  std::optional<ModelEstimates> estimate;  // cached after the first load attempt
  uint64_t reserved = 0;                   // bytes held against the RAM budget
  uint64_t gpu_reserved = 0;               // bytes held against the GPU budget (GPU models only)
  runtime::Device device = runtime::Device::kCpu;
  std::string placement;                   // why it runs on `device`
  int32_t in_use = 0;                      // live leases
  int32_t waiters = 0;                     // requests waiting for this model's load
  ManagerClock::time_point last_used{};
  ManagerClock::time_point expires = ManagerClock::time_point::max();
  KeepAlive keep_alive{0};                 // of the latest request
  bool unload_on_release = false;
  ManagerStats stats;
  std::map<std::string, AdapterState> adapters;  // registered adapters by name (nodes never move)
  std::vector<std::string> adapter_order;       // registration order
};

}  // namespace qwenmux::orchestrator
