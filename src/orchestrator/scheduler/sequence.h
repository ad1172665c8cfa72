// Internal to the scheduler: one generation request while it runs in a model's batch (its KV
// slot, prompt progress, sampler, processor, text stream and result), and the queued request
// types. Not part of the public API.
//
// Thread-safety: a Sequence is used by its model's worker thread only; Handle::Cancel() may be
// called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/sampler.h"
#include "engine/text_stream.h"
#include "orchestrator/metrics/metrics.h"
#include "orchestrator/scheduler/scheduler.h"

namespace qwenmux::orchestrator::internal {

using Clock = std::chrono::steady_clock;

class Handle : public RequestHandle {
 public:
  explicit Handle(std::function<void()> wake) : wake_(std::move(wake)) {}
  void Cancel() override {
    if (!cancelled_.exchange(true) && wake_) wake_();
  }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> cancelled_{false};
  std::function<void()> wake_;
};

// A queued request of any kind.
struct Job {
  enum class Kind { kGenerate, kEmbed, kRerank, kExclusive } kind = Kind::kGenerate;
  GenerationRequest gen;
  EmbedRequest embed;
  RerankRequest rerank;
  ExclusiveRequest exclusive;
  std::shared_ptr<Handle> handle;
  Clock::time_point submitted;

  const std::optional<KeepAlive>& keep_alive() const {
    switch (kind) {
      case Kind::kGenerate: return gen.keep_alive;
      case Kind::kEmbed: return embed.keep_alive;
      case Kind::kRerank: return rerank.keep_alive;
      case Kind::kExclusive: break;
    }
    return exclusive.keep_alive;
  }
  // Calls on_done with `status` (not ok).
  void Fail(const Status& status);
};

// Top `k` (token, logprob) of a row, best first (ties: lower id first); `lse` is the row's
// log-sum-exp.
std::vector<TokenLogprob> TopLogprobs(std::span<const float> row, int32_t k, float lse);
// log(sum(exp(row))) over the finite entries (-inf when none).
float LogSumExp(std::span<const float> row);

class Sequence {
 public:
  // `job` is a generation job whose prompt was checked against the model.
  Sequence(std::unique_ptr<Job> job, engine::Model& model, int32_t slot, const std::string& served_by,
           bool degraded, Clock::time_point admitted);

  int32_t slot() const { return slot_; }
  bool cancelled() const { return job_->handle->cancelled(); }
  bool prefilling() const { return prompt_done_ < prompt().size(); }
  const std::vector<int32_t>& prompt() const { return job_->gen.prompt; }
  size_t prompt_done() const { return prompt_done_; }
  void set_prompt_done(size_t n) { prompt_done_ = n; }
  int32_t next_token() const { return next_token_; }
  bool finished() const { return finished_; }

  // The logits row of this sequence's last position (after a forward). Samples a token, streams
  // it, and decides whether the sequence ends; after an end (finished() true) Complete() must be
  // called. Returns how many tokens were generated (0 or 1).
  int32_t OnLogits(std::span<float> row, Metrics* metrics, const std::string& model_label);

  // Marks the sequence finished with `reason` (e.g. "cancelled") if it is not already.
  void End(const char* reason) {
    if (!finished_) {
      finished_ = true;
      reason_ = reason;
    }
  }
  // Fails the sequence with an error (reported by Complete()).
  void Abort(Status status) {
    finished_ = true;
    error_ = std::move(status);
  }
  // Calls on_done (once) with the result or the error; updates the request metrics.
  void Complete(Metrics* metrics, const std::string& model_label);

 private:
  std::unique_ptr<Job> job_;
  engine::Model& model_;
  int32_t slot_;
  size_t prompt_done_ = 0;
  int32_t next_token_ = -1;
  bool finished_ = false;
  const char* reason_ = "length";
  Status error_;
  engine::Sampler sampler_;
  engine::TextStream stream_;
  std::vector<int32_t> history_;
  std::vector<float> saved_row_;  // logits before sampling, when logprobs are asked for
  std::string piece_, tail_;
  GenerationResult result_;
  Clock::time_point last_token_;
};

}  // namespace qwenmux::orchestrator::internal
