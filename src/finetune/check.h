// Runs a LoRA training reference section (../shared/testdata/refs/tiny-dense.lora.json,
// `training` / `training_q8_0_base`: token ids, loss masks, hyperparameters, the step-0 loss, the
// loss curve) from a given initial adapter, and compares the step-0 gradients with a gradients
// GGUF (same names and layout as the adapter). `qwenmux finetune check` prints the result.
//
// Thread-safety: a free function; `pool` is used inside.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "base/thread_pool.h"

namespace qwenmux::finetune {

struct CheckOptions {
  std::string base;      // base model GGUF
  std::string ref;       // reference JSON
  std::string section;   // "training" or "training_q8_0_base"
  std::string lora;      // initial adapter (GGUF or PEFT directory)
  std::string grads;     // step-0 gradients GGUF ("" skips the gradient comparison)
};

// The bars of issue 17.
inline constexpr double kLoss0Bar = 1e-4, kGradBar = 1e-3, kCurveBar = 1e-3;

struct CheckReport {
  double loss0 = 0, loss0_ref = 0, loss0_rel_err = 0;
  double grad_max_rel_err = 0;
  std::string grad_worst;                   // tensor with the largest error
  std::map<std::string, double> grad_rel_err;
  std::vector<double> losses, losses_ref;
  double curve_max_rel_err = 0;
  double seconds = 0;
  bool pass = false;

  nlohmann::json ToJson() const;
  std::string ToText() const;
};

Result<CheckReport> RunCheck(const CheckOptions& o, ThreadPool* pool);

}  // namespace qwenmux::finetune
