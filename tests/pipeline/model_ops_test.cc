// Batched scoring and constrained generation against one-at-a-time references on the tiny model.
#include <cmath>

#include <gtest/gtest.h>

#include "common/testdata.h"
#include "engine/engine.h"
#include "pipeline/model_ops.h"
#include "pipeline/schema.h"
#include "structured/structured.h"

namespace qwenmux::pipeline {
namespace {

engine::Model& Tiny(int32_t n_seq) {
  static std::map<int32_t, std::unique_ptr<engine::Model>> models;
  auto& m = models[n_seq];
  if (!m) {
    engine::LoadOptions o;
    o.n_ctx = 512;
    o.n_seq = n_seq;
    o.n_batch = 64;
    o.n_threads = 2;
    auto r = engine::Model::Load(qwenmux::testing::ModelPath("tiny-dense.q8_0.gguf"), o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    m = std::move(r).value();
  }
  return *m;
}

// log P(cont | prompt) from one Prefill over prompt+cont with all logits.
double Reference(engine::Model& m, const std::vector<int32_t>& prompt, const std::vector<int32_t>& cont) {
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), cont.begin(), cont.end());
  std::vector<float> logits;
  m.ResetSequence(0);
  EXPECT_TRUE(m.Prefill(0, all, nullptr, &logits).ok());
  m.ResetSequence(0);
  const size_t V = m.config().n_vocab;
  double lp = 0;
  for (size_t j = 0; j < cont.size(); ++j) {
    const float* row = logits.data() + (prompt.size() - 1 + j) * V;
    double mx = row[0];
    for (size_t i = 0; i < V; ++i) mx = std::max(mx, static_cast<double>(row[i]));
    double sum = 0;
    for (size_t i = 0; i < V; ++i) sum += std::exp(row[i] - mx);
    lp += row[cont[j]] - mx - std::log(sum);
  }
  return lp;
}

TEST(PipelineModelOps, ScoresMatchOneAtATimeReference) {
  engine::Model& batched = Tiny(3);
  engine::Model& single = Tiny(1);
  const auto& tok = batched.tokenizer();
  std::vector<std::vector<int32_t>> prompts;
  for (const char* p : {"Invoice number 42 from Acme, total 12 EUR.", "This agreement is made between two parties",
                        "A short note.", "Quarterly report: revenue grew.", "Hello"}) {
    prompts.push_back(tok.Encode(p));
  }
  const std::vector<std::vector<int32_t>> conts = {tok.Encode(" invoice"), tok.Encode(" contract report"), tok.Encode("x")};
  int64_t tokens = 0;
  auto out = ScoreContinuations(batched, prompts, conts, &tokens);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE((*out)[i].status.ok());
    for (size_t c = 0; c < conts.size(); ++c) {
      EXPECT_NEAR((*out)[i].logprobs[c], Reference(single, prompts[i], conts[c]), 1e-4) << i << "/" << c;  // engine tests' bar
    }
  }
  EXPECT_GT(tokens, 0);
  // Softmax over the label scores is a distribution.
  const auto p = Softmax((*out)[0].logprobs);
  EXPECT_NEAR(p[0] + p[1] + p[2], 1.0, 1e-9);
}

TEST(PipelineModelOps, TooLongPromptFailsAlone) {
  engine::Model& m = Tiny(3);
  std::vector<std::vector<int32_t>> prompts = {m.tokenizer().Encode("short"), std::vector<int32_t>(600, 100), m.tokenizer().Encode("also short")};
  auto out = ScoreContinuations(m, prompts, {m.tokenizer().Encode("a")});
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE((*out)[0].status.ok());
  EXPECT_EQ((*out)[1].status.code(), StatusCode::kOutOfRange);
  EXPECT_TRUE((*out)[2].status.ok());
  EXPECT_FALSE(ScoreContinuations(m, prompts, {{}}).ok());  // an empty continuation is refused
}

TEST(PipelineModelOps, BatchedConstrainedGenerationEqualsOneByOne) {
  engine::Model& batched = Tiny(3);
  engine::Model& single = Tiny(1);
  const auto schema = nlohmann::ordered_json::parse(
      R"({"type": "object", "properties": {"name": {"type": "string", "maxLength": 16}, "n": {"type": "integer"}, "ok": {"type": "boolean"}}})");
  auto t = structured::CompileJsonSchema(schema, structured::VocabIndex::Shared(batched.tokenizer()));
  ASSERT_TRUE(t.ok());
  std::vector<std::vector<int32_t>> prompts;
  for (const char* p : {"Extract: Alice, 3, yes", "Extract: Bob", "Extract the data", "x", "Name: Carol"}) prompts.push_back(batched.tokenizer().Encode(p));
  std::vector<std::unique_ptr<engine::LogitProcessor>> procs;
  for (size_t i = 0; i < prompts.size(); ++i) procs.push_back((*t)->NewProcessor());
  auto out = GenerateConstrained(batched, prompts, std::move(procs), 80);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE((*out)[i].status.ok()) << (*out)[i].status.ToString();
    EXPECT_TRUE((*out)[i].complete);
    auto j = nlohmann::ordered_json::parse((*out)[i].text, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << (*out)[i].text;
    EXPECT_TRUE(ValidateJson(schema, j).empty()) << (*out)[i].text;
    std::vector<std::unique_ptr<engine::LogitProcessor>> one;
    one.push_back((*t)->NewProcessor());
    auto ref = GenerateConstrained(single, {prompts[i]}, std::move(one), 80);
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ((*ref)[0].text, (*out)[i].text) << i;
  }
  // Too few tokens to finish: reported, not crashed.
  std::vector<std::unique_ptr<engine::LogitProcessor>> short_procs;
  short_procs.push_back((*t)->NewProcessor());
  auto cut = GenerateConstrained(batched, {prompts[0]}, std::move(short_procs), 3);
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ((*cut)[0].status.code(), StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace qwenmux::pipeline
