// The scheduler with the tiny real models (run under TSan by scripts/test.sh: suite names contain
// "Concurrent"): batched greedy output equals Model::Generate's, sequences join and leave a
// running batch, cancellation within one step, the queue cap, failed loads, FIFO admission,
// shutdown with requests in flight, logit processors, logprobs, embeddings and reranking.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "orchestrator/scheduler/scheduler.h"
#include "orchestrator/scheduler_test_util.h"

namespace qwenmux::orchestrator {
namespace {

using test::BatchSpec;
using test::Collector;
using test::Gate;
using test::Greedy;

class SchedulerConcurrent : public ::testing::Test {
 protected:
  void SetUp() override { Start(64); }

  void Start(int32_t max_queue) {
    sched_.reset();
    manager_ = std::make_unique<ModelManager>(test::TestOptions(0, &metrics_),
                                              std::vector<ModelSpec>{BatchSpec("tiny", 4), BatchSpec("tiny1", 1)});
    SchedulerOptions o;
    o.metrics = &metrics_;
    o.max_queue = max_queue;
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
  // What Model::Generate makes of the same request on its own.
  engine::GenerateResult Reference(const GenerationRequest& r) {
    auto g = Ref().Generate(r.prompt, r.options);
    EXPECT_TRUE(g.ok()) << g.status().ToString();
    return g.ok() ? *g : engine::GenerateResult{};
  }
  std::vector<std::vector<int32_t>> Prompts() {
    std::string long_text;
    for (int i = 0; i < 6; ++i) long_text += "The quick brown fox jumps over the lazy dog number " + std::to_string(i) + ". ";
    return {Encode("Hello, world!"), Encode("Once upon a time in a land far away"), Encode(long_text),
            Encode("def fib(n):\n    return")};
  }

  Metrics metrics_;
  std::unique_ptr<ModelManager> manager_;
  std::unique_ptr<Scheduler> sched_;
  std::unique_ptr<engine::Model> ref_;
};

std::vector<int32_t> TokensOf(const std::vector<test::Event>& ev) {
  std::vector<int32_t> t;
  for (const auto& e : ev) t.push_back(e.token);
  return t;
}

TEST_F(SchedulerConcurrent, GreedyOutputAloneAndBatchedEqualsGenerate) {
  const auto prompts = Prompts();
  ASSERT_GT(prompts[2].size(), 32u);  // longer than n_batch: prefilled in chunks
  // Request 0 holds the worker in its first token until the other three are queued, so the
  // three join together at the next step and all four share the decode steps.
  Gate gate;
  std::vector<Collector> c(4);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 4; ++i) reqs.push_back(Greedy("tiny", prompts[i], 12 + 4 * i));
  std::vector<engine::GenerateResult> want;
  for (const auto& r : reqs) want.push_back(Reference(r));
  c[0].Attach(reqs[0], [&](int n) {
    if (n == 1) gate.Enter();
    return true;
  });
  for (int i = 1; i < 4; ++i) c[i].Attach(reqs[i]);
  ASSERT_TRUE(sched_->Submit(std::move(reqs[0])).ok());
  ASSERT_TRUE(gate.WaitEntered());
  for (int i = 1; i < 4; ++i) ASSERT_TRUE(sched_->Submit(std::move(reqs[i])).ok());
  EXPECT_EQ(sched_->QueueDepth("tiny"), 4);
  gate.Open();
  for (int i = 0; i < 4; ++i) {
    auto r = c[i].Wait();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->tokens, want[i].tokens) << "request " << i;
    EXPECT_EQ(r->text, want[i].text) << "request " << i;
    EXPECT_EQ(r->finish_reason, "length");
    EXPECT_EQ(r->model, "tiny");
    EXPECT_EQ(r->completion_tokens, static_cast<int32_t>(r->tokens.size()));
    EXPECT_EQ(r->prompt_tokens, static_cast<int32_t>(prompts[i].size()));
    EXPECT_EQ(TokensOf(c[i].events()), r->tokens);
    std::string streamed;
    for (const auto& e : c[i].events()) streamed += e.text;
    EXPECT_EQ(streamed, r->text);
    EXPECT_GE(r->ttft_seconds, r->queue_seconds);
    EXPECT_GE(r->total_seconds, r->ttft_seconds);
    EXPECT_EQ(c[i].done_calls(), 1);
  }
  EXPECT_EQ(sched_->QueueDepth("tiny"), 0);
  // One request alone gives the same tokens as well.
  Collector solo;
  GenerationRequest r = Greedy("tiny", prompts[2], 12 + 8);
  solo.Attach(r);
  ASSERT_TRUE(sched_->Submit(std::move(r)).ok());
  auto s = solo.Wait();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->tokens, want[2].tokens);
  const std::string text = metrics_.RenderText();
  EXPECT_NE(text.find("qwenmux_requests_completed_total{model=\"tiny\"} 5"), std::string::npos) << text;
  EXPECT_NE(text.find("qwenmux_time_to_first_token_seconds_count{model=\"tiny\"} 5"), std::string::npos);
  EXPECT_NE(text.find("qwenmux_generated_tokens_total{model=\"tiny\"}"), std::string::npos);
}

