// engine::Batch: admission errors, the stop rules it applies (max_tokens, cancellation), the
// rows of embedding/scoring sequences, and prompts that share steps (tiny real model).
#include "engine/batch.h"

#include <atomic>

#include <gtest/gtest.h>

#include "common/testdata.h"

namespace qwenmux::engine {
namespace {

std::unique_ptr<Model> LoadTiny(int32_t n_seq) {
  LoadOptions lo;
  lo.n_ctx = 64;
  lo.n_seq = n_seq;
  lo.n_batch = 16;
  lo.n_threads = 2;
  auto m = Model::Load(qwenmux::testing::ModelPath("tiny-dense.q8_0.gguf"), lo);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(m).value() : nullptr;
}

SequenceRequest Greedy(std::vector<int32_t> prompt, int32_t max_tokens) {
  SequenceRequest r;
  r.prompt = std::move(prompt);
  r.options.sampler.temperature = 0;
  r.options.max_tokens = max_tokens;
  r.options.stop_on_eos = false;
  return r;
}

// Steps until every sequence has left; returns all events.
std::vector<SequenceEvent> Drain(Batch& b) {
  std::vector<SequenceEvent> all, ev;
  for (int i = 0; i < 1000 && b.active() > 0; ++i) {
    EXPECT_TRUE(b.Step(&ev).ok());
    for (auto& e : ev) all.push_back(std::move(e));
  }
  return all;
}

TEST(EngineBatch, AdmissionErrorsNameTheProblem) {
  auto m = LoadTiny(2);
  ASSERT_NE(m, nullptr);
  Batch b(*m);
  const auto p = m->tokenizer().Encode("hello");
  SequenceRequest r = Greedy(p, 4);
  r.adapter = 3;
  auto a = b.Admit(std::move(r));
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);  // no adapter 3 is loaded
  EXPECT_NE(a.status().message().find("adapter 3 is not loaded"), std::string::npos);
  r = Greedy(p, 4);
  r.slot = 2;
  EXPECT_EQ(b.Admit(std::move(r)).status().code(), StatusCode::kInvalidArgument);
  r = Greedy(std::vector<int32_t>(65, 100), 4);
  auto too_long = b.Admit(std::move(r));
  EXPECT_EQ(too_long.status().code(), StatusCode::kOutOfRange);
  EXPECT_NE(too_long.status().message().find("context"), std::string::npos);
  r = Greedy(p, 4);
  r.top_logprobs = 21;
  EXPECT_FALSE(b.Admit(std::move(r)).ok());
  ASSERT_TRUE(b.Admit(Greedy(p, 4)).ok());
  r = Greedy(p, 4);
  r.slot = 0;
  auto taken = b.Admit(std::move(r));
  ASSERT_FALSE(taken.ok());
  EXPECT_NE(taken.status().message().find("in use"), std::string::npos);
  ASSERT_TRUE(b.Admit(Greedy(p, 4)).ok());
  auto full = b.Admit(Greedy(p, 4));
  EXPECT_EQ(full.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(b.free_slots(), 0);
}

TEST(EngineBatch, StopRulesAndEvents) {
  auto m = LoadTiny(3);
  ASSERT_NE(m, nullptr);
  Batch b(*m);
  const auto p = m->tokenizer().Encode("Once upon a time");
  ASSERT_LE(p.size() * 3, 16u);  // the three prompts fit one step of n_batch 16
  std::atomic<bool> cancel{false};
  SequenceRequest zero = Greedy(p, 0);
  SequenceRequest cancelled = Greedy(p, 50);
  cancelled.cancelled = [&] { return cancel.load(); };
  SequenceRequest three = Greedy(p, 3);
  three.top_logprobs = 2;
  auto z = b.Admit(std::move(zero));
  auto c = b.Admit(std::move(cancelled));
  auto t = b.Admit(std::move(three));
  ASSERT_TRUE(z.ok() && c.ok() && t.ok());
  std::vector<SequenceEvent> ev;
  ASSERT_TRUE(b.Step(&ev).ok());
  ASSERT_EQ(ev.size(), 3u);
  for (const auto& e : ev) {
    if (e.id == *z) {
      EXPECT_FALSE(e.has_token);  // max_tokens 0: the prompt ran, nothing generated
      EXPECT_TRUE(e.finished);
      EXPECT_EQ(e.finish_reason, "length");
    } else {
      EXPECT_TRUE(e.has_token);
      EXPECT_FALSE(e.finished);
    }
    if (e.id == *t) {
      ASSERT_EQ(e.top.size(), 2u);
      EXPECT_EQ(e.top[0].token, e.token);  // greedy: the best alternative
      EXPECT_FLOAT_EQ(e.top[0].logprob, e.logprob);
    }
  }
  EXPECT_EQ(b.active(), 2);
  cancel = true;
  ASSERT_TRUE(b.Step(&ev).ok());
  bool saw_cancel = false;
  for (const auto& e : ev) {
    if (e.id != *c) continue;
    saw_cancel = true;
    EXPECT_FALSE(e.has_token);
    EXPECT_EQ(e.finish_reason, "cancelled");
  }
  EXPECT_TRUE(saw_cancel);
  const auto rest = Drain(b);
  ASSERT_FALSE(rest.empty());
  EXPECT_EQ(rest.back().id, *t);
  EXPECT_EQ(rest.back().finish_reason, "length");
  EXPECT_EQ(b.active(), 0);
  EXPECT_TRUE(b.Step(&ev).ok());  // an empty batch: nothing to do
  EXPECT_TRUE(ev.empty());
}

TEST(EngineBatch, RowsOfEmbeddingAndScoringSequences) {
  auto m = LoadTiny(2);
  ASSERT_NE(m, nullptr);
  Batch b(*m);
  SequenceRequest h;
  h.prompt = m->tokenizer().Encode("a longer prompt that needs two chunks of sixteen tokens to run through the model, one after the other");
  ASSERT_GT(h.prompt.size(), 16u);
  h.output = SequenceOutput::kLastHidden;
  SequenceRequest l;
  l.prompt = m->tokenizer().Encode("short");
  l.output = SequenceOutput::kLastLogits;
  auto hid = b.Admit(std::move(h));
  auto log = b.Admit(std::move(l));
  ASSERT_TRUE(hid.ok() && log.ok());
  const auto ev = Drain(b);
  ASSERT_EQ(ev.size(), 2u);
  for (const auto& e : ev) {
    EXPECT_TRUE(e.finished);
    EXPECT_FALSE(e.has_token);
    EXPECT_EQ(e.row.size(), e.id == *hid ? m->config().n_embd : m->config().n_vocab);
  }
}

}  // namespace
}  // namespace qwenmux::engine
