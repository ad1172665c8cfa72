// Internal to the scheduler: one generation request while it runs in a model's batch (its job,
// the result it builds from the engine's events, its metrics), and the queued request types.
// The engine's batch (engine/batch.h) does the stepping, sampling and stop rules. Not part of
// the public API.
//
// Thread-safety: a Sequence is used by its model's worker thread only; Handle::Cancel() may be
// called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/batch.h"
#include "engine/engine.h"
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

class Sequence {
 public:
  // `job` is a generation job whose prompt was checked against the model.
  Sequence(std::unique_ptr<Job> job, const std::string& served_by, bool degraded, Clock::time_point admitted);

  // What the engine's batch runs for this request (the prompt, options and processor; the
  // processor moves to the engine). Call once.
  engine::SequenceRequest EngineRequest();

  // Takes one event of the engine's step: the token into the result and the metrics, the piece
  // to the streaming callback, the end. Returns false when the callback cancelled the request
  // (the sequence is then finished with "cancelled" and must leave the engine's batch).
  bool OnEvent(engine::SequenceEvent& ev, Metrics* metrics, const std::string& model_label);

  Job& job() { return *job_; }
  // The request's adapter lease: held until the sequence is destroyed (after the engine's batch
  // has let go of the sequence).
  void HoldAdapter(AdapterLease lease) { adapter_ = std::move(lease); }
  bool finished() const { return finished_; }
  // Marks the sequence finished with `reason` (e.g. "cancelled") if it is not already.
  void End(std::string_view reason) {
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
  AdapterLease adapter_;
  bool finished_ = false;
  std::string reason_ = "length";
  Status error_;
  GenerationResult result_;
  Clock::time_point last_token_;
};

// An embedding or rerank request in the running batch: each input is a prompt-only sequence of
// the engine's batch (SequenceOutput::kLastHidden / kLastLogits) that ends when its prompt has
// run, beside the generations' decode steps; the request completes when its last input has.
// Inputs are admitted as KV slots free up, in order.
class PromptJob {
 public:
  // `job` is an embed or rerank job; `model` (the lease's) must outlive this.
  PromptJob(std::unique_ptr<Job> job, const engine::Model& model);

  // Checks the request against the model and makes the inputs' prompts (Model::EmbedPrompt).
  // An error is the request's (Finish it with the error).
  Status Prepare();
  // Inputs not yet admitted into the batch.
  int32_t waiting() const { return static_cast<int32_t>(prompts_.size() - next_); }
  // The engine request of the next input (waiting() > 0) and its index.
  std::pair<size_t, engine::SequenceRequest> Next();
  // The row of input `input` (its last hidden state or logits): its embedding or score.
  Status OnRow(size_t input, std::span<const float> row);
  bool complete() const { return done_ == prompts_.size(); }
  bool cancelled() const { return job_->handle->cancelled(); }
  // Calls on_done (once): the vectors or scores when `status` is ok, else the error.
  void Finish(const Status& status);

 private:
  std::unique_ptr<Job> job_;
  const engine::Model& model_;
  std::vector<std::vector<int32_t>> prompts_;  // per input, as the engine runs it
  std::vector<std::vector<float>> vectors_;    // embeddings, per input
  std::vector<float> scores_;                  // rerank scores, per input
  size_t next_ = 0, done_ = 0;
};

}  // namespace qwenmux::orchestrator::internal
