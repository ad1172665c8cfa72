// The CPU backend: runtime::Backend over the CPU forward pass (runtime/forward.h) and a KV cache
// in RAM (runtime/kv_cache.h). Weights stay in the GGUF memory map (no copy).
//
// Thread-safety: as Backend (one thread at a time); the forward fans out over the ThreadPool.
#pragma once

#include <memory>

#include "base/status.h"
#include "base/thread_pool.h"
#include "model/config.h"
#include "runtime/backend.h"
#include "runtime/forward.h"
#include "runtime/kv_cache.h"
#include "runtime/weights.h"

namespace qwenmux::runtime {

class CpuBackend final : public Backend {
 public:
  // `config`, `weights` and `pool` must outlive the backend.
  static Result<std::unique_ptr<CpuBackend>> Create(const model::ModelConfig& config, const ModelWeights& weights,
                                                    int32_t n_ctx, int32_t n_seq, ThreadPool* pool);

  Device device() const override { return Device::kCpu; }
  std::string Describe() const override;
  Status Run(std::span<const BatchEntry> batch, float* out_logits, float* out_hidden) override {
    return forward_.Run(batch, kv_, out_logits, out_hidden);
  }
  int32_t n_ctx() const override { return kv_.n_ctx(); }
  int32_t n_seq() const override { return kv_.n_seq(); }
  int32_t length(int32_t seq) const override { return kv_.length(seq); }
  void set_length(int32_t seq, int32_t n) override { kv_.set_length(seq, n); }
  BackendMemory memory() const override { return {kv_.bytes() + forward_.scratch_bytes(), 0}; }

 protected:
  int32_t n_vocab() const override { return n_vocab_; }

 private:
  CpuBackend(const model::ModelConfig& config, const ModelWeights& weights, KvCache kv, ThreadPool* pool)
      : kv_(std::move(kv)), forward_(config, weights, pool), pool_(pool), n_vocab_(static_cast<int32_t>(config.n_vocab)) {}

  KvCache kv_;
  CpuForward forward_;
  ThreadPool* pool_;
  int32_t n_vocab_;
};

}  // namespace qwenmux::runtime