TEST_F(SchedulerConcurrent, SequencesJoinAndLeaveARunningBatch) {
  const auto prompts = Prompts();
  // A long request; a short one joins after its 3rd token and leaves early; another joins after
  // the 10th token; a fourth joins after the short one has left. Each equals Generate's output.
  std::vector<Collector> c(4);
  std::vector<GenerationRequest> reqs;
  reqs.push_back(Greedy("tiny", prompts[0], 40));
  reqs.push_back(Greedy("tiny", prompts[1], 5));
  reqs.push_back(Greedy("tiny", prompts[2], 20));
  reqs.push_back(Greedy("tiny", prompts[3], 10));
  reqs[1].options.stop = {"zzzz-never"};
  std::vector<engine::GenerateResult> want;
  for (const auto& r : reqs) want.push_back(Reference(r));
  std::vector<GenerationRequest> later;
  for (int i = 1; i < 4; ++i) c[i].Attach(reqs[i]);
  for (int i = 1; i < 4; ++i) later.push_back(std::move(reqs[i]));
  std::atomic<int> submit_errors{0};
  bool fourth_submitted = false;  // only touched on the worker thread
  Collector& short_one = c[1];
  // Submit from inside the long request's callback: on the worker thread, between steps.
  c[0].Attach(reqs[0], [&](int n) {
    auto submit = [&](GenerationRequest& r) {
      if (!sched_->Submit(std::move(r)).ok()) ++submit_errors;
    };
    if (n == 3) submit(later[0]);
    if (n == 10) submit(later[1]);
    if (n > 10 && short_one.done() && !fourth_submitted) {
      fourth_submitted = true;
      submit(later[2]);
    }
    return true;
  });
  ASSERT_TRUE(sched_->Submit(std::move(reqs[0])).ok());
  for (int i = 0; i < 4; ++i) {
    auto r = c[i].Wait();
    ASSERT_TRUE(r.ok()) << i << ": " << r.status().ToString();
    EXPECT_EQ(r->tokens, want[i].tokens) << "request " << i;
    EXPECT_EQ(r->finish_reason, want[i].finish_reason);
  }
  EXPECT_EQ(submit_errors.load(), 0);
  // The short one really ran while the long one was running (it finished first).
  EXPECT_EQ(c[0].token_count(), 40);
}

