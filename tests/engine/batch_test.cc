// engine::Batch: admission errors, the stop rules it applies (max_tokens, cancellation), the
// rows of embedding/scoring sequences, and prompts that share steps (tiny real model).
#include "engine/batch.h"

#include <algorithm>
#include <atomic>

#include <gtest/gtest.h>

#include "common/testdata.h"

namespace qwenmux::engine {
namespace {

std::unique_ptr<Model> LoadTiny(int32_t n_seq, LoadOptions::TopLogits top = LoadOptions::TopLogits::kAuto) {
  LoadOptions lo;
  lo.top_logits = top;
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

// Steps that sample from top lists (Backend::RunTop; forced on here, where the CPU selects them
// on the host) generate exactly the tokens of steps that sample from whole rows, for greedy and
// seeded sequences sharing a batch; a sequence whose draws need whole rows (a repetition
// penalty, logprobs) makes its steps fall back, with the same result.
TEST(EngineBatch, TopListStepsDrawWhatWholeRowsDraw) {
  auto run = [](LoadOptions::TopLogits mode, std::vector<bool>* from_top) {
    auto m = LoadTiny(4, mode);
    EXPECT_NE(m, nullptr);
    std::vector<std::vector<int32_t>> out(4);
    if (!m) return out;
    Batch b(*m);
    const auto p = m->tokenizer().Encode("The weather today");
    std::vector<int32_t> ids;
    for (int i = 0; i < 3; ++i) {
      SequenceRequest r = Greedy(p, 12);
      if (i > 0) {
        r.options.sampler.temperature = i == 1 ? 0.8f : 1.5f;
        r.options.sampler.top_k = i == 1 ? 20 : 64;
        r.options.sampler.top_p = 0.9f;
        r.options.sampler.seed = 40 + i;
      }
      auto id = b.Admit(std::move(r));
      EXPECT_TRUE(id.ok());
      ids.push_back(id.ok() ? *id : -1);
    }
    std::vector<SequenceEvent> ev;
    StepStats st;
    for (int step = 0; step < 100 && b.active() > 0; ++step) {
      if (step == 4) {  // a penalized sequence joins: its steps need whole rows
        SequenceRequest r = Greedy(p, 4);
        r.options.sampler.repetition_penalty = 1.3f;
        auto id = b.Admit(std::move(r));
        EXPECT_TRUE(id.ok());
        ids.push_back(id.ok() ? *id : -1);
      }
      EXPECT_TRUE(b.Step(&ev, &st).ok());
      if (st.n_decode > 0 || st.generated > 0) from_top->push_back(st.from_top);
      for (const auto& e : ev) {
        if (!e.has_token) continue;
        const size_t seq = static_cast<size_t>(std::find(ids.begin(), ids.end(), e.id) - ids.begin());
        if (seq < out.size()) out[seq].push_back(e.token);
      }
    }
    return out;
  };
  std::vector<bool> top_steps, row_steps;
  const auto listed = run(LoadOptions::TopLogits::kOn, &top_steps);
  const auto whole = run(LoadOptions::TopLogits::kOff, &row_steps);
  ASSERT_EQ(listed.size(), whole.size());
  for (size_t i = 0; i < whole.size(); ++i) {
    EXPECT_FALSE(whole[i].empty()) << "sequence " << i;
    EXPECT_EQ(listed[i], whole[i]) << "sequence " << i;
  }
  EXPECT_TRUE(std::count(top_steps.begin(), top_steps.end(), true) >= 2) << "the top-list path never ran";
  EXPECT_TRUE(std::count(top_steps.begin(), top_steps.end(), false) >= 1) << "the penalized steps did not fall back";
  EXPECT_EQ(std::count(row_steps.begin(), row_steps.end(), true), 0);
  // The CPU backend selects nothing on the device: `auto` keeps whole rows there.
  auto m = LoadTiny(1);
  ASSERT_NE(m, nullptr);
  EXPECT_FALSE(m->samples_from_top());
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
