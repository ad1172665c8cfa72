// The request scheduler: per-model queues in front of the model manager, continuous batching of
// the requests of one model, cancellation, overload errors.
//
// Contract
// - Submit() never blocks on inference: it validates, enqueues and returns a handle. Each model
//   (by the name the manager knows it by) has one worker that acquires the model from the
//   ModelManager while it has work (a load never blocks other models' workers) and releases the
//   lease when its queue is empty (so keep-alive/eviction apply between bursts).
// - Continuous batching: the worker keeps admission, queues, fairness and cancellation; the
//   stepping (batch building, sampling, stop rules, KV commit) is the engine's (engine/batch.h),
//   shared with Model::Generate and the pipelines.
//   Up to the model's n_seq (LoadOptions) sequences share each decode step;
//   a request joins the running batch between steps (its prompt is prefilled in n_batch chunks
//   interleaved with the others' decode steps) and leaves it when it finishes, is cancelled or
//   fails. Embedding and rerank requests join the same batch: each input is a prompt-only
//   sequence in a free KV slot whose pooled hidden state (embeddings) or last logits (rerank) is
//   taken when its prompt has run, beside the running generations' decode steps; the request
//   completes when its last input has. So an embedding does not wait for a long generation on its
//   model when the model has a free slot (n_seq >= 2; with one slot it waits for the slot). Inputs
//   are admitted as slots free up; requests behind a request whose inputs wait for slots wait too
//   (FIFO).
// - Queues are FIFO per model with a cap (SchedulerOptions::max_queue): a full queue makes
//   Submit() fail with kUnavailable and a retry hint (Scheduler::retry_after(), also in the
//   message). No starvation:
//   requests are admitted in arrival order; a running sequence is never pre-empted by a later one.
// - Cancellation: RequestHandle::Cancel() (or a callback returning false) stops the sequence
//   before its next decode step; on_done then gets finish_reason "cancelled" (also for a request
//   cancelled while queued, or by Shutdown()). An embed/rerank request cancelled while queued
//   gets kCancelled (an exclusive request too).
// - Errors after Submit() reach on_done: a failed model load (every request waiting for it),
//   a token id outside the vocabulary (kInvalidArgument), a prompt longer than the context
//   (kOutOfRange), a LogitProcessor error.
// - Callbacks run on the model's worker thread; they must be quick (hand data to the network
//   thread and return), must not throw, and must not call Shutdown() or destroy the Scheduler
//   (Submit() and Cancel() are fine). on_done is called exactly once per accepted request, last.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/engine.h"
#include "engine/logit_processor.h"
#include "orchestrator/manager/model_manager.h"
#include "orchestrator/metrics/metrics.h"

namespace qwenmux::orchestrator {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;  // log-softmax of the model's logits (after the processor's mask, before
                      // penalties/temperature)
};

// One step of output for a streaming client.
struct TokenEvent {
  std::string_view text;             // complete UTF-8 characters made available by this token
                                     // (may be empty: held back for a stop string or a partial
                                     // character)
  int32_t token = 0;
  float logprob = 0;                 // only when GenerationRequest::logprobs
  std::vector<TokenLogprob> top;     // top_logprobs alternatives, best first
};

struct GenerationResult {
  std::string model;                 // the model that served (a fallback when degraded)
  std::string text;                  // everything emitted (stop strings cut)
  std::vector<int32_t> tokens;
  std::string finish_reason;         // "stop", "length", "cancelled"
  int32_t prompt_tokens = 0, completion_tokens = 0;
  double queue_seconds = 0;          // submit -> admitted into the batch (includes a model load)
  double ttft_seconds = 0;           // submit -> first token
  double total_seconds = 0;
  bool degraded = false;             // served by a fallback of the requested model
};