TEST_F(SchedulerConcurrent, KeepAliveZeroOfARequestJoiningARunningBatchUnloadsTheModel) {
  // The lease is taken for the first request (default keep-alive); the second, keep_alive 0,
  // joins the running batch from inside the first one's callback. When the batch drains the
  // model unloads: the latest request's keep-alive wins, as it would at Acquire.
  const auto prompts = Prompts();
  Collector first, second;
  GenerationRequest a = Greedy("tiny", prompts[0], 12), b = Greedy("tiny", prompts[1], 4);
  b.keep_alive = KeepAlive(0);
  second.Attach(b);
  std::atomic<int> submit_errors{0};
  first.Attach(a, [&](int n) {
    if (n == 2 && !sched_->Submit(std::move(b)).ok()) ++submit_errors;
    return true;
  });
  ASSERT_TRUE(sched_->Submit(std::move(a)).ok());
  ASSERT_TRUE(first.Wait().ok());
  ASSERT_TRUE(second.Wait().ok());
  EXPECT_EQ(submit_errors.load(), 0);
  EXPECT_EQ(second.token_count(), 4);
  EXPECT_EQ(first.token_count(), 12);  // the first was still running when the second joined
  // The release follows on_done on the worker; wait for it (no timing bar).
  bool unloaded = false;
  for (int i = 0; i < 3000 && !unloaded; ++i) {
    unloaded = manager_->Snapshot().empty();
    if (!unloaded) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(unloaded);
}

TEST_F(SchedulerConcurrent, CancelTakesEffectWithinOneStep) {
  const auto prompts = Prompts();
  // Two requests share the batch; one is cancelled by the test thread after 5 tokens.
  Collector victim, other;
  GenerationRequest a = Greedy("tiny", prompts[0], 200), b = Greedy("tiny", prompts[1], 30);
  const auto want_b = Reference(b);
  std::atomic<int> at_cancel{-1};
  victim.Attach(a);
  other.Attach(b);
  auto h = sched_->Submit(std::move(a));
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(sched_->Submit(std::move(b)).ok());
  ASSERT_TRUE(victim.WaitTokens(5));
  at_cancel = victim.token_count();
  (*h)->Cancel();
  auto r = victim.Wait();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->finish_reason, "cancelled");
  // At most the token of the step that was running when Cancel() was called.
  EXPECT_LE(victim.token_count() - at_cancel.load(), 1);
  EXPECT_LT(victim.token_count(), 200);
  (*h)->Cancel();  // idempotent, after completion too
  auto rb = other.Wait();
  ASSERT_TRUE(rb.ok());
  EXPECT_EQ(rb->tokens, want_b.tokens);
  EXPECT_EQ(victim.done_calls(), 1);

  // A callback that returns false stops its sequence at once.
  Collector stopper;
  GenerationRequest c = Greedy("tiny", prompts[2], 100);
  stopper.Attach(c, [](int n) { return n < 3; });
  ASSERT_TRUE(sched_->Submit(std::move(c)).ok());
  auto rc = stopper.Wait();
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(rc->finish_reason, "cancelled");
  EXPECT_EQ(stopper.token_count(), 3);
  EXPECT_NE(metrics_.RenderText().find("qwenmux_requests_failed_total{model=\"tiny\",reason=\"cancelled\"} 2"), std::string::npos);
}

TEST_F(SchedulerConcurrent, CancelWhileQueued) {
  Gate gate;
  Collector first, queued;
  GenerationRequest a = Greedy("tiny1", Encode("Hello"), 4), b = Greedy("tiny1", Encode("World"), 4);
  first.Attach(a, [&](int n) {
    if (n == 1) gate.Enter();
    return true;
  });
  queued.Attach(b);
  ASSERT_TRUE(sched_->Submit(std::move(a)).ok());
  ASSERT_TRUE(gate.WaitEntered());
  auto h = sched_->Submit(std::move(b));
  ASSERT_TRUE(h.ok());
  (*h)->Cancel();
  gate.Open();
  auto r = queued.Wait();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->finish_reason, "cancelled");
  EXPECT_TRUE(r->tokens.empty());
  EXPECT_EQ(queued.token_count(), 0);
  ASSERT_TRUE(first.Wait().ok());
}

