// A model's weights on the GPU: every matrix uploaded once through pinned staging and repacked
// into the device planes of cuda_kernels.h; norm weights as f32 vectors. Out of device memory
// is an error naming the tensor.
//
// Thread-safety: immutable after Upload.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "model/config.h"
#include "runtime/cuda/cuda_kernels.h"
#include "runtime/weights.h"

namespace qwenmux::runtime::cuda {

struct DevLayer {
  const float* attn_norm = nullptr;  // [n_embd]
  const float* q_norm = nullptr;     // [head_dim]
  const float* k_norm = nullptr;     // [head_dim]
  const float* ffn_norm = nullptr;   // [n_embd]
  DevMatrix attn_q, attn_k, attn_v, attn_output;
  DevMatrix ffn_gate, ffn_up, ffn_down;
  DevMatrix ffn_gate_inp, ffn_gate_exps, ffn_up_exps, ffn_down_exps;
};

class DeviceWeights {
 public:
  // Uploads on the current device (cudaSetDevice done by the caller).
  static Result<std::unique_ptr<DeviceWeights>> Upload(const model::ModelConfig& c, const ModelWeights& w);
  ~DeviceWeights();
  DeviceWeights(const DeviceWeights&) = delete;
  DeviceWeights& operator=(const DeviceWeights&) = delete;

  DevMatrix token_embd;
  DevMatrix output;  // token_embd's planes when tied
  const float* output_norm = nullptr;
  std::vector<DevLayer> layers;
  uint64_t bytes() const { return bytes_; }

 private:
  DeviceWeights() = default;
  friend class Uploader;
  std::vector<void*> allocs_;
  uint64_t bytes_ = 0;
};

// The device type of a GGUF tensor type, or an error naming the tensor for types the kernels
// do not read.
Result<DType> ToDType(gguf::TensorType t, int64_t cols, const std::string& tensor);

}  // namespace qwenmux::runtime::cuda
