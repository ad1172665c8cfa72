// Issue 13's bar: the same greedy prompts through `run`'s path (Model::Generate), the scheduler
// (each request alone, and four sharing the batch) and the pipeline's constrained generation give
// identical tokens and finish reasons, because all of them run the engine's one batch step.
// (Suite name contains "Concurrent": run under TSan by scripts/test.sh.)
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/testdata.h"
#include "engine/engine.h"
#include "orchestrator/scheduler/scheduler.h"
#include "orchestrator/scheduler_test_util.h"
#include "pipeline/model_ops.h"

namespace qwenmux {
namespace {

// Allows every token; Done() after `done_after` accepted tokens (never when it is < 0).
class CountingProcessor : public engine::LogitProcessor {
 public:
  explicit CountingProcessor(int32_t done_after) : done_after_(done_after) {}
  Status Apply(std::span<float>) override { return Status::Ok(); }
  Status Accept(int32_t) override {
    ++accepted_;
    return Status::Ok();
  }
  bool Done() const override { return done_after_ >= 0 && accepted_ >= done_after_; }

 private:
  int32_t done_after_;
  int32_t accepted_ = 0;
};

struct Case {
  std::string prompt;
  int32_t done_after;  // the processor's Done() (-1: never, the sequence ends at max_tokens)
};

constexpr int32_t kMaxTokens = 14;

const std::vector<Case>& Cases() {
  static const std::vector<Case> cases = [] {
    std::string long_text;
    for (int i = 0; i < 6; ++i) long_text += "The quick brown fox jumps over the lazy dog number " + std::to_string(i) + ". ";
    return std::vector<Case>{{"Hello, world!", -1}, {"Once upon a time in a land far away", 5}, {long_text, -1},
                             {"def fib(n):\n    return", 9}};
  }();
  return cases;
}

struct Outcome {
  std::vector<int32_t> tokens;
  std::string finish_reason;
};

engine::GenerateOptions Greedy() {
  engine::GenerateOptions g;
  g.sampler.temperature = 0;
  g.max_tokens = kMaxTokens;
  g.stop_on_eos = false;  // the pipeline's generation leaves the end to the processor
  return g;
}

orchestrator::GenerationRequest Request(const std::vector<int32_t>& prompt, const Case& c) {
  orchestrator::GenerationRequest r;
  r.model = "tiny";
  r.prompt = prompt;
  r.options = Greedy();
  r.processor = std::make_unique<CountingProcessor>(c.done_after);
  return r;
}

TEST(DecodePathsConcurrent, RunSchedulerAndPipelineGiveTheSameGreedyTokens) {
  engine::LoadOptions lo;
  lo.n_ctx = 256;
  lo.n_threads = 2;
  lo.n_batch = 32;  // the long prompt is prefilled in chunks
  auto single = engine::Model::Load(qwenmux::testing::ModelPath("tiny-dense.q8_0.gguf"), lo);
  ASSERT_TRUE(single.ok()) << single.status().ToString();
  const auto& cases = Cases();
  std::vector<std::vector<int32_t>> prompts;
  for (const Case& c : cases) prompts.push_back((*single)->tokenizer().Encode(c.prompt));
  ASSERT_GT(prompts[2].size(), 32u);

  // `run`'s path: Model::Generate, one prompt at a time.
  std::vector<Outcome> run;
  for (size_t i = 0; i < cases.size(); ++i) {
    CountingProcessor proc(cases[i].done_after);
    engine::GenerateOptions g = Greedy();
    g.processor = &proc;
    auto r = (*single)->Generate(prompts[i], g);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    run.push_back({r->tokens, r->finish_reason});
  }
  // The cases cover both ends: a processor's stop and max_tokens.
  EXPECT_EQ(run[0].finish_reason, "length");
  EXPECT_EQ(run[0].tokens.size(), static_cast<size_t>(kMaxTokens));
  EXPECT_EQ(run[1].finish_reason, "stop");
  EXPECT_EQ(run[1].tokens.size(), 5u);

  // The scheduler: each request alone, then all four sharing the decode steps.
  orchestrator::Metrics metrics;
  orchestrator::ModelManager manager(orchestrator::test::TestOptions(0, &metrics),
                                     std::vector<orchestrator::ModelSpec>{orchestrator::test::BatchSpec("tiny", 4)});
  orchestrator::SchedulerOptions so;
  so.metrics = &metrics;
  orchestrator::Scheduler sched(&manager, so);
  for (size_t i = 0; i < cases.size(); ++i) {
    orchestrator::test::Collector c;
    auto r = Request(prompts[i], cases[i]);
    c.Attach(r);
    ASSERT_TRUE(sched.Submit(std::move(r)).ok());
    auto res = c.Wait();
    ASSERT_TRUE(res.ok()) << res.status().ToString();
    EXPECT_EQ(res->tokens, run[i].tokens) << "scheduler alone, prompt " << i;
    EXPECT_EQ(res->finish_reason, run[i].finish_reason) << "scheduler alone, prompt " << i;
  }
  {
    // Request 0 holds the worker in its first token until the other three are queued: they join
    // at the next step and the four share the batch.
    orchestrator::test::Gate gate;
    std::vector<orchestrator::test::Collector> c(cases.size());
    std::vector<orchestrator::GenerationRequest> reqs;
    for (size_t i = 0; i < cases.size(); ++i) reqs.push_back(Request(prompts[i], cases[i]));
    c[0].Attach(reqs[0], [&](int n) {
      if (n == 1) gate.Enter();
      return true;
    });
    for (size_t i = 1; i < cases.size(); ++i) c[i].Attach(reqs[i]);
    ASSERT_TRUE(sched.Submit(std::move(reqs[0])).ok());
    ASSERT_TRUE(gate.WaitEntered());
    for (size_t i = 1; i < cases.size(); ++i) ASSERT_TRUE(sched.Submit(std::move(reqs[i])).ok());
    EXPECT_EQ(sched.QueueDepth("tiny"), 4);
    gate.Open();
    for (size_t i = 0; i < cases.size(); ++i) {
      auto res = c[i].Wait();
      ASSERT_TRUE(res.ok()) << res.status().ToString();
      EXPECT_EQ(res->tokens, run[i].tokens) << "scheduler batched, prompt " << i;
      EXPECT_EQ(res->finish_reason, run[i].finish_reason) << "scheduler batched, prompt " << i;
    }
  }

  // The pipeline's generation: all four prompts together on a model with four sequences.
  lo.n_seq = 4;
  auto batched = engine::Model::Load(qwenmux::testing::ModelPath("tiny-dense.q8_0.gguf"), lo);
  ASSERT_TRUE(batched.ok()) << batched.status().ToString();
  std::vector<std::unique_ptr<engine::LogitProcessor>> procs;
  for (const Case& c : cases) procs.push_back(std::make_unique<CountingProcessor>(c.done_after));
  auto out = pipeline::GenerateConstrained(**batched, prompts, std::move(procs), kMaxTokens);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  for (size_t i = 0; i < cases.size(); ++i) {
    const pipeline::ConstrainedOutput& o = (*out)[i];
    EXPECT_EQ(o.tokens, run[i].tokens) << "pipeline, prompt " << i;
    // complete: the processor ended it ("stop"); else cut at max_tokens ("length"), an error.
    EXPECT_EQ(o.complete ? "stop" : "length", run[i].finish_reason) << "pipeline, prompt " << i;
    EXPECT_EQ(o.status.ok(), o.complete) << o.status.ToString();
  }
}

}  // namespace
}  // namespace qwenmux