TEST_F(SchedulerConcurrent, FullQueueIsUnavailableWithRetryHintAndLosesNothing) {
  Start(2);
  Gate gate;
  std::vector<Collector> c(4);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 4; ++i) reqs.push_back(Greedy("tiny1", Encode("request " + std::to_string(i)), 3));
  c[0].Attach(reqs[0], [&](int n) {
    if (n == 1) gate.Enter();
    return true;
  });
  for (int i = 1; i < 4; ++i) c[i].Attach(reqs[i]);
  ASSERT_TRUE(sched_->Submit(std::move(reqs[0])).ok());
  ASSERT_TRUE(gate.WaitEntered());
  ASSERT_TRUE(sched_->Submit(std::move(reqs[1])).ok());
  ASSERT_TRUE(sched_->Submit(std::move(reqs[2])).ok());
  auto full = sched_->Submit(std::move(reqs[3]));
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(full.status().message().find("retry after 2 s"), std::string::npos) << full.status().message();
  EXPECT_EQ(sched_->retry_after(), std::chrono::seconds(2));
  auto q = sched_->Queues();
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].model, "tiny1");
  EXPECT_EQ(q[0].waiting, 2);
  EXPECT_EQ(q[0].running, 1);
  gate.Open();
  for (int i = 0; i < 3; ++i) {
    auto r = c[i].Wait();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->tokens.size(), 3u);
  }
  EXPECT_FALSE(c[3].done());  // a rejected request gets no callback
  EXPECT_NE(metrics_.RenderText().find("reason=\"queue_full\"} 1"), std::string::npos);
}

TEST_F(SchedulerConcurrent, FailedLoadReachesEveryRequestAndTheSchedulerStaysHealthy) {
  const std::string corrupt = ::testing::TempDir() + "/sched-corrupt.gguf";
  {
    std::ofstream f(corrupt, std::ios::binary);
    f << "GGUF this is not a model";
  }
  ModelSpec missing = BatchSpec("missing", 2);
  missing.path = ::testing::TempDir() + "/no-such-model.gguf";
  ModelSpec bad = BatchSpec("corrupt", 2);
  bad.path = corrupt;
  ASSERT_TRUE(manager_->Register(missing).ok());
  ASSERT_TRUE(manager_->Register(bad).ok());
  std::vector<Collector> c(6);
  for (int i = 0; i < 6; ++i) {
    GenerationRequest r = Greedy(i % 2 ? "missing" : "corrupt", Encode("hi"), 4);
    c[i].Attach(r);
    ASSERT_TRUE(sched_->Submit(std::move(r)).ok());
  }
  for (int i = 0; i < 6; ++i) {
    auto r = c[i].Wait();
    EXPECT_FALSE(r.ok());
    EXPECT_NE(r.status().message(), "");
    EXPECT_EQ(c[i].done_calls(), 1);
  }
  EXPECT_EQ(sched_->QueueDepth("missing"), 0);
  // The other models still serve, and the failed one is tried again on the next request.
  Collector ok;
  GenerationRequest r = Greedy("tiny", Encode("hi"), 4);
  ok.Attach(r);
  ASSERT_TRUE(sched_->Submit(std::move(r)).ok());
  EXPECT_TRUE(ok.Wait().ok());
  Collector again;
  GenerationRequest r2 = Greedy("missing", Encode("hi"), 4);
  again.Attach(r2);
  ASSERT_TRUE(sched_->Submit(std::move(r2)).ok());
  EXPECT_FALSE(again.Wait().ok());
  EXPECT_GE(manager_->Stats("missing").load_failures, 2u);
  EXPECT_NE(metrics_.RenderText().find("reason=\"load\""), std::string::npos);
}

