// The frozen sparse-MoE feed-forward of a Qwen3-MoE layer in training (f32), forward and backward
// to its input; the same routing as the engine's (runtime/forward.cc MoeFfn): softmax over every
// expert's router logit, the top k (ties to the lower id), their probabilities renormalised to sum
// to 1, and out = Σ_j w_j · down_e(silu(gate_e(b)) ⊙ up_e(b)) over the selected experts e = sel_j.
//
// Backward (the experts and router are frozen; only the input gets a gradient): per selected
// expert, the SwiGLU chain transposed; and through the routing weights: dw_j = dout · y_j,
// dp_e = (dw_j − Σ_i w_i dw_i) / S for selected e (S: the selected probabilities' sum), 0 for the
// others; the softmax: dlogit = p ⊙ (dp − p·dp); db += dlogit · W_router. The top-k choice is
// piecewise constant (no gradient), as in PyTorch's topk.
//
// Thread-safety: free functions; `pool` is used inside.
#pragma once

#include <cstdint>
#include <vector>

#include "base/thread_pool.h"
#include "finetune/ops.h"
#include "model/config.h"
#include "runtime/weights.h"

namespace qwenmux::finetune {

struct MoeActs {
  std::vector<int32_t> sel;    // [n, k] selected experts
  std::vector<float> p;        // [n, n_expert] router softmax
  std::vector<float> w;        // [n, k] renormalised weights
  std::vector<float> g, u, y;  // [n, k, ff] gate and up of each selected expert, [n, k, E] its output

  void Clear() {
    std::vector<int32_t>().swap(sel);
    for (auto* v : {&p, &w, &g, &u, &y}) std::vector<float>().swap(*v);
  }
};

// out[n, E] = MoE(b[n, E]); fills `a`.
void MoeFfnForward(const runtime::LayerWeights& l, const model::ModelConfig& c, const float* b, int64_t n, float* out,
                   MoeActs* a, OpScratch* s, ThreadPool* pool);
// db[n, E] = ∂loss/∂b given dout[n, E] (overwritten).
void MoeFfnBackward(const runtime::LayerWeights& l, const model::ModelConfig& c, const MoeActs& a, const float* dout,
                    int64_t n, float* db, OpScratch* s, ThreadPool* pool);

}  // namespace qwenmux::finetune
