// LoRA adapters on the tiny dense model: parity with the adapter reference
// (refs/tiny-dense.lora.json, section inference_q8_0_base), the PEFT copy giving the same logits
// as the GGUF one (directly and after conversion), and mixed-adapter batches giving each
// sequence's tokens alone.
#include <gtest/gtest.h>

#include <cstring>
#include <iostream>

#include "base/mapped_file.h"
#include "engine/batch.h"
#include "engine/lora.h"
#include "engine/refcheck.h"
#include "lora/lora_util.h"

namespace qwenmux::engine {
namespace {

using namespace qwenmux::testing;

nlohmann::json LoraRef() {
  auto text = ReadFileToString(RefPath("tiny-dense.lora.json"));
  EXPECT_TRUE(text.ok());
  return text.ok() ? nlohmann::json::parse(*text) : nlohmann::json();
}

TEST(LoraGolden, GgufAdapterMeetsTheBars) {
  auto m = LoadLoraBase();
  ASSERT_NE(m, nullptr);
  auto id = m->LoadAdapter(kLoraGguf);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  const runtime::LoraAdapter* a = m->adapter(*id);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->max_rank(), 8);
  EXPECT_EQ(a->n_pairs(), 7 * static_cast<int32_t>(m->config().n_layer));
  EXPECT_FLOAT_EQ(a->alpha, 16.0f);
  const nlohmann::json ref = LoraRef();
  ASSERT_TRUE(ref.contains("inference_q8_0_base"));
  RefCheckOptions opt;
  opt.adapter = *id;
  auto r = RunRefCheck(*m, ref["inference_q8_0_base"], opt);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::cout << "lora q8_0 base: " << r->ToJson().dump() << "\n";
  EXPECT_EQ(r->positions, 446);
  EXPECT_GE(r->top1, 0.97);
  EXPECT_LE(r->probe_rms, 0.12);
  EXPECT_GE(r->greedy_match, 90);
  EXPECT_EQ(r->greedy_total, 96);
  // Without the adapter the same reference is far off (the adapter is really applied).
  auto base = RunRefCheck(*m, ref["inference_q8_0_base"], {});
  ASSERT_TRUE(base.ok());
  EXPECT_GT(base->probe_rms, 0.3);
}

// Logits of every position of `tokens` on sequence 0 through `adapter` (nullptr: none).
std::vector<float> Logits(Model& m, const std::vector<int32_t>& tokens, const runtime::LoraAdapter* adapter,
                          float scale = 1.0f) {
  std::vector<runtime::BatchEntry> b;
  for (size_t i = 0; i < tokens.size(); ++i) b.push_back({tokens[i], static_cast<int32_t>(i), 0, true, adapter, scale});
  std::vector<float> out(tokens.size() * m.config().n_vocab);
  EXPECT_TRUE(m.Forward(b, out.data(), nullptr).ok());
  m.ResetSequence(0);
  return out;
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, static_cast<double>(std::abs(a[i] - b[i])));
  return d;
}

TEST(LoraPeft, SameLogitsAsGgufDirectlyAndAfterConvert) {
  auto m = LoadLoraBase();
  ASSERT_NE(m, nullptr);
  LoraTempDir tmp;
  auto peft = ReadLoraPeft(kLoraPeft);
  ASSERT_TRUE(peft.ok()) << peft.status().ToString();
  EXPECT_FLOAT_EQ(peft->alpha, 16.0f);
  ASSERT_TRUE(WriteLoraGguf(*peft, tmp / "converted.gguf").ok());
  auto g = m->LoadAdapter(kLoraGguf);
  auto p = m->LoadAdapter(kLoraPeft);
  auto c = m->LoadAdapter(tmp / "converted.gguf");
  ASSERT_TRUE(g.ok() && p.ok() && c.ok()) << g.status().ToString() << p.status().ToString() << c.status().ToString();
  const std::vector<int32_t> tokens = m->tokenizer().Encode("The quick brown fox jumps over the lazy dog, twice.");
  const auto lg = Logits(*m, tokens, m->adapter(*g));
  const auto lp = Logits(*m, tokens, m->adapter(*p));
  const auto lc = Logits(*m, tokens, m->adapter(*c));
  const auto none = Logits(*m, tokens, nullptr);
  EXPECT_EQ(lg, lp);
  EXPECT_EQ(lg, lc);
  EXPECT_GT(MaxAbsDiff(lg, none), 0.1);
  // Scale 0 is the base model; scale 0.5 lies between.
  EXPECT_EQ(Logits(*m, tokens, m->adapter(*g), 0.0f), none);
  const auto half = Logits(*m, tokens, m->adapter(*g), 0.5f);
  EXPECT_GT(MaxAbsDiff(half, none), 0.01);
  EXPECT_GT(MaxAbsDiff(half, lg), 0.01);
}

