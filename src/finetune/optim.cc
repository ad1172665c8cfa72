#include "finetune/optim.h"

#include <cmath>
#include <numbers>

namespace qwenmux::finetune {

namespace {

void Update(std::vector<float>& p, const std::vector<float>& g, std::vector<float>& m, std::vector<float>& v,
            const OptimConfig& c, double step_size, double bc2_sqrt, float lr) {
  const float decay = 1.0f - lr * c.weight_decay;
  for (size_t i = 0; i < p.size(); ++i) {
    if (c.weight_decay != 0.0f) p[i] *= decay;
    m[i] = c.beta1 * m[i] + (1.0f - c.beta1) * g[i];
    v[i] = c.beta2 * v[i] + (1.0f - c.beta2) * g[i] * g[i];
    const double denom = std::sqrt(static_cast<double>(v[i])) / bc2_sqrt + c.eps;
    p[i] -= static_cast<float>(step_size * m[i] / denom);
  }
}

}  // namespace

Result<Schedule> ParseSchedule(const std::string& s) {
  if (s == "constant") return Schedule::kConstant;
  if (s == "linear") return Schedule::kLinear;
  if (s == "cosine") return Schedule::kCosine;
  return Error(StatusCode::kInvalidArgument, "finetune: unknown schedule \"{}\" (constant, linear or cosine)", s);
}

float LearningRate(const OptimConfig& c, int64_t step) {
  if (step < c.warmup_steps) return c.lr * static_cast<float>(step) / static_cast<float>(std::max<int64_t>(1, c.warmup_steps));
  if (c.schedule == Schedule::kConstant) return c.lr;
  const double span = static_cast<double>(std::max<int64_t>(1, c.total_steps - c.warmup_steps));
  const double progress = static_cast<double>(step - c.warmup_steps) / span;
  if (c.schedule == Schedule::kLinear) return static_cast<float>(c.lr * std::max(0.0, 1.0 - progress));
  return static_cast<float>(c.lr * std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * progress))));
}

double GradNorm(const LoraParams& p) {
  double s = 0;
  for (const LoraParam& q : p.pairs) {
    for (float g : q.ga) s += static_cast<double>(g) * g;
    for (float g : q.gb) s += static_cast<double>(g) * g;
  }
  return std::sqrt(s);
}

void ScaleGrads(LoraParams& p, float s) {
  for (LoraParam& q : p.pairs) {
    for (float& g : q.ga) g *= s;
    for (float& g : q.gb) g *= s;
  }
}

double ClipGrads(LoraParams& p, const OptimConfig& c) {
  const double norm = GradNorm(p);
  if (c.grad_clip > 0) {
    const double coef = c.grad_clip / (norm + 1e-6);
    if (coef < 1.0) ScaleGrads(p, static_cast<float>(coef));
  }
  return norm;
}

void AdamWStep(LoraParams& p, const OptimConfig& c, int64_t t, float lr) {
  const double bc1 = 1.0 - std::pow(static_cast<double>(c.beta1), static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(static_cast<double>(c.beta2), static_cast<double>(t));
  const double step_size = lr / bc1, bc2_sqrt = std::sqrt(bc2);
  for (LoraParam& q : p.pairs) {
    Update(q.a, q.ga, q.ma, q.va, c, step_size, bc2_sqrt, lr);
    Update(q.b, q.gb, q.mb, q.vb, c, step_size, bc2_sqrt, lr);
  }
}

}  // namespace qwenmux::finetune
