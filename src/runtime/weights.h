// Binding of a Qwen3 GGUF file's tensors to the forward pass: views into the memory map (no
// copy) for matrices, small owned f32 copies for norm weights. Every tensor's presence, type and
// shape is checked here, once, with an error naming the tensor.
#pragma once

#include <vector>

#include "base/status.h"
#include "gguf/gguf.h"
#include "kernels/matmul.h"
#include "model/config.h"

namespace qwenmux::runtime {

using kernels::WeightView;

struct LayerWeights {
  std::vector<float> attn_norm;  // [n_embd]
  WeightView attn_q;             // [q_dim rows, n_embd cols]
  WeightView attn_k;             // [kv_dim, n_embd]
  WeightView attn_v;             // [kv_dim, n_embd]
  std::vector<float> q_norm;     // [head_dim]
  std::vector<float> k_norm;     // [head_dim]
  WeightView attn_output;        // [n_embd, q_dim]
  std::vector<float> ffn_norm;   // [n_embd]
  // Dense SwiGLU.
  WeightView ffn_gate;  // [n_ff, n_embd]
  WeightView ffn_up;    // [n_ff, n_embd]
  WeightView ffn_down;  // [n_embd, n_ff]
  // MoE: router and experts stacked along rows (expert e = Slice(e * per_expert_rows, ...)).
  WeightView ffn_gate_inp;   // [n_expert, n_embd]
  WeightView ffn_gate_exps;  // [n_expert * n_ff_exp, n_embd]
  WeightView ffn_up_exps;    // [n_expert * n_ff_exp, n_embd]
  WeightView ffn_down_exps;  // [n_expert * n_embd, n_ff_exp]
};

struct ModelWeights {
  WeightView token_embd;  // [n_vocab, n_embd]
  WeightView output;      // [n_vocab, n_embd]; token_embd when tied
  std::vector<float> output_norm;
  std::vector<LayerWeights> layers;
  WeightView cls_output;  // reranker head [2, n_embd] if present (rows "yes", "no")
};

Result<ModelWeights> BindWeights(const gguf::File& f, const model::ModelConfig& c);

}  // namespace qwenmux::runtime
