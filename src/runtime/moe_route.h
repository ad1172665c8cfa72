// Qwen3-MoE routing of one token, shared by the inference forward pass and training: softmax over
// the router's logits, the top k experts (ties to the lower id), their weights renormalised to 1.
#pragma once

#include <cstdint>

namespace qwenmux::runtime {

// probs [n_expert]: the router logits in, their softmax out. sel [k]: the chosen experts, best
// first; w [k]: their renormalised weights.
void RouteTopK(float* probs, int64_t n_expert, int64_t k, int64_t* sel, float* w);

}  // namespace qwenmux::runtime
