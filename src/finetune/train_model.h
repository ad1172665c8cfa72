// The Qwen3 model (dense or MoE) as LoRA training sees it: a frozen base (the GGUF's weights, any type the
// engine runs, bound by runtime::BindWeights) and a forward + backward over one token sequence
// that adds the gradient of the masked cross-entropy into LoraParams.
//
//   loss contribution = loss_weight · Σ_{t : mask[t+1] = 1} −log softmax(logits[t])[ids[t+1]]
//
// (the reference's convention: ../shared/testdata/README.md, "LoRA training references"). A
// batch is several Run calls with loss_weight = 1 / (masked labels of the whole batch); sequences
// are independent under causal attention, so no padding is needed.
//
// Thread-safety: one Run at a time (it keeps its activations); `pool` is used inside.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/thread_pool.h"
#include "finetune/lora_params.h"
#include "finetune/ops.h"
#include "gguf/gguf.h"
#include "model/config.h"
#include "runtime/weights.h"

namespace qwenmux::finetune {

struct Example {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;  // [ids.size()]: 1 where ids[t] is a label (predicted from t − 1)
  int64_t line = 0;           // where it came from (1-based JSONL line; 0: not from a file)
};

struct Dropout {
  float p = 0;        // LoRA dropout on each adapted projection's input (PEFT's lora_dropout)
  uint64_t seed = 0;  // the masks are a function of (seed, layer, target): the same on a rerun
};

struct SeqResult {
  double loss_sum = 0;     // Σ over the labels (unweighted)
  int64_t n_labels = 0;
  int64_t n_correct = 0;   // labels that are the argmax of their logits
};

class TrainModel {
 public:
  // Opens a Qwen3 GGUF, dense or MoE (a MoE layer's FFN is frozen: moe_ffn.h; LoRA targets
  // its attention only, lora_params.h TrainableTargets).
  // head_cache_bytes: when the LM head is quantized and it and its transpose fit in this many bytes
  // of f32, they are dequantized once here instead of on every sequence (a large share of the time
  // for short sequences on a large vocabulary).
  static Result<std::unique_ptr<TrainModel>> Open(const std::string& path, ThreadPool* pool,
                                                  uint64_t head_cache_bytes = uint64_t{1} << 29);

  ~TrainModel();

  const model::ModelConfig& config() const { return config_; }
  const gguf::File& file() const { return *file_; }

  // Forward of `ex` with the adapter in `params`; with `backward`, adds loss_weight · ∂(loss sum)
  // to every pair's ga / gb.
  Result<SeqResult> Run(const Example& ex, LoraParams& params, float loss_weight, bool backward,
                        const Dropout& dropout = {});
  // The same for several sequences (dropouts: one per example, or empty). Their activations are
  // kept together in groups of up to max_group_tokens tokens, and the LM head runs once per group
  // over all the group's label rows (for short sequences the head's weights dominate the cost).
  Result<std::vector<SeqResult>> RunBatch(std::span<const Example* const> exs, LoraParams& params, float loss_weight,
                                          bool backward, std::span<const Dropout> dropouts = {});
  void set_max_group_tokens(int64_t n) { max_group_tokens_ = n; }
  // Activation checkpointing: keep only each layer's input in the forward and recompute the rest
  // layer by layer in the backward (one more forward of compute, a fraction of the memory).
  void set_checkpointing(bool on) { checkpointing_ = on; }

 private:
  struct LayerActs;
  struct SeqState;
  TrainModel() = default;
  void RunGroup(std::span<const Example* const> exs, LoraParams& params, float loss_weight, bool backward,
                std::span<const Dropout> dropouts, std::span<SeqResult> out);
  void ForwardBody(const Example& ex, SeqState& s, const float* cs, LoraParams& params, const Dropout& dropout);
  void ForwardLayer(int32_t il, int64_t n, LayerActs& a, float* x, const float* cs, LoraParams& params,
                    const Dropout& dropout);
  void BackwardBody(const Example& ex, SeqState& s, const float* dfm, const float* cs, LoraParams& params,
                    const Dropout& dropout);
  void Project(int32_t il, runtime::LoraTarget t, const kernels::WeightView& w, const float* x, int64_t n, float* y,
               LayerActs& acts, LoraParams& params, const Dropout& dropout);
  void ProjectBack(int32_t il, runtime::LoraTarget t, const kernels::WeightView& w, const float* x, int64_t n,
                   const float* dy, float* dx, bool accumulate, LayerActs& acts, LoraParams& params,
                   const Dropout& dropout);

  std::shared_ptr<gguf::File> file_;
  model::ModelConfig config_;
  runtime::ModelWeights weights_;
  ThreadPool* pool_ = nullptr;
  std::vector<float> head_, head_t_;  // cached f32 LM head [V, E] and its transpose [E, V], or empty
  std::vector<float> rope_freq_;
  float rope_mscale_ = 1.0f;
  OpScratch scratch_;
  std::vector<SeqState> seqs_;
  int64_t max_group_tokens_ = 2048;
  bool checkpointing_ = false;
};

}  // namespace qwenmux::finetune