TEST_F(SchedulerConcurrent, AdmissionIsFifo) {
  // One slot: requests run strictly in arrival order. Two slots: they are admitted in order.
  for (const char* model : {"tiny1", "tiny"}) {
    Gate gate;
    std::mutex mu;
    std::vector<int> first_token_order;
    constexpr int kN = 7;
    std::vector<Collector> c(kN);
    std::vector<GenerationRequest> reqs;
    for (int i = 0; i < kN; ++i) {
      reqs.push_back(Greedy(model, Encode("request " + std::to_string(i)), 6));
      c[i].Attach(reqs.back(), [&, i](int n) {
        if (n == 1) {
          std::lock_guard lk(mu);
          first_token_order.push_back(i);
        }
        if (i == 0 && n == 1) gate.Enter();
        return true;
      });
    }
    ASSERT_TRUE(sched_->Submit(std::move(reqs[0])).ok());
    ASSERT_TRUE(gate.WaitEntered());
    for (int i = 1; i < kN; ++i) ASSERT_TRUE(sched_->Submit(std::move(reqs[i])).ok());
    gate.Open();
    for (int i = 0; i < kN; ++i) ASSERT_TRUE(c[i].Wait().ok());
    std::vector<int> sorted = first_token_order;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(first_token_order, sorted) << model;
    EXPECT_EQ(first_token_order.size(), static_cast<size_t>(kN));
  }
}

TEST_F(SchedulerConcurrent, ShutdownEndsEveryRequestOnce) {
  constexpr int kN = 8;
  std::vector<Collector> c(kN);
  for (int i = 0; i < kN; ++i) {
    GenerationRequest r = Greedy(i % 2 ? "tiny" : "tiny1", Encode("request " + std::to_string(i)), 200);
    c[i].Attach(r);
    ASSERT_TRUE(sched_->Submit(std::move(r)).ok());
  }
  ASSERT_TRUE(c[0].WaitTokens(2));
  sched_->Shutdown();
  for (int i = 0; i < kN; ++i) {
    EXPECT_TRUE(c[i].done()) << i;  // Shutdown returns after every on_done
    auto r = c[i].Wait();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->finish_reason, "cancelled");
    EXPECT_EQ(c[i].done_calls(), 1);
  }
  auto after = sched_->Submit(Greedy("tiny", Encode("late"), 2));
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.status().code(), StatusCode::kUnavailable);
  sched_->Shutdown();  // idempotent
}

// Forces a fixed token sequence, then says Done.
class ForceTokens : public engine::LogitProcessor {
 public:
  explicit ForceTokens(std::vector<int32_t> seq) : seq_(std::move(seq)) {}
  Status Apply(std::span<float> logits) override {
    if (next_ >= seq_.size()) return Error(StatusCode::kInternal, "force: nothing left to allow");
    const float keep = logits[seq_[next_]];
    std::fill(logits.begin(), logits.end(), -INFINITY);
    logits[seq_[next_]] = keep;
    return Status::Ok();
  }
  Status Accept(int32_t token) override {
    if (next_ >= seq_.size() || token != seq_[next_]) return Error(StatusCode::kInvalidArgument, "force: token {} not allowed", token);
    ++next_;
    return Status::Ok();
  }
  bool Done() const override { return next_ == seq_.size(); }

 private:
  std::vector<int32_t> seq_;
  size_t next_ = 0;
};

TEST_F(SchedulerConcurrent, LogitProcessorIsHonouredInsideABatch) {
  const std::vector<int32_t> forced = Encode("{\"answer\": 42}");
  std::vector<Collector> c(3);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 3; ++i) reqs.push_back(Greedy("tiny", Encode("Reply in JSON " + std::to_string(i)), 50));
  reqs[1].processor = std::make_unique<ForceTokens>(forced);
  ForceTokens not_owned(forced);  // through GenerateOptions::processor (the caller keeps it)
  reqs[2].options.processor = &not_owned;
  reqs[2].options.sampler.temperature = 1.0f;  // sampling cannot escape the mask either
  reqs[2].options.sampler.top_k = 0;
  reqs[2].options.sampler.top_p = 1.0f;
  const auto want0 = Reference(reqs[0]);
  for (int i = 0; i < 3; ++i) {
    c[i].Attach(reqs[i]);
    ASSERT_TRUE(sched_->Submit(std::move(reqs[i])).ok());
  }
  for (int i = 1; i < 3; ++i) {
    auto r = c[i].Wait();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->tokens, forced);
    EXPECT_EQ(r->text, "{\"answer\": 42}");
    EXPECT_EQ(r->finish_reason, "stop");
  }
  auto r0 = c[0].Wait();
  ASSERT_TRUE(r0.ok());
  EXPECT_EQ(r0->tokens, want0.tokens);

  // A processor error fails the request with that error.
  Collector failing;
  GenerationRequest bad = Greedy("tiny", Encode("x"), 10);
  bad.processor = std::make_unique<ForceTokens>(std::vector<int32_t>{});
  failing.Attach(bad);
  ASSERT_TRUE(sched_->Submit(std::move(bad)).ok());
  auto rf = failing.Wait();
  ASSERT_FALSE(rf.ok());
  EXPECT_NE(rf.status().message().find("nothing left"), std::string::npos);
}

