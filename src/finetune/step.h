// One optimizer step of LoRA training: the gradient of the token-mean masked cross-entropy over
// every example of the step (batch × gradient accumulation: one mean over all their labels, as
// the reference's loss), clipping, AdamW.
//
// Thread-safety: uses the model and params exclusively.
#pragma once

#include <cstdint>
#include <span>

#include "base/status.h"
#include "finetune/optim.h"
#include "finetune/train_model.h"

namespace qwenmux::finetune {

struct StepResult {
  double loss = 0;        // mean over the labels, before the update
  int64_t n_labels = 0;
  int64_t n_tokens = 0;   // tokens run through the model
  int64_t n_correct = 0;  // labels that were the argmax
  double grad_norm = 0;   // before clipping
  float lr = 0;
};

// Zeroes the gradients and accumulates those of `examples` (loss weight 1 / their label count).
Result<StepResult> ComputeGradients(TrainModel& m, LoraParams& p, std::span<const Example* const> examples,
                                    const Dropout& dropout);
// ComputeGradients, then clipping and the AdamW update number `step` + 1 (step is 0-based).
Result<StepResult> TrainStep(TrainModel& m, LoraParams& p, std::span<const Example* const> examples,
                             const OptimConfig& c, int64_t step, const Dropout& dropout);
// Loss without gradients (validation); n_correct counts argmax hits.
Result<StepResult> Evaluate(TrainModel& m, LoraParams& p, std::span<const Example* const> examples);

// The dropout seed of example i of a step seeded `seed`.
uint64_t MixSeedFor(uint64_t seed, uint64_t i);

// Labels of an example: positions t ≥ 1 with mask[t] = 1.
int64_t CountLabels(const Example& e);

}  // namespace qwenmux::finetune
