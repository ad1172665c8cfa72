// Picks and creates the backend a model runs on: `cpu`, `cuda`, or `auto` (CUDA when a usable
// GPU is present and the model fits on it, else the CPU).
//
// Thread-safety: CreateBackend may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "base/thread_pool.h"
#include "model/config.h"
#include "runtime/backend.h"
#include "runtime/weights.h"

namespace qwenmux::runtime {

struct BackendOptions {
  DeviceChoice device = DeviceChoice::kAuto;
  int32_t n_ctx = 4096;   // KV-cache positions per sequence
  int32_t n_seq = 1;      // KV-cache sequences
  int32_t n_batch = 512;  // the largest batch the engine will run
  ThreadPool* pool = nullptr;  // the CPU backend's workers (not owned)
  int device_index = 0;        // which GPU for cuda
};

// kCpu: the CPU backend. kCuda: the CUDA backend (an error when this binary was built without
// CUDA, or when the GPU cannot hold the model). kAuto: CUDA when QueryCudaDevice() reports a
// usable device and creating the CUDA backend succeeds, else the CPU; *note (if not null) then
// says why the CPU was chosen ("" when the requested/preferred device was used).
// `config` and `weights` must outlive the backend.
Result<std::unique_ptr<Backend>> CreateBackend(const model::ModelConfig& config, const ModelWeights& weights,
                                               const BackendOptions& options, std::string* note = nullptr);

}  // namespace qwenmux::runtime
