// The whole model's LoRA gradients against finite differences on the tiny model, with and without
// LoRA dropout (the reference has no dropout: this covers the mask in the backward). Directional:
// for a random direction u over one tensor, (L(θ + h·u) − L(θ − h·u)) / 2h against g·u.
#include <nlohmann/json.hpp>

#include <fstream>

#include "common/testdata.h"
#include "engine/lora.h"
#include "finetune/grad_check.h"
#include "finetune/step.h"

namespace qwenmux::testing {
namespace {

void CheckDirectional(float dropout) {
  ThreadPool pool(2);
  auto model = finetune::TrainModel::Open(ModelPath("tiny-dense.q8_0.gguf"), &pool);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto t = engine::ReadLoraGguf(ModelPath("tiny-dense.lora.gguf"));
  ASSERT_TRUE(t.ok());
  auto params = finetune::ParamsFromTensors(*t, (*model)->config());
  ASSERT_TRUE(params.ok());
  std::ifstream in(RefPath("tiny-dense.lora.json"));
  const auto ref = nlohmann::json::parse(in);
  std::vector<finetune::Example> exs;
  for (const auto& e : ref["training_q8_0_base"]["examples"]) {
    exs.push_back({e["ids"].get<std::vector<int32_t>>(), e["loss_mask"].get<std::vector<uint8_t>>(), 0});
  }
  std::vector<const finetune::Example*> batch;
  for (const auto& e : exs) batch.push_back(&e);
  const finetune::Dropout drop{dropout, 1234};
  auto loss = [&]() -> double {
    auto r = finetune::ComputeGradients(**model, *params, batch, drop);
    EXPECT_TRUE(r.ok());
    return r->loss;
  };
  loss();  // gradients at θ
  const std::vector<std::pair<int, bool>> picks = {{0, true}, {6, false}, {13, true}};
  std::vector<std::vector<float>> grads;
  for (auto [i, is_a] : picks) grads.push_back(is_a ? params->pairs[i].ga : params->pairs[i].gb);
  for (size_t k = 0; k < picks.size(); ++k) {
    auto [i, is_a] = picks[k];
    std::vector<float>& w = is_a ? params->pairs[i].a : params->pairs[i].b;
    const auto u = RandomVec(w.size(), 100 + static_cast<uint32_t>(k));
    double gu = 0;
    for (size_t j = 0; j < w.size(); ++j) gu += static_cast<double>(grads[k][j]) * u[j];
    const std::vector<float> w0 = w;
    const float h = 1e-3f;
    for (size_t j = 0; j < w.size(); ++j) w[j] = w0[j] + h * u[j];
    const double lp = loss();
    for (size_t j = 0; j < w.size(); ++j) w[j] = w0[j] - h * u[j];
    const double lm = loss();
    w = w0;
    const double fd = (lp - lm) / (2.0 * h);
    EXPECT_NEAR(fd, gu, 1e-2 * std::abs(gu) + 1e-3) << params->pairs[i].Name(is_a) << " dropout " << dropout;
  }
}

TEST(FinetuneModelGrad, DirectionalFiniteDifferences) { CheckDirectional(0.0f); }
TEST(FinetuneModelGrad, DirectionalFiniteDifferencesWithDropout) { CheckDirectional(0.3f); }

// Activation checkpointing recomputes each layer in the backward: the same gradients, bit for bit
// (with dropout: the recomputed masks are the same).
TEST(FinetuneModelGrad, CheckpointingGivesTheSameGradients) {
  ThreadPool pool(2);
  auto model = finetune::TrainModel::Open(ModelPath("tiny-dense.q8_0.gguf"), &pool);
  ASSERT_TRUE(model.ok());
  auto t = engine::ReadLoraGguf(ModelPath("tiny-dense.lora.gguf"));
  ASSERT_TRUE(t.ok());
  auto params = finetune::ParamsFromTensors(*t, (*model)->config());
  ASSERT_TRUE(params.ok());
  finetune::Example ex{{151644, 872, 198, 13048, 151645, 198, 151644, 77091, 198, 9707, 11, 1879, 151645}, {}, 0};
  ex.mask.assign(ex.ids.size(), 0);
  for (size_t i = 9; i < ex.ids.size(); ++i) ex.mask[i] = 1;
  const finetune::Example* batch[1] = {&ex};
  const finetune::Dropout drop{0.2f, 77};
  auto plain = finetune::ComputeGradients(**model, *params, batch, drop);
  ASSERT_TRUE(plain.ok());
  std::vector<std::vector<float>> g;
  for (const auto& p : params->pairs) g.push_back(p.ga), g.push_back(p.gb);
  (*model)->set_checkpointing(true);
  auto ck = finetune::ComputeGradients(**model, *params, batch, drop);
  ASSERT_TRUE(ck.ok());
  EXPECT_EQ(ck->loss, plain->loss);
  size_t k = 0;
  for (const auto& p : params->pairs) {
    EXPECT_EQ(p.ga, g[k++]) << p.Name(true);
    EXPECT_EQ(p.gb, g[k++]) << p.Name(false);
  }
}

// Dropout is on in training and changes the loss, and the same seed gives the same masks.
TEST(FinetuneModelGrad, DropoutIsDeterministicBySeed) {
  ThreadPool pool(2);
  auto model = finetune::TrainModel::Open(ModelPath("tiny-dense.q8_0.gguf"), &pool);
  ASSERT_TRUE(model.ok());
  auto t = engine::ReadLoraGguf(ModelPath("tiny-dense.lora.gguf"));
  ASSERT_TRUE(t.ok());
  auto params = finetune::ParamsFromTensors(*t, (*model)->config());
  ASSERT_TRUE(params.ok());
  finetune::Example ex{{151644, 872, 198, 13048, 151645, 198, 151644, 77091, 198, 9707, 151645}, {}, 0};
  ex.mask.assign(ex.ids.size(), 0);
  ex.mask[9] = ex.mask[10] = 1;
  auto run = [&](float p, uint64_t seed) {
    auto r = (*model)->Run(ex, *params, 1.0f, false, finetune::Dropout{p, seed});
    EXPECT_TRUE(r.ok());
    return r->loss_sum;
  };
  const double none = run(0, 1), a = run(0.5f, 1), b = run(0.5f, 1), c = run(0.5f, 2);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, none);
  EXPECT_NE(a, c);
}

}  // namespace
}  // namespace qwenmux::testing
