// The engine's batch: a model's running sequences and the one step that serves them all.
//
// A caller admits sequences (prompt tokens, sampling options, a logit processor, stop rules,
// what to produce) into free KV slots, then calls Step() until they finish. Each Step builds one
// batch (one decode token per generating sequence, then prompt chunks of the sequences still
// prefilling, in admission order, within n_batch tokens), runs it through the backend, commits
// the KV lengths, samples, and applies every stop rule in one place, in this order:
//   cancellation (before the step and again before sampling), max_tokens == 0, the logit
//   processor (Apply, sample, Accept), end-of-sequence tokens, stop strings, the processor's
//   Done(), a full context, max_tokens.
// It reports what happened as one event per sequence that produced output or finished.
// Model::Generate, the scheduler, the pipeline's generation, embeddings and reranking all run
// through it; nothing above the engine touches the KV cache.
//
// Lifetime and thread-safety: a Batch is made over a Model by whoever holds the model (the
// scheduler's worker for a lease, Model::Generate/Embed/RerankScores for one call, the pipeline
// for one stage) and used by one thread at a time. Batches over one model must not run
// sequences at the same time (they share its KV slots): the scheduler's worker runs embeddings
// and reranking as prompt-only sequences of its own Batch, and lends the model to an exclusive
// caller (which may make its own Batch) only while its Batch is empty. `cancelled`
// callbacks may read flags set from other threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "engine/engine.h"
#include "engine/logit_processor.h"
#include "engine/sampler.h"
#include "engine/text_stream.h"
#include "runtime/backend.h"

namespace qwenmux::engine {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;  // log-softmax of the model's logits (after the processor's mask, before
                      // penalties/temperature)
};

// What a sequence produces.
enum class SequenceOutput {
  kTokens,      // generated tokens and text (GenerateOptions apply)
  kLastLogits,  // the logits row of the prompt's last position ([n_vocab]), then it ends
  kLastHidden,  // the final-normed hidden state of the prompt's last position ([n_embd]), then it ends
};

struct SequenceRequest {
  std::vector<int32_t> prompt;
  GenerateOptions options;
  std::unique_ptr<LogitProcessor> processor;  // owned; used instead of options.processor when set
  bool logprobs = false;                      // the sampled token's logprob in each event
  int32_t top_logprobs = 0;                   // 0..20 alternatives in each event
  std::function<bool()> cancelled;            // polled before each step and before sampling
  SequenceOutput output = SequenceOutput::kTokens;
  int32_t slot = -1;     // the KV slot to use (-1: the lowest free one)
  // A LoRA adapter (Model::LoadAdapter's id; -1: none) and the user scale on its alpha / r. The
  // batch's rows of each adapter get its low-rank delta after every base projection; sequences of
  // different adapters (and of none) share the step. options.adapter/adapter_scale are not read
  // here (Model::Generate copies them into these).
  int32_t adapter = -1;
  float adapter_scale = 1.0f;
};

// One step's news about one sequence.
struct SequenceEvent {
  int32_t id = -1;  // Admit()'s id (the KV slot)
  bool has_token = false;
  int32_t token = 0;
  std::string text;  // complete UTF-8 characters made available by this token (may be empty)
  float logprob = 0;                // when SequenceRequest::logprobs
  std::vector<TokenLogprob> top;    // top_logprobs alternatives, best first
  std::vector<float> row;           // kLastLogits [n_vocab] / kLastHidden [n_embd]
  bool finished = false;            // the sequence left the batch (its slot is free)
  std::string_view finish_reason;   // when finished without error: "stop", "length", "cancelled"
  Status error;                     // when finished by an error (logit processor, detokenizer)
};

struct StepStats {
  int32_t n_prompt = 0;   // prompt tokens in the step's batch
  int32_t n_decode = 0;   // decode tokens in the step's batch
  int32_t generated = 0;  // tokens sampled (events with has_token)
  bool from_top = false;  // the draws read top lists (Backend::RunTop), not whole logits rows
  double forward_seconds = 0;
};

class Batch {
 public:
  // `model` must outlive the batch, and nothing else may run it meanwhile.
  explicit Batch(Model& model);
  ~Batch();
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  // Takes a free KV slot (reset to empty) for the sequence and returns its id. Errors
  // (kInvalidArgument/kOutOfRange, naming the problem): no free slot or the asked slot is taken
  // or out of range, an empty prompt, a token id outside the vocabulary, a prompt that does not
  // fit the context, bad sampler options, max_tokens < 0, top_logprobs outside 0..20, an adapter id
  // that is not loaded, a non-finite adapter scale.
  Result<int32_t> Admit(SequenceRequest request);
  // Drops a sequence (finished or not) and frees its slot; no event. Unknown ids are ignored.
  void Remove(int32_t id);
  // Drops every sequence.
  void Clear();

  // One step (see the top of this file). *events (cleared first) gets one event per sequence
  // that sampled a token, produced its row or finished, in batch order. Finished sequences have
  // left when Step returns. An error of the forward pass drops every sequence (their KV entries
  // are undefined) and is returned; the batch is empty and usable afterwards.
  Status Step(std::vector<SequenceEvent>* events, StepStats* stats = nullptr);

  int32_t active() const { return static_cast<int32_t>(order_.size()); }
  int32_t free_slots() const;
  bool prefilling(int32_t id) const;  // some of its prompt has not run yet
  // Positions of the sequence in its KV slot.
  int32_t length(int32_t id) const { return backend_.length(id); }
  int32_t n_ctx() const { return backend_.n_ctx(); }
  int32_t n_seq() const { return backend_.n_seq(); }

 private:
  struct Seq;
  // Samples from `row` (the sequence's logits at its last position) and applies the stop rules.
  void OnLogits(Seq& s, std::span<float> row, SequenceEvent* ev);
  // The same from the row's kTop largest logits (steps where every draw can use them).
  void OnTop(Seq& s, std::span<const runtime::TopLogit> top, SequenceEvent* ev);
  // Before a draw: cancellation and max_tokens 0 end the sequence (true: no draw).
  bool EndsBeforeDraw(Seq& s, SequenceEvent* ev);
  // After a draw of `tok`: end of generation, history, text, stop rules.
  void OnToken(Seq& s, int32_t tok, SequenceEvent* ev);
  // Every output row of this step is a token draw that the top lists serve.
  bool StepSamplesFromTop() const;
  void Finish(Seq& s, std::string_view reason, SequenceEvent* ev);
  void Fail(Seq& s, Status error, SequenceEvent* ev);

  Model& model_;
  runtime::Backend& backend_;
  const int32_t n_vocab_, n_embd_, n_batch_;
  std::vector<std::unique_ptr<Seq>> slots_;  // [n_seq]; null: free
  std::vector<int32_t> order_;               // active slots in admission order
  // Step scratch, kept between steps.
  std::vector<runtime::BatchEntry> entries_;  // [n_tokens] of the step
  std::vector<int32_t> owners_;               // [n_out] slot of each output row
  std::vector<float> logits_;                 // [n_out, n_vocab]
  std::vector<float> hidden_;                 // [n_out, n_embd]
  std::vector<runtime::TopLogit> top_;        // [n_out, kTop] (steps sampling from top lists)
  static constexpr int32_t kTop = runtime::kMaxTopLogits;
};

// log(sum(exp(row))) over the finite entries (-inf when none).
float LogSumExp(std::span<const float> row);
// Top `k` (token, logprob) of a row, best first (ties: lower id first); `lse` is the row's
// log-sum-exp.
std::vector<TokenLogprob> TopLogprobs(std::span<const float> row, int32_t k, float lse);

}  // namespace qwenmux::engine