struct GenerationRequest {
  std::string model;                 // a name the ModelManager knows (router already applied)
  std::vector<int32_t> prompt;       // tokens (chat template already rendered and encoded)
  engine::GenerateOptions options;   // sampler, max_tokens, stop strings, stop_on_eos
                                     // (options.adapter / adapter_scale are set by the worker
                                     // from the two fields below)
  // A LoRA adapter of `model` by name (ModelManager::RegisterAdapter; "" none): the worker leases
  // it (loading it on first use) when the request joins the batch and holds it until the request
  // ends; a load error or kResourceExhausted reaches on_done.
  std::string adapter;
  std::optional<float> adapter_scale;  // the request's lora_scale; unset: the adapter's configured scale
  std::optional<KeepAlive> keep_alive;
  bool logprobs = false;
  int32_t top_logprobs = 0;          // 0..20
  std::unique_ptr<engine::LogitProcessor> processor;  // optional constraint for this sequence
                                     // (else options.processor, not owned, if set)

  // Streaming; return false to cancel. May be empty.
  std::function<bool(const TokenEvent&)> on_token;
  // Called exactly once, last: the result or the error (load failure, bad prompt, ...).
  std::function<void(Result<GenerationResult>)> on_done;
};

struct EmbedRequest {
  std::string model;
  std::vector<std::vector<int32_t>> inputs;
  int32_t dims = 0;
  std::optional<KeepAlive> keep_alive;
  std::function<void(Result<std::vector<std::vector<float>>>)> on_done;
};

struct RerankRequest {
  std::string model;
  std::vector<std::vector<int32_t>> inputs;  // already in the reranker prompt format
  std::optional<KeepAlive> keep_alive;
  std::function<void(Result<std::vector<float>>)> on_done;
};

// Exclusive use of a model for a caller that runs it directly (the RAG pipeline's stages on a
// model the scheduler also serves, so that one instance serves both): served in FIFO order, once
// the running batch (generations, embeddings, reranking) has drained; the worker then lends the model to
// `run` on the worker's thread and waits until `run` returns (the model's other requests wait
// meanwhile). `run` gets the error instead when the model cannot load or the request is cancelled
// while queued; it is called exactly once.
struct ExclusiveRequest {
  std::string model;
  std::optional<KeepAlive> keep_alive;
  std::function<void(Result<engine::Model*>)> run;
};

class RequestHandle {
 public:
  virtual ~RequestHandle() = default;
  virtual void Cancel() = 0;  // idempotent; safe after completion
};

struct SchedulerOptions {
  int32_t max_queue = 64;            // waiting requests per model (not counting running ones)
  std::chrono::seconds retry_after{2};
  Metrics* metrics = nullptr;        // default Metrics::Global()
};

struct QueueInfo {
  std::string model;
  int32_t waiting = 0, running = 0;
};

class Scheduler {
 public:
  explicit Scheduler(ModelManager* manager, SchedulerOptions options = {});
  ~Scheduler();  // cancels everything and joins the workers (each on_done still runs)
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Errors: kNotFound (unknown model, or an adapter the model does not have: the message lists
  // its adapters), kInvalidArgument (empty prompt, bad options, a non-finite adapter scale),
  // kUnavailable (queue full; retry_after() says when to retry). On error no callback runs.
  Result<std::shared_ptr<RequestHandle>> Submit(GenerationRequest request);
  Result<std::shared_ptr<RequestHandle>> Submit(EmbedRequest request);
  Result<std::shared_ptr<RequestHandle>> Submit(RerankRequest request);
  Result<std::shared_ptr<RequestHandle>> Submit(ExclusiveRequest request);

  std::chrono::seconds retry_after() const { return options_.retry_after; }
  std::vector<QueueInfo> Queues() const;  // models with a worker, by name
  int32_t QueueDepth(const std::string& model) const;  // waiting + running

  // Cancels all queued and running requests and stops the workers (graceful shutdown).
  void Shutdown();

 private:
  struct Impl;
  SchedulerOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qwenmux::orchestrator
