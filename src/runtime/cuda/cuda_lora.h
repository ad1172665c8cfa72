// The device copies of LoRA adapters for one CudaForward and the per-step tables of
// LaunchLoraDelta. An adapter is uploaded on the first step that uses it and kept, keyed by
// LoraAdapter::serial; beyond kMaxResident copies the least recently used one not in the step
// is freed (and uploaded again if it comes back).
//
// Thread-safety: one thread at a time (the forward's).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "runtime/backend.h"
#include "runtime/cuda/cuda_kernels.h"

namespace qwenmux::runtime::cuda {

class DeviceLoras {
 public:
  static constexpr size_t kMaxResident = 16;

  DeviceLoras() = default;
  ~DeviceLoras();
  DeviceLoras(const DeviceLoras&) = delete;
  DeviceLoras& operator=(const DeviceLoras&) = delete;

  // The step of `batch` (whose entries name adapters of a model of n_layer layers): *step and
  // *mid (scratch [batch size, step->max_rank]) valid until the next Prepare. The stream is
  // idle (the forward syncs at the end of every step).
  Status Prepare(std::span<const BatchEntry> batch, int32_t n_layer, cudaStream_t s, LoraStep* step, float** mid);

  // Device bytes of the resident copies and the step buffers.
  uint64_t bytes() const { return bytes_; }

 private:
  struct Copy {
    uint64_t serial = 0;
    void* mem = nullptr;        // the A and B data, then the table
    size_t bytes = 0;
    const LoraRef* table = nullptr;  // [n_layer * kLoraTargets] in mem
    int32_t max_rank = 0;
    uint64_t last_use = 0;
  };
  Result<size_t> Upload(const LoraAdapter& a, int32_t n_layer);
  Status Grow(void** p, size_t* have, size_t want, const char* what);

  std::vector<Copy> copies_;
  uint64_t clock_ = 0, bytes_ = 0;
  int32_t* d_slot_ = nullptr;
  float* d_scale_ = nullptr;
  const LoraRef** d_tables_ = nullptr;
  float* d_mid_ = nullptr;
  size_t slot_bytes_ = 0, scale_bytes_ = 0, tables_bytes_ = 0, mid_bytes_ = 0;
};

}  // namespace qwenmux::runtime::cuda
