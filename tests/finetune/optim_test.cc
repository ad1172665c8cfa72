// AdamW (torch.optim.AdamW's update, written out here in double), the warmup + decay schedules
// and gradient clipping.
#include <cmath>

#include <gtest/gtest.h>

#include "finetune/optim.h"

namespace qwenmux::testing {
namespace {

using finetune::LoraParam;
using finetune::LoraParams;
using finetune::OptimConfig;

LoraParams OnePair() {
  LoraParams p;
  LoraParam q;
  q.layer = 0;
  q.rank = 1;
  q.in = 3;
  q.out = 2;
  q.a = {0.5f, -0.25f, 1.0f};
  q.b = {0.1f, -0.2f};
  p.pairs.push_back(q);
  p.Reindex(1);
  return p;
}

TEST(FinetuneOptim, AdamWMatchesTheTorchUpdate) {
  LoraParams p = OnePair();
  OptimConfig c;
  c.lr = 1e-2f;
  c.weight_decay = 0.1f;
  std::vector<double> ref(p.pairs[0].a.begin(), p.pairs[0].a.end()), m(3, 0.0), v(3, 0.0);
  const double grads[3][3] = {{0.3, -1.0, 0.02}, {0.1, 0.5, -0.4}, {-0.2, 0.0, 2.0}};
  for (int t = 1; t <= 3; ++t) {
    for (int i = 0; i < 3; ++i) p.pairs[0].ga[i] = static_cast<float>(grads[t - 1][i]);
    finetune::AdamWStep(p, c, t, c.lr);
    for (int i = 0; i < 3; ++i) {
      const double g = grads[t - 1][i];
      ref[i] *= 1 - 1e-2 * 0.1;
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      const double mh = m[i] / (1 - std::pow(0.9, t)), vh = v[i] / (1 - std::pow(0.999, t));
      ref[i] -= 1e-2 * mh / (std::sqrt(vh) + 1e-8);
      EXPECT_NEAR(p.pairs[0].a[i], ref[i], 1e-6) << "step " << t << " element " << i;
    }
  }
}

TEST(FinetuneOptim, Schedules) {
  OptimConfig c;
  c.lr = 2.0f;
  c.warmup_steps = 4;
  c.total_steps = 14;
  EXPECT_FLOAT_EQ(finetune::LearningRate(c, 0), 0.0f);
  EXPECT_FLOAT_EQ(finetune::LearningRate(c, 2), 1.0f);
  EXPECT_FLOAT_EQ(finetune::LearningRate(c, 9), 2.0f);  // constant after the warmup
  c.schedule = finetune::Schedule::kLinear;
  EXPECT_FLOAT_EQ(finetune::LearningRate(c, 4), 2.0f);
  EXPECT_FLOAT_EQ(finetune::LearningRate(c, 9), 1.0f);
  EXPECT_FLOAT_EQ(finetune::LearningRate(c, 14), 0.0f);
  c.schedule = finetune::Schedule::kCosine;
  EXPECT_FLOAT_EQ(finetune::LearningRate(c, 4), 2.0f);
  EXPECT_NEAR(finetune::LearningRate(c, 9), 1.0f, 1e-6);
  EXPECT_NEAR(finetune::LearningRate(c, 14), 0.0f, 1e-6);
  EXPECT_FALSE(finetune::ParseSchedule("exponential").ok());
}

TEST(FinetuneOptim, ClippingScalesToTheNorm) {
  LoraParams p = OnePair();
  p.pairs[0].ga = {3.0f, 0.0f, 0.0f};
  p.pairs[0].gb = {0.0f, 4.0f};
  OptimConfig c;
  c.grad_clip = 1.0f;
  EXPECT_NEAR(finetune::ClipGrads(p, c), 5.0, 1e-6);
  EXPECT_NEAR(finetune::GradNorm(p), 1.0, 1e-5);
  c.grad_clip = 10.0f;  // above the norm: unchanged
  EXPECT_NEAR(finetune::ClipGrads(p, c), 1.0, 1e-5);
  EXPECT_NEAR(finetune::GradNorm(p), 1.0, 1e-5);
}

}  // namespace
}  // namespace qwenmux::testing
