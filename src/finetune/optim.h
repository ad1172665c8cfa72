// AdamW over the LoRA master weights (f32), as torch.optim.AdamW (amsgrad off, bias correction),
// the learning-rate schedules of transformers (warmup then constant, linear or cosine decay), and
// gradient clipping by the global L2 norm.
//
//   per tensor, t = 1, 2, ...: p *= 1 − lr·wd; m = β1·m + (1 − β1)·g; v = β2·v + (1 − β2)·g²;
//   p −= lr · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + eps)
//
// Thread-safety: free functions over their arguments.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "finetune/lora_params.h"

namespace qwenmux::finetune {

enum class Schedule { kConstant, kLinear, kCosine };

struct OptimConfig {
  float lr = 1e-4f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.0f;
  float grad_clip = 0.0f;      // max global L2 norm; 0: no clipping
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;     // for the decay schedules
  Schedule schedule = Schedule::kConstant;
};

Result<Schedule> ParseSchedule(const std::string& s);  // "constant", "linear", "cosine"

// The learning rate of optimizer step `step` (0-based), as transformers' get_*_schedule_with_warmup:
// lr · step / warmup during the warmup, then 1 (constant), or the linear / cosine decay to 0 at
// total_steps.
float LearningRate(const OptimConfig& c, int64_t step);

// Global L2 norm of every gradient (double accumulation).
double GradNorm(const LoraParams& p);
// Scales every gradient by `s`.
void ScaleGrads(LoraParams& p, float s);
// Clips to c.grad_clip when set (torch's clip_grad_norm_: scale = clip / (norm + 1e-6) when
// below 1); returns the norm before clipping.
double ClipGrads(LoraParams& p, const OptimConfig& c);

// One AdamW update of every pair at step t (1-based) with learning rate lr.
void AdamWStep(LoraParams& p, const OptimConfig& c, int64_t t, float lr);

}  // namespace qwenmux::finetune
