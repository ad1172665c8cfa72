#include "finetune/step.h"

namespace qwenmux::finetune {

int64_t CountLabels(const Example& e) {
  int64_t n = 0;
  for (size_t t = 1; t < e.mask.size(); ++t) n += e.mask[t] != 0;
  return n;
}

namespace {

Result<StepResult> RunAll(TrainModel& m, LoraParams& p, std::span<const Example* const> examples, bool backward,
                          const Dropout& dropout, uint64_t step_seed) {
  StepResult r;
  for (const Example* e : examples) r.n_labels += CountLabels(*e);
  if (r.n_labels == 0) return Error(StatusCode::kInvalidArgument, "finetune: a batch of {} examples has no labels", examples.size());
  const float w = 1.0f / static_cast<float>(r.n_labels);
  if (backward) p.ZeroGrad();
  std::vector<Dropout> drops(examples.size(), dropout);
  for (size_t i = 0; i < examples.size(); ++i) drops[i].seed = MixSeedFor(step_seed, i);
  QM_ASSIGN_OR_RETURN(std::vector<SeqResult> res, m.RunBatch(examples, p, w, backward, drops));
  double sum = 0;
  for (size_t i = 0; i < examples.size(); ++i) {
    sum += res[i].loss_sum;
    r.n_correct += res[i].n_correct;
    r.n_tokens += static_cast<int64_t>(examples[i]->ids.size());
  }
  r.loss = sum / static_cast<double>(r.n_labels);
  return r;
}

}  // namespace

uint64_t MixSeedFor(uint64_t seed, uint64_t i) { return seed * 0x9E3779B97F4A7C15ull + i * 0xD1B54A32D192ED03ull + 1; }

Result<StepResult> ComputeGradients(TrainModel& m, LoraParams& p, std::span<const Example* const> examples,
                                    const Dropout& dropout) {
  return RunAll(m, p, examples, true, dropout, dropout.seed);
}

Result<StepResult> TrainStep(TrainModel& m, LoraParams& p, std::span<const Example* const> examples,
                             const OptimConfig& c, int64_t step, const Dropout& dropout) {
  QM_ASSIGN_OR_RETURN(StepResult r, ComputeGradients(m, p, examples, dropout));
  r.grad_norm = ClipGrads(p, c);
  r.lr = LearningRate(c, step);
  AdamWStep(p, c, step + 1, r.lr);
  return r;
}

Result<StepResult> Evaluate(TrainModel& m, LoraParams& p, std::span<const Example* const> examples) {
  return RunAll(m, p, examples, false, Dropout{}, 0);
}

}  // namespace qwenmux::finetune
