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
#include "runtime/lora.h"
#include "runtime/weights.h"

namespace qwenmux::runtime {

// Inverse frequencies of NeoX RoPE ([head_dim / 2]), with the YaRN blend when the file asks for
// it (qwen3-reference §2.5, §7.2); *mscale gets YaRN's attention factor on cos/sin (1 without).
// Shared by every backend's forward.
std::vector<float> RopeFrequencies(const model::ModelConfig& c, float* mscale);

class CpuForward {
 public:
  CpuForward(const model::ModelConfig& config, const ModelWeights& weights, ThreadPool* pool);

  // Runs the batch through the model. Entries of one sequence come in increasing position order,
  // and positions [0, pos) of that sequence are in the cache already or earlier in this batch.
  // For every entry with output=true, in order: a row of n_vocab logits in out_logits (if not
  // null) and a row of n_embd final-normed hidden state in out_hidden (if not null).
  Status Run(std::span<const BatchEntry> batch, KvCache& kv, float* out_logits, float* out_hidden);

  // Bytes the scratch buffers hold now (they grow to the largest batch seen).
  uint64_t scratch_bytes() const;

 private:
  void RmsNormRows(const float* x, const float* w, float* y, int64_t n, int64_t dim) const;
  void QkNormRope(std::span<const BatchEntry> batch, float* q, float* k, const LayerWeights& l) const;
  void StoreKv(std::span<const BatchEntry> batch, const float* k, const float* v, int32_t layer, KvCache& kv) const;
  void Attention(std::span<const BatchEntry> batch, const float* q, int32_t layer, KvCache& kv, float* out);
  void DenseFfn(int32_t il, const LayerWeights& l, const float* b, float* out, int64_t n);
  void MoeFfn(const LayerWeights& l, const float* b, float* out, int64_t n);
  void MatMul(const WeightView& w, const float* x, float* y, int64_t n) const;
  // A base projection of layer `il`, then the LoRA deltas of the batch's adapters on its rows.
  void Project(int32_t il, LoraTarget t, const WeightView& w, const float* x, float* y, int64_t n);
  // Projections of one x: the products in one MatMulMany call, then each target's adapters.
  struct Projection {
    LoraTarget target;
    const WeightView* w;
    float* y;
  };
  void ProjectMany(int32_t il, std::span<const Projection> ps, const float* x, int64_t n);

  const model::ModelConfig& c_;
  const ModelWeights& w_;
  ThreadPool* pool_;
  std::vector<float> rope_freq_;  // [head_dim / 2] effective inverse frequencies
  float rope_mscale_ = 1.0f;      // YaRN attention factor on cos/sin
  // Scratch, grown on demand, in pages of its own so that an evicted model's scratch leaves RSS.
  // n: tokens in the batch; m: tokens routed to one expert (m <= n).
  using Scratch = std::vector<float, PageAllocator<float>>;
  Scratch x_;       // [n, n_embd] residual stream
  Scratch a_;       // [n, n_embd] normed input of a block; at the end the output rows' final norm
  Scratch q_;       // [n, n_head * head_dim]
  Scratch k_;       // [n, n_head_kv * head_dim]
  Scratch v_;       // [n, n_head_kv * head_dim]
  Scratch attn_;    // [n, n_head * head_dim] attention output before attn_output
  Scratch tmp_;     // [n, n_embd] block output before the residual add
  Scratch gate_;    // [n, n_ff] dense FFN gate projection
  Scratch up_;      // [n, n_ff] dense FFN up projection
  Scratch hid_;     // [n, n_ff] SwiGLU(gate, up)
  Scratch router_;  // [n, n_expert] router logits, then probabilities
  Scratch moe_in_;    // [m, n_embd] the rows routed to one expert, gathered
  Scratch moe_gate_;  // [m, n_ff_exp] gate projection, then SwiGLU(gate, up) in place
  Scratch moe_up_;    // [m, n_ff_exp]
  Scratch moe_out_;   // [m, n_embd] the expert's output before the weighted scatter-add
  LoraSegments lora_;       // this forward's rows grouped by adapter
  LoraScratch lora_scratch_;
  std::vector<Scratch> scores_;  // [pool threads][n_ctx] attention scores of one (token, head)
};

}  // namespace qwenmux::runtime