TEST_F(SchedulerConcurrent, LogprobsAreFiniteSortedAndMatchTheGreedyToken) {
  Collector c;
  GenerationRequest r = Greedy("tiny", Encode("The capital of France is"), 8);
  r.logprobs = true;
  r.top_logprobs = 5;
  c.Attach(r);
  ASSERT_TRUE(sched_->Submit(std::move(r)).ok());
  ASSERT_TRUE(c.Wait().ok());
  const auto ev = c.events();
  ASSERT_EQ(ev.size(), 8u);
  for (const auto& e : ev) {
    EXPECT_TRUE(std::isfinite(e.logprob));
    EXPECT_LE(e.logprob, 0.0f);
    ASSERT_EQ(e.top.size(), 5u);
    for (size_t i = 1; i < e.top.size(); ++i) EXPECT_GE(e.top[i - 1].logprob, e.top[i].logprob);
    for (const auto& t : e.top) EXPECT_TRUE(std::isfinite(t.logprob) && t.logprob <= 0);
    EXPECT_EQ(e.top[0].token, e.token);  // greedy: the best one
    EXPECT_FLOAT_EQ(e.top[0].logprob, e.logprob);
    double mass = 0;
    for (const auto& t : e.top) mass += std::exp(t.logprob);
    EXPECT_LE(mass, 1.0 + 1e-4);
  }
}

TEST_F(SchedulerConcurrent, StopStringsMatchGenerate) {
  GenerationRequest probe = Greedy("tiny", Encode("Once upon a time"), 24);
  const auto full = Reference(probe);
  ASSERT_GT(full.text.size(), 12u);
  GenerationRequest r = Greedy("tiny", Encode("Once upon a time"), 24);
  r.options.stop = {full.text.substr(full.text.size() / 2, 3)};
  const auto want = Reference(r);
  ASSERT_EQ(want.finish_reason, "stop");
  Collector c;
  c.Attach(r);
  ASSERT_TRUE(sched_->Submit(std::move(r)).ok());
  auto got = c.Wait();
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->text, want.text);
  EXPECT_EQ(got->tokens, want.tokens);
  EXPECT_EQ(got->finish_reason, "stop");
  std::string streamed;
  for (const auto& e : c.events()) streamed += e.text;
  EXPECT_EQ(streamed, want.text);
}