// Runs requests (each: prompt, adapter id, scale) in one Batch and returns each one's tokens.
std::vector<std::vector<int32_t>> RunTogether(Model& m, const std::vector<std::vector<int32_t>>& prompts,
                                              const std::vector<std::pair<int32_t, float>>& adapters, int32_t n) {
  Batch b(m);
  std::vector<std::vector<int32_t>> out(prompts.size());
  std::vector<size_t> owner(static_cast<size_t>(m.n_seq()));
  for (size_t i = 0; i < prompts.size(); ++i) {
    SequenceRequest r;
    r.prompt = prompts[i];
    r.options.sampler.temperature = 0;
    r.options.max_tokens = n;
    r.options.stop_on_eos = false;
    r.adapter = adapters[i].first;
    r.adapter_scale = adapters[i].second;
    auto id = b.Admit(std::move(r));
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    if (!id.ok()) return {};
    owner[static_cast<size_t>(*id)] = i;
  }
  std::vector<SequenceEvent> events;
  while (b.active() > 0) {
    EXPECT_TRUE(b.Step(&events).ok());
    for (const auto& ev : events)
      if (ev.has_token) out[owner[static_cast<size_t>(ev.id)]].push_back(ev.token);
  }
  return out;
}

std::vector<int32_t> RunAlone(Model& m, const std::vector<int32_t>& prompt, int32_t adapter, float scale, int32_t n) {
  GenerateOptions o;
  o.sampler.temperature = 0;
  o.max_tokens = n;
  o.stop_on_eos = false;
  o.adapter = adapter;
  o.adapter_scale = scale;
  auto r = m.Generate(prompt, o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r->tokens : std::vector<int32_t>{};
}

TEST(LoraBatch, MixedAdaptersMatchEachRunAlone) {
  auto m = LoadLoraBase(3);
  ASSERT_NE(m, nullptr);
  LoraTempDir tmp;
  // A second adapter: the first with B negated and doubled.
  RewriteAdapter(kLoraGguf, tmp / "other.gguf", [](std::vector<RawTensor>& ts, gguf::Writer&) {
    for (auto& t : ts)
      if (t.name.ends_with(".lora_b"))
        for (float& x : t.data) x *= -2.0f;
  });
  auto a = m->LoadAdapter(kLoraGguf);
  auto o = m->LoadAdapter(tmp / "other.gguf");
  ASSERT_TRUE(a.ok() && o.ok());
  const std::vector<std::vector<int32_t>> prompts = {m->tokenizer().Encode("Once upon a time"),
                                                     m->tokenizer().Encode("The capital of France is"),
                                                     m->tokenizer().Encode("1, 2, 3, 4,")};
  constexpr int32_t kTokens = 12;
  for (const auto& cfg : {std::vector<std::pair<int32_t, float>>{{*a, 1.0f}, {-1, 1.0f}, {*a, 0.5f}},
                          std::vector<std::pair<int32_t, float>>{{*a, 1.0f}, {*o, 1.0f}, {-1, 1.0f}}}) {
    const auto together = RunTogether(*m, prompts, cfg, kTokens);
    ASSERT_EQ(together.size(), prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(together[i], RunAlone(*m, prompts[i], cfg[i].first, cfg[i].second, kTokens)) << "sequence " << i;
      EXPECT_EQ(together[i].size(), static_cast<size_t>(kTokens));
    }
  }
  // The same prompt under the three settings: the adapter changes what comes out.
  const auto same = RunTogether(*m, {prompts[0], prompts[0], prompts[0]}, {{*a, 1.0f}, {-1, 1.0f}, {*o, 1.0f}}, kTokens);
  EXPECT_NE(same[0], same[1]);
  EXPECT_NE(same[2], same[1]);
}

TEST(LoraBatch, UnknownAdapterAndBadScaleRefused) {
  auto m = LoadLoraBase();
  ASSERT_NE(m, nullptr);
  Batch b(*m);
  SequenceRequest r;
  r.prompt = {1, 2, 3};
  r.adapter = 0;
  auto id = b.Admit(std::move(r));
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.status().message().find("adapter 0 is not loaded"), std::string::npos);
  ASSERT_TRUE(m->LoadAdapter(kLoraGguf).ok());
  SequenceRequest r2;
  r2.prompt = {1, 2, 3};
  r2.adapter = 0;
  r2.adapter_scale = std::numeric_limits<float>::quiet_NaN();
  id = b.Admit(std::move(r2));
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.status().message().find("not finite"), std::string::npos);
}

}  // namespace
}  // namespace qwenmux::engine
