// Embeddings and reranking join a running generation batch (run under TSan by scripts/test.sh:
// suite names contain "Concurrent"): while a long generation runs on the tiny model, an embed or
// rerank request submitted from the generation's own token callback (so it is certainly queued
// while the generation runs, with no timing involved) completes before the generation does, with
// the vectors/scores Model::Embed/RerankScores compute alone, and the generation's tokens are
// those of Model::Generate. Also: more inputs than free slots, a bad input, a cancel while in the
// batch, and a request behind them.
#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "orchestrator/scheduler/scheduler.h"
#include "orchestrator/scheduler_test_util.h"

namespace qwenmux::orchestrator {
namespace {

using test::BatchSpec;
using test::Collector;
using test::Greedy;

// Embeddings of the batch and of a run alone may differ by float rounding of the batched kernels;
// this is far below any difference between two texts' embeddings (cosine distances ~1e-2 and up).
constexpr float kTolerance = 1e-5f;
constexpr int32_t kLongGeneration = 200;  // tokens; the context is 256
constexpr int kJoinAt = 5;                // the generation's token at which the request is submitted

// One on_done of type T, waited for from the test thread; records how far the generation was.
template <typename T>
class Outcome {
 public:
  void Set(Result<T> r, int gen_tokens, bool gen_done) {
    std::lock_guard lk(mu_);
    result_.emplace(std::move(r));
    gen_tokens_ = gen_tokens;
    gen_done_ = gen_done;
    cv_.notify_all();
  }
  bool Wait() {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, std::chrono::seconds(60), [&] { return result_.has_value(); });
  }
  const Result<T>& result() const { return *result_; }
  int gen_tokens() const { return gen_tokens_; }
  bool gen_done() const { return gen_done_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Result<T>> result_;
  int gen_tokens_ = 0;
  bool gen_done_ = false;
};

using Vectors = std::vector<std::vector<float>>;

class SchedulerJoinConcurrent : public ::testing::Test {
 protected:
  void SetUp() override {
    manager_ = std::make_unique<ModelManager>(test::TestOptions(0, &metrics_),
                                              std::vector<ModelSpec>{BatchSpec("tiny", 2), BatchSpec("tiny1", 1)});
    SchedulerOptions o;
    o.metrics = &metrics_;
    sched_ = std::make_unique<Scheduler>(manager_.get(), o);
  }

  engine::Model& Ref() {
    if (!ref_) {
      engine::LoadOptions lo;
      lo.n_ctx = 256;
      lo.n_threads = 2;
      auto m = engine::Model::Load(qwenmux::testing::ModelPath("tiny-dense.q8_0.gguf"), lo);
      EXPECT_TRUE(m.ok()) << m.status().ToString();
      ref_ = std::move(m).value();
    }
    return *ref_;
  }
  std::vector<int32_t> Encode(const std::string& s) { return Ref().tokenizer().Encode(s); }

  // An embed request whose on_done records into *out how far `gen` was.
  static EmbedRequest Embed(const std::string& model, std::vector<std::vector<int32_t>> inputs, Outcome<Vectors>* out,
                            Collector* gen) {
    EmbedRequest e;
    e.model = model;
    e.inputs = std::move(inputs);
    e.on_done = [out, gen](Result<Vectors> r) { out->Set(std::move(r), gen->token_count(), gen->done()); };
    return e;
  }