TEST_F(SchedulerConcurrent, EmbedAndRerankMatchTheModel) {
  const std::vector<std::vector<int32_t>> inputs = {Encode("a cat"), Encode("a dog on a mat")};
  auto want_e = Ref().Embed(inputs, 64);
  auto want_r = Ref().RerankScores(inputs);
  ASSERT_TRUE(want_e.ok() && want_r.ok());
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Result<std::vector<std::vector<float>>>> got_e;
  std::optional<Result<std::vector<float>>> got_r;
  // A generation runs at the same time; the embedding waits for the batch to drain.
  Collector gen;
  GenerationRequest g = Greedy("tiny", Encode("Hello"), 10);
  const auto want_g = Reference(g);
  gen.Attach(g);
  ASSERT_TRUE(sched_->Submit(std::move(g)).ok());
  EmbedRequest e;
  e.model = "tiny";
  e.inputs = inputs;
  e.dims = 64;
  e.on_done = [&](Result<std::vector<std::vector<float>>> r) {
    std::lock_guard lk(mu);
    got_e.emplace(std::move(r));
    cv.notify_all();
  };
  RerankRequest rr;
  rr.model = "tiny";
  rr.inputs = inputs;
  rr.on_done = [&](Result<std::vector<float>> r) {
    std::lock_guard lk(mu);
    got_r.emplace(std::move(r));
    cv.notify_all();
  };
  ASSERT_TRUE(sched_->Submit(std::move(e)).ok());
  ASSERT_TRUE(sched_->Submit(std::move(rr)).ok());
  {
    std::unique_lock lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, std::chrono::seconds(60), [&] { return got_e && got_r; }));
  }
  ASSERT_TRUE(got_e->ok() && got_r->ok());
  ASSERT_EQ((*got_e)->size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_EQ((**got_e)[i].size(), 64u);
    for (size_t k = 0; k < 64; ++k) EXPECT_FLOAT_EQ((**got_e)[i][k], (*want_e)[i][k]);
    EXPECT_FLOAT_EQ((**got_r)[i], (*want_r)[i]);
  }
  auto rg = gen.Wait();
  ASSERT_TRUE(rg.ok());
  EXPECT_EQ(rg->tokens, want_g.tokens);
}

TEST_F(SchedulerConcurrent, BadRequestsAreRejected) {
  auto unknown = sched_->Submit(Greedy("nope", Encode("x"), 2));
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  auto empty = sched_->Submit(Greedy("tiny", {}, 2));
  EXPECT_EQ(empty.status().code(), StatusCode::kInvalidArgument);
  GenerationRequest r = Greedy("tiny", Encode("x"), 2);
  r.top_logprobs = 21;
  EXPECT_EQ(sched_->Submit(std::move(r)).status().code(), StatusCode::kInvalidArgument);
  GenerationRequest neg = Greedy("tiny", Encode("x"), -1);
  EXPECT_EQ(sched_->Submit(std::move(neg)).status().code(), StatusCode::kInvalidArgument);
  GenerationRequest temp = Greedy("tiny", Encode("x"), 2);
  temp.options.sampler.temperature = -1;
  EXPECT_EQ(sched_->Submit(std::move(temp)).status().code(), StatusCode::kInvalidArgument);
  EmbedRequest e;
  e.model = "tiny";
  EXPECT_EQ(sched_->Submit(std::move(e)).status().code(), StatusCode::kInvalidArgument);
  // Checked against the model when admitted: on_done gets the error.
  Collector bad_token, too_long;
  GenerationRequest bt = Greedy("tiny", {1, 2, 99999999}, 2);
  bad_token.Attach(bt);
  ASSERT_TRUE(sched_->Submit(std::move(bt)).ok());
  GenerationRequest tl = Greedy("tiny", std::vector<int32_t>(300, 100), 2);
  too_long.Attach(tl);
  ASSERT_TRUE(sched_->Submit(std::move(tl)).ok());
  auto rb = bad_token.Wait();
  ASSERT_FALSE(rb.ok());
  EXPECT_EQ(rb.status().code(), StatusCode::kInvalidArgument);
  auto rt = too_long.Wait();
  ASSERT_FALSE(rt.ok());
  EXPECT_EQ(rt.status().code(), StatusCode::kOutOfRange);
  // max_tokens 0: the prompt is checked and nothing is generated.
  Collector zero;
  GenerationRequest z = Greedy("tiny", Encode("x"), 0);
  zero.Attach(z);
  ASSERT_TRUE(sched_->Submit(std::move(z)).ok());
  auto rz = zero.Wait();
  ASSERT_TRUE(rz.ok());
  EXPECT_TRUE(rz->tokens.empty());
  EXPECT_EQ(rz->finish_reason, "length");
}

}  // namespace
}  // namespace qwenmux::orchestrator
