// The Qwen3 forward pass on the CPU (dense `qwen3` and sparse `qwen3moe`), one readable function
// per step. Activations are f32; weights are read from the memory map through kernels::MatMul.
//
// Thread-safety: a CpuForward owns scratch buffers and is used by one thread at a time (the
// engine's scheduler); it fans work out over its ThreadPool.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/page_memory.h"
#include "base/status.h"
#include "base/thread_pool.h"
#include "runtime/backend.h"
#include "model/config.h"
#include "runtime/kv_cache.h"
#include "runtime/weights.h"

namespace qwenmux::runtime {

class CpuForward {
 public:
  CpuForward(const model::ModelConfig& config, const ModelWeights& weights, ThreadPool* pool);

  // Runs the batch through the model. Entries of one sequence come in increasing position order,
  // and positions [0, pos) of that sequence are in the cache already or earlier in this batch.
  // For every entry with output=true, in order: a row of n_vocab logits in out_logits (if not
  // null) and a row of n_embd final-normed hidden state in out_hidden (if not null).
  Status Run(std::span<const BatchEntry> batch, KvCache& kv, float* out_logits, float* out_hidden);

 private:
  void RmsNormRows(const float* x, const float* w, float* y, int64_t n, int64_t dim) const;
  void QkNormRope(std::span<const BatchEntry> batch, float* q, float* k, const LayerWeights& l) const;
  void StoreKv(std::span<const BatchEntry> batch, const float* k, const float* v, int32_t layer, KvCache& kv) const;
  void Attention(std::span<const BatchEntry> batch, const float* q, int32_t layer, KvCache& kv, float* out);
  void DenseFfn(const LayerWeights& l, const float* b, float* out, int64_t n);
  void MoeFfn(const LayerWeights& l, const float* b, float* out, int64_t n);
  void MatMul(const WeightView& w, const float* x, float* y, int64_t n) const;

  const model::ModelConfig& c_;
  const ModelWeights& w_;
  ThreadPool* pool_;
  std::vector<float> rope_freq_;  // [head_dim / 2] effective inverse frequencies
  float rope_mscale_ = 1.0f;      // YaRN attention factor on cos/sin
  // Scratch, grown on demand, in pages of its own so that an evicted model's scratch leaves RSS.
  using Scratch = std::vector<float, PageAllocator<float>>;
  Scratch x_, a_, q_, k_, v_, attn_, tmp_, gate_, up_, hid_, router_;
  Scratch moe_in_, moe_gate_, moe_up_, moe_out_;
  std::vector<Scratch> scores_;  // per thread [n_ctx]
};

}  // namespace qwenmux::runtime
