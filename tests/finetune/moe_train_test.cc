// LoRA training on a Qwen3-MoE base (tiny-moe.q4_k_m.gguf: 2 layers, 8 experts, 2 used): the
// attention adapters' gradients, which flow back through the frozen MoE FFN (experts and router
// softmax / top-k / renormalisation), against finite differences; a short run whose loss falls and
// whose adapter is written for the MoE architecture; FFN targets refused naming the target.
#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "engine/engine.h"
#include "engine/lora.h"
#include "finetune/data.h"
#include "finetune/grad_check.h"
#include "finetune/rng.h"
#include "finetune/step.h"
#include "finetune/train.h"
#include "lora/lora_util.h"

namespace qwenmux::testing {
namespace {

const std::string kMoe = ModelPath("tiny-moe.q4_k_m.gguf");

finetune::Example MakeExample(const finetune::TrainModel& m, const std::string& prompt, const std::string& completion) {
  auto tok = tokenizer::Tokenizer::FromGguf(m.file());
  EXPECT_TRUE(tok.ok());
  auto ex = finetune::ExampleFromJson(nlohmann::ordered_json{{"prompt", prompt}, {"completion", completion}}, *tok);
  EXPECT_TRUE(ex.ok()) << ex.status().ToString();
  return *ex;
}

TEST(FinetuneMoe, AttentionLoraGradientsThroughTheMoeFfnMatchFiniteDifferences) {
  ThreadPool pool(2);
  auto model = finetune::TrainModel::Open(kMoe, &pool);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ASSERT_TRUE((*model)->config().is_moe());
  using runtime::LoraTarget;
  auto params = finetune::InitParams((*model)->config(), 4, 8.0f,
                                     {LoraTarget::kAttnQ, LoraTarget::kAttnK, LoraTarget::kAttnV, LoraTarget::kAttnOutput}, 7);
  // B = 0 would leave A without gradient: a random B.
  for (size_t i = 0; i < params.pairs.size(); ++i) {
    const auto u = RandomVec(params.pairs[i].b.size(), 500 + static_cast<uint32_t>(i));
    for (size_t j = 0; j < u.size(); ++j) params.pairs[i].b[j] = 0.05f * u[j];
  }
  const finetune::Example ex1 = MakeExample(**model, "Which river is longest?", "The Nile, by most measures.");
  const finetune::Example ex2 = MakeExample(**model, "Name a color.", "Blue");
  const finetune::Example* batch[2] = {&ex1, &ex2};
  auto loss = [&]() -> double {
    auto r = finetune::ComputeGradients(**model, params, batch, {});
    EXPECT_TRUE(r.ok());
    return r->loss;
  };
  loss();
  // Layer 0's adapters: their gradients pass through both layers' MoE FFNs (the FFN of layer 0 and
  // everything of layer 1); layer 1's o: through layer 1's MoE FFN.
  const std::vector<std::pair<int32_t, std::pair<LoraTarget, bool>>> picks = {
      {0, {LoraTarget::kAttnQ, true}}, {0, {LoraTarget::kAttnV, false}}, {0, {LoraTarget::kAttnOutput, true}},
      {1, {LoraTarget::kAttnOutput, false}}, {1, {LoraTarget::kAttnK, true}}};
  std::vector<std::vector<float>> grads;
  for (auto [l, tb] : picks) {
    finetune::LoraParam* p = params.Find(l, tb.first);
    ASSERT_NE(p, nullptr);
    grads.push_back(tb.second ? p->ga : p->gb);
  }
  for (size_t k = 0; k < picks.size(); ++k) {
    auto [l, tb] = picks[k];
    finetune::LoraParam* p = params.Find(l, tb.first);
    std::vector<float>& w = tb.second ? p->a : p->b;
    const auto u = RandomVec(w.size(), 900 + static_cast<uint32_t>(k));
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
    EXPECT_GT(std::abs(gu), 1e-4) << p->Name(tb.second);
    EXPECT_NEAR(fd, gu, 1e-2 * std::abs(gu) + 1e-4) << p->Name(tb.second);
  }
}

TEST(FinetuneMoe, ShortTrainingRunLowersTheLossAndWritesAMoeAdapter) {
  LoraTempDir tmp;
  {
    std::ofstream f(tmp / "d.jsonl");
    const char* keys[] = {"apple", "river", "stone", "cloud"};
    const char* vals[] = {"red", "blue", "green", "yellow"};
    for (int i = 0; i < 4; ++i) {
      f << nlohmann::json({{"prompt", std::string("Color code for ") + keys[i] + "?"}, {"completion", vals[i]}}).dump() << "\n";
    }
  }
  finetune::TrainOptions o;
  o.base = kMoe;
  o.data = tmp / "d.jsonl";
  o.out = tmp / "moe.gguf";
  o.steps = 12;
  o.batch = 4;
  o.rank = 4;
  o.optim.lr = 1e-2f;
  o.data_options.valid_fraction = 0;
  ThreadPool pool(2);
  auto rep = finetune::Train(o, &pool, nullptr);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  ASSERT_EQ(rep->losses.size(), 12u);
  EXPECT_LT(rep->losses.back(), rep->losses.front() * 0.5);
  auto t = engine::ReadLoraGguf(tmp / "moe.gguf");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->architecture, "qwen3moe");
  EXPECT_EQ(t->pairs.size(), 2u * 4u);  // 2 layers × q, k, v, o ("all" on a MoE model)
  // The engine serves it on the MoE base, and it changes the greedy answer's logits path.
  engine::LoadOptions lo;
  lo.n_ctx = 128;
  lo.n_threads = 2;
  lo.device = runtime::DeviceChoice::kCpu;
  auto m = engine::Model::Load(kMoe, lo);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  auto id = (*m)->LoadAdapter(tmp / "moe.gguf");
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  engine::GenerateOptions go;
  go.max_tokens = 4;
  go.sampler.temperature = 0;
  const auto prompt = (*m)->tokenizer().Encode("Color code for apple?");
  auto base = (*m)->Generate(prompt, go);
  go.adapter = *id;
  auto tuned = (*m)->Generate(prompt, go);
  ASSERT_TRUE(base.ok() && tuned.ok());
  EXPECT_NE(base->tokens, tuned->tokens);

  // An FFN target on a MoE base: refused, naming it.
  o.targets = "q,down";
  auto bad = finetune::Train(o, &pool, nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("ffn_down"), std::string::npos) << bad.status().ToString();
  EXPECT_NE(bad.status().message().find("Mixture-of-Experts"), std::string::npos) << bad.status().ToString();
}

}  // namespace
}  // namespace qwenmux::testing
