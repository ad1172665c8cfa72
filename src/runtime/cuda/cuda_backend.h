// The CUDA implementation of runtime::Backend: a model's weights, KV cache and scratch on one
// NVIDIA GPU, running the forward pass of cuda_forward.h. Built only with QWENMUX_CUDA (the
// engine's factory calls MakeCudaBackend under #ifdef QWENMUX_CUDA).
#pragma once

#include <cstdint>
#include <memory>

#include "base/status.h"
#include "model/config.h"
#include "runtime/backend.h"
#include "runtime/weights.h"

namespace qwenmux::runtime {

struct CudaBackendOptions {
  int device_index = 0;
  int32_t n_ctx = 0;  // 0: the model's training context, capped at 4096
  int32_t n_seq = 1;
  int32_t n_batch = 512;
  // KV cache blocks of 64 positions shared by the sequences (0: n_seq * ceil(n_ctx / 64), every
  // sequence can reach n_ctx at once; fewer: sequences take blocks as they grow, and a step that
  // finds none free fails with kResourceExhausted).
  int32_t kv_blocks = 0;
};

// Uploads the weights (views into the host memory map, read once here) and allocates the KV
// cache. Errors (no device, out of device memory naming the tensor, unsupported tensor type)
// come back as a Status; nothing aborts.
Result<std::unique_ptr<Backend>> MakeCudaBackend(const model::ModelConfig& config, const ModelWeights& weights,
                                                 const CudaBackendOptions& options);

}  // namespace qwenmux::runtime