  Metrics metrics_;
  std::unique_ptr<ModelManager> manager_;
  std::unique_ptr<Scheduler> sched_;
  std::unique_ptr<engine::Model> ref_;
};

// Engine steps the inputs need in the one slot the generation leaves free: prompt chunks of
// n_batch (32) - 1 (the generation's decode token) tokens, one input after another (+1 for the
// end-of-text token Embed appends), and a step of slack for joining.
int StepsFor(const std::vector<std::vector<int32_t>>& inputs) {
  int steps = 1;
  for (const auto& in : inputs) steps += static_cast<int>(in.size() + 1 + 30) / 31;
  return steps;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  float d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

TEST_F(SchedulerJoinConcurrent, EmbeddingJoinsALongGenerationAndEqualsItsRunAlone) {
  const std::vector<std::vector<int32_t>> inputs = {Encode("a cat on a mat"), Encode("the tea of Hangzhou")};
  auto alone = Ref().Embed(inputs);
  ASSERT_TRUE(alone.ok()) << alone.status().ToString();
  GenerationRequest g = Greedy("tiny", Encode("Tell me a long story."), kLongGeneration);
  auto want = Ref().Generate(g.prompt, g.options);
  ASSERT_TRUE(want.ok());

  Collector gen;
  Outcome<Vectors> out;
  std::optional<Status> submitted;
  gen.Attach(g, [&](int n) {
    if (n == kJoinAt) submitted = sched_->Submit(Embed("tiny", inputs, &out, &gen)).status();
    return true;
  });
  ASSERT_TRUE(sched_->Submit(std::move(g)).ok());
  ASSERT_TRUE(out.Wait());
  auto rg = gen.Wait();
  ASSERT_TRUE(rg.ok()) << rg.status().ToString();
  ASSERT_TRUE(submitted && submitted->ok());

  ASSERT_TRUE(out.result().ok()) << out.result().status().ToString();
  // It completed inside the generation: a few steps after it joined, long before the end.
  EXPECT_FALSE(out.gen_done());
  EXPECT_LE(out.gen_tokens(), kJoinAt + StepsFor(inputs)) << "the embedding waited for the generation";
  ASSERT_EQ(out.result()->size(), inputs.size());
  float worst = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_LE(MaxAbsDiff((*out.result())[i], (*alone)[i]), kTolerance) << "input " << i;
    worst = std::max(worst, MaxAbsDiff((*out.result())[i], (*alone)[i]));
  }
  std::printf("{\"embedding_joined_vs_alone_max_abs_diff\": %g}\n", static_cast<double>(worst));
  // And the generation did not notice.
  EXPECT_EQ(rg->tokens, want->tokens);
  EXPECT_EQ(static_cast<int32_t>(rg->tokens.size()), kLongGeneration);
}

TEST_F(SchedulerJoinConcurrent, RerankJoinsALongGenerationAndEqualsItsRunAlone) {
  const std::vector<std::vector<int32_t>> inputs = {
      Ref().RerankPrompt("Find the animal", "cat", "A cat sat on the mat."),
      Ref().RerankPrompt("Find the animal", "cat", "Stock prices fell on Monday.")};
  auto alone = Ref().RerankScores(inputs);
  ASSERT_TRUE(alone.ok()) << alone.status().ToString();

  Collector gen;
  Outcome<std::vector<float>> out;
  GenerationRequest g = Greedy("tiny", Encode("Count to a thousand:"), kLongGeneration);
  gen.Attach(g, [&](int n) {
    if (n == kJoinAt) {
      RerankRequest r;
      r.model = "tiny";
      r.inputs = inputs;
      r.on_done = [&](Result<std::vector<float>> res) { out.Set(std::move(res), gen.token_count(), gen.done()); };
      EXPECT_TRUE(sched_->Submit(std::move(r)).ok());
    }
    return true;
  });
  ASSERT_TRUE(sched_->Submit(std::move(g)).ok());
  ASSERT_TRUE(out.Wait());
  ASSERT_TRUE(gen.Wait().ok());
  ASSERT_TRUE(out.result().ok()) << out.result().status().ToString();
  EXPECT_FALSE(out.gen_done());
  EXPECT_LE(out.gen_tokens(), kJoinAt + StepsFor(inputs)) << "the rerank waited for the generation";
  ASSERT_EQ(out.result()->size(), inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) EXPECT_NEAR((*out.result())[i], (*alone)[i], kTolerance) << "input " << i;
}

TEST_F(SchedulerJoinConcurrent, MoreInputsThanFreeSlotsTakeTheirTurnsAndARequestBehindWaits) {
  // One slot is the generation's: five inputs run one after another in the other, with dims.
  std::vector<std::vector<int32_t>> inputs;
  for (int i = 0; i < 5; ++i) inputs.push_back(Encode("document number " + std::to_string(i) + " about tea"));
  auto alone = Ref().Embed(inputs, 16);
  ASSERT_TRUE(alone.ok());
  Collector gen, behind;
  Outcome<Vectors> out;
  GenerationRequest g = Greedy("tiny", Encode("Once upon a time"), kLongGeneration);
  GenerationRequest b = Greedy("tiny", Encode("Hello"), 4);
  auto want_b = Ref().Generate(b.prompt, b.options);
  ASSERT_TRUE(want_b.ok());
  gen.Attach(g, [&](int n) {
    if (n == kJoinAt) {
      EmbedRequest e = Embed("tiny", inputs, &out, &gen);
      e.dims = 16;
      EXPECT_TRUE(sched_->Submit(std::move(e)).ok());
      EXPECT_TRUE(sched_->Submit(std::move(b)).ok());  // FIFO: after the embedding's inputs
    }
    return true;
  });
  behind.Attach(b);
  ASSERT_TRUE(sched_->Submit(std::move(g)).ok());
  ASSERT_TRUE(out.Wait());
  auto rb = behind.Wait();
  ASSERT_TRUE(gen.Wait().ok());
  ASSERT_TRUE(out.result().ok()) << out.result().status().ToString();
  EXPECT_FALSE(out.gen_done());
  EXPECT_LE(out.gen_tokens(), kJoinAt + StepsFor(inputs));
  ASSERT_EQ(out.result()->size(), inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_EQ((*out.result())[i].size(), 16u);
    EXPECT_LE(MaxAbsDiff((*out.result())[i], (*alone)[i]), kTolerance) << "input " << i;
  }
  ASSERT_TRUE(rb.ok());
  EXPECT_EQ(rb->tokens, want_b->tokens);
}

TEST_F(SchedulerJoinConcurrent, BadInputAndCancelInTheBatchEndOnlyTheirRequest) {
  Collector gen;
  Outcome<Vectors> bad, cancelled, after;
  std::shared_ptr<RequestHandle> to_cancel;
  std::vector<std::vector<int32_t>> many;
  for (int i = 0; i < 6; ++i) many.push_back(Encode("a sentence to embed, number " + std::to_string(i)));
  GenerationRequest g = Greedy("tiny", Encode("Tell me a long story."), kLongGeneration);
  auto want = Ref().Generate(g.prompt, g.options);
  ASSERT_TRUE(want.ok());
  const std::vector<int32_t> fine = Encode("fine"), after_input = Encode("after");  // not on the worker's thread
  gen.Attach(g, [&](int n) {
    if (n == kJoinAt) {
      // Its second input has a token outside the vocabulary: the request fails when admitted.
      EXPECT_TRUE(sched_->Submit(Embed("tiny", {fine, {1, 2, 99999999}}, &bad, &gen)).ok());
    } else if (n == kJoinAt + 4) {
      auto h = sched_->Submit(Embed("tiny", many, &cancelled, &gen));
      EXPECT_TRUE(h.ok());
      if (h.ok()) to_cancel = *h;
    } else if (n == kJoinAt + 6 && to_cancel) {
      to_cancel->Cancel();  // two of its six inputs have had their turn at most
    } else if (n == kJoinAt + 12) {
      EXPECT_TRUE(sched_->Submit(Embed("tiny", {after_input}, &after, &gen)).ok());
    }
    return true;
  });
  ASSERT_TRUE(sched_->Submit(std::move(g)).ok());
  ASSERT_TRUE(bad.Wait() && cancelled.Wait() && after.Wait());
  auto rg = gen.Wait();
  ASSERT_TRUE(rg.ok());
  ASSERT_FALSE(bad.result().ok());
  EXPECT_EQ(bad.result().status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.result().status().message().find("input 1"), std::string::npos) << bad.result().status().ToString();
  ASSERT_FALSE(cancelled.result().ok());
  EXPECT_EQ(cancelled.result().status().code(), StatusCode::kCancelled);
  EXPECT_FALSE(cancelled.gen_done());
  // The slots they held are free again, and the generation went on unchanged.
  ASSERT_TRUE(after.result().ok()) << after.result().status().ToString();
  auto alone = Ref().Embed({after_input});
  ASSERT_TRUE(alone.ok());
  EXPECT_LE(MaxAbsDiff((*after.result())[0], (*alone)[0]), kTolerance);
  EXPECT_FALSE(after.gen_done());
  EXPECT_EQ(rg->tokens, want->tokens);
}

TEST_F(SchedulerJoinConcurrent, ShutdownWithAnEmbeddingInTheBatchEndsItOnce) {
  // Forty inputs take their turns in the one free slot; Shutdown() comes from this thread while
  // they run (or, on a slow machine, after they ran): on_done runs exactly once either way.
  std::vector<std::vector<int32_t>> many;
  for (int i = 0; i < 40; ++i) many.push_back(Encode("input " + std::to_string(i)));
  Collector gen;
  std::mutex mu;
  int calls = 0;
  std::optional<Status> status;
  GenerationRequest g = Greedy("tiny", Encode("Tell me a long story."), kLongGeneration);
  gen.Attach(g, [&](int n) {
    if (n == kJoinAt) {
      EmbedRequest e;
      e.model = "tiny";
      e.inputs = many;
      e.on_done = [&](Result<Vectors> r) {
        std::lock_guard lk(mu);
        ++calls;
        status = r.status();
      };
      EXPECT_TRUE(sched_->Submit(std::move(e)).ok());
    }
    return true;
  });
  ASSERT_TRUE(sched_->Submit(std::move(g)).ok());
  ASSERT_TRUE(gen.WaitTokens(kJoinAt + 3));
  sched_->Shutdown();
  auto rg = gen.Wait();
  ASSERT_TRUE(rg.ok());
  EXPECT_EQ(gen.done_calls(), 1);
  std::lock_guard lk(mu);
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(status.has_value());
  if (!status->ok()) {
    EXPECT_EQ(status->code(), StatusCode::kCancelled) << status->ToString();
  }
}

TEST_F(SchedulerJoinConcurrent, WithOneSlotAnEmbeddingWaitsForTheGeneration) {
  // parallel 1: the generation holds the only KV slot, so the embedding runs after it.
  Collector gen;
  Outcome<Vectors> out;
  GenerationRequest g = Greedy("tiny1", Encode("Hi"), 20);
  const std::vector<int32_t> x = Encode("x");
  gen.Attach(g, [&](int n) {
    if (n == 2) {
      EXPECT_TRUE(sched_->Submit(Embed("tiny1", {x}, &out, &gen)).ok());
    }
    return true;
  });
  ASSERT_TRUE(sched_->Submit(std::move(g)).ok());
  ASSERT_TRUE(out.Wait());
  ASSERT_TRUE(out.result().ok());
  EXPECT_TRUE(out.gen_done());
}

}  // namespace
}  // namespace qwenmux::orchestrator
