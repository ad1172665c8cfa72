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
#include <string>
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

}  // namespace qwenmux::orchestrator::internal
