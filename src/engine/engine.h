// The inference engine's public C++ API: load a Qwen3 GGUF model, run batches, generate text,
// embed, and score with a reranker.
//
// Thread-safety: a Model is used by one thread at a time (the scheduler serialises calls); its
// work fans out over the Model's own ThreadPool. The weights stay in the read-only memory map.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "base/thread_pool.h"
#include "engine/logit_processor.h"
#include "engine/sampler.h"
#include "gguf/gguf.h"
#include "model/config.h"
#include "runtime/backend.h"
#include "runtime/lora.h"
#include "runtime/weights.h"
#include "tokenizer/tokenizer.h"

namespace qwenmux::engine {

class Batch;  // engine/batch.h: a model's running sequences and the one step that serves them

struct LoadOptions {
  int32_t n_ctx = 4096;     // KV-cache positions per sequence (clipped to the training context)
  int32_t n_seq = 1;        // sequences that can share a batch
  int32_t n_batch = 512;    // prompt tokens per forward call (prefill chunk)
  size_t n_threads = 0;     // 0: all hardware threads
  runtime::DeviceChoice device = runtime::DeviceChoice::kAuto;  // cpu, cuda, or auto (CUDA if usable)
  int device_index = 0;     // which GPU when the device is CUDA
  // Where a step's draws need only each row's k largest logits (Sampler::CanSampleTop), the
  // backend returns those instead of whole rows (Backend::RunTop): kAuto where it selects them
  // on the device (CUDA), kOn on every backend (the CPU selects on the host: tests), kOff never.
  enum class TopLogits { kAuto, kOn, kOff } top_logits = TopLogits::kAuto;
};

struct GenerateOptions {
  SamplerOptions sampler;
  int32_t max_tokens = 256;
  std::vector<std::string> stop;  // stop strings (not included in the output)
  bool stop_on_eos = true;        // <|im_end|> and <|endoftext|>
  // Constrained decoding (structured/structured.h): Apply before each draw, Accept after; the
  // generation ends with "stop" once it reports Done(). Not owned; one per sequence.
  LogitProcessor* processor = nullptr;
  // A LoRA adapter (Model::LoadAdapter's id; -1: none) and the user scale on its alpha / r.
  int32_t adapter = -1;
  float adapter_scale = 1.0f;
};

struct GenerateResult {
  std::vector<int32_t> tokens;
  std::string text;
  std::string finish_reason;  // "stop" or "length"
  int32_t prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// Streaming callback: a piece of text made of complete UTF-8 characters; return false to cancel.
using TokenCallback = std::function<bool(std::string_view text)>;

// Per prompt of Model::ScoreContinuations.
struct ScoreOutput {
  Status status;                 // per prompt
  std::vector<double> logprobs;  // per continuation
};

class Model {
 public:
  static Result<std::unique_ptr<Model>> Load(const std::string& path, const LoadOptions& options = {});

  const model::ModelConfig& config() const { return config_; }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  const gguf::File& file() const { return file_; }
  const LoadOptions& options() const { return options_; }
  ThreadPool& pool() { return *pool_; }
  // Where the model runs (device, Describe(), memory) for callers that report placement.
  const runtime::Backend& backend() const { return *backend_; }
  // Why `auto` chose the CPU ("" when the device asked for, or preferred, was used).
  const std::string& backend_note() const { return backend_note_; }
  int32_t n_ctx() const { return backend_->n_ctx(); }  // KV positions per sequence
  int32_t n_seq() const { return backend_->n_seq(); }  // KV sequences
  // Positions of `seq` in the KV cache.
  int32_t length(int32_t seq) const { return backend_->length(seq); }

  // Loads a LoRA adapter (a GGUF adapter file or a PEFT directory, engine/lora.h), checked
  // against this model, and returns its id for SequenceRequest::adapter / GenerateOptions::adapter
  // / BatchEntry::lora (through adapter()). Ids are never reused: an unloaded adapter's id stays
  // empty for the model's lifetime, so an id a sequence holds never names another adapter.
  // The adapter table (load, unload, lookup, use counts) may be used from any thread; reading
  // and binding the file runs outside its lock.
  Result<int32_t> LoadAdapter(const std::string& path_or_dir);
  // Unloads adapter `id` and frees its memory. Refused (kUnavailable) while an engine
  // batch holds a sequence that uses it (engine::Batch counts its sequences in); kNotFound for
  // an id that is not loaded.
  Status UnloadAdapter(int32_t id);
  // Ids issued so far (loaded and unloaded ones).
  int32_t n_adapters() const {
    std::lock_guard lk(adapters_mu_);
    return static_cast<int32_t>(adapters_.size());
  }
  // nullptr for an id that is not a loaded adapter.
  const runtime::LoraAdapter* adapter(int32_t id) const {
    std::lock_guard lk(adapters_mu_);
    return id >= 0 && id < static_cast<int32_t>(adapters_.size()) ? adapters_[static_cast<size_t>(id)].get() : nullptr;
  }
  // Running sequences (of engine batches) that use adapter `id`.
  int32_t adapter_users(int32_t id) const;
  // Bytes held by the loaded adapters (A and B in f32).
  uint64_t adapter_bytes() const;

  // Low level: one batch through the model (see runtime::Backend::Run); KV lengths are not
  // committed. For benchmarks and reference checks: everything else runs through an
  // engine::Batch (engine/batch.h), which commits them.
  Status Forward(std::span<const runtime::BatchEntry> batch, float* logits, float* hidden);
  // The same with each output row's k largest logits only (Backend::RunTop), [n_out][k].
  Status ForwardTop(std::span<const runtime::BatchEntry> batch, int32_t k, runtime::TopLogit* top);
  // Whether steps should sample through ForwardTop (LoadOptions::top_logits and the backend).
  bool samples_from_top() const;

  // Feeds `tokens` to sequence `seq` from its current length, in chunks of n_batch; returns the
  // logits of the last token ([n_vocab]) in *last_logits if given, or all positions' logits
  // ([tokens.size(), n_vocab]) in *all_logits if given.
  Status Prefill(int32_t seq, std::span<const int32_t> tokens, std::vector<float>* last_logits,
                 std::vector<float>* all_logits = nullptr);
  void ResetSequence(int32_t seq) { backend_->set_length(seq, 0); }
  // <|im_end|> or <|endoftext|>: the tokens that end a generation when stop_on_eos is set.
  bool IsEndOfGeneration(int32_t token) const {
    return std::find(eos_ids_.begin(), eos_ids_.end(), token) != eos_ids_.end();
  }

  // Generates from a prompt on sequence `seq` (which is reset first) through the engine's batch
  // step (engine/batch.h).
  Result<GenerateResult> Generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                                  const TokenCallback& on_text = nullptr, int32_t seq = 0);

  // Qwen3-Embedding: last-token pooling of the final normed hidden state, L2-normalised, then
  // truncated to `dims` (0 = full) and re-normalised. Each input must end in <|endoftext|> (it
  // is appended when missing).
  Result<std::vector<std::vector<float>>> Embed(const std::vector<std::vector<int32_t>>& inputs, int32_t dims = 0);
  // Embed's pieces, for a caller that runs the prompts in its own batch (the scheduler joins them
  // to a running generation batch): `dims` checked against n_embd (kInvalidArgument); one input's
  // prompt (<|endoftext|> appended when missing); the embedding of the prompt's last hidden state
  // ([n_embd], SequenceOutput::kLastHidden). Embed is made of these.
  Status CheckEmbedDims(int32_t dims) const;
  std::vector<int32_t> EmbedPrompt(std::vector<int32_t> input) const;
  std::vector<float> PoolEmbedding(std::span<const float> last_hidden, int32_t dims) const;

  // Qwen3-Reranker: for each token sequence (already in the reranker prompt format), the
  // probability of "yes" = softmax([l_no, l_yes])[1] at the last position.
  Result<std::vector<float>> RerankScores(const std::vector<std::vector<int32_t>>& inputs);
  // RerankScores' piece: the score of one prompt's last-position logits ([n_vocab],
  // SequenceOutput::kLastLogits); kUnsupported when the vocabulary has no "yes"/"no" tokens.
  Result<float> RerankScore(std::span<const float> last_logits) const;

  // Tokenizes the Qwen3-Reranker prompt for (instruction, query, document).
  std::vector<int32_t> RerankPrompt(std::string_view instruction, std::string_view query, std::string_view document) const;

  // Teacher-forced log P(continuation | prompt) for every prompt and every continuation (score.cc):
  // each prompt is prefilled once (prompts share forward passes, one KV sequence each), every
  // continuation is fed after it and the sequence is cut back to the prompt. A prompt that does
  // not fit the context (with the longest continuation) fails alone. `tokens` (if not null) is
  // increased by the tokens run. `adapter` (>= 0): a LoRA adapter loaded into this model
  // (LoadAdapter), applied at `adapter_scale` to every forward of the scoring.
  Result<std::vector<ScoreOutput>> ScoreContinuations(const std::vector<std::vector<int32_t>>& prompts,
                                                      const std::vector<std::vector<int32_t>>& continuations,
                                                      int64_t* tokens = nullptr, int32_t adapter = -1,
                                                      float adapter_scale = 1.0f);

 private:
  friend class Batch;  // runs the backend and commits the KV lengths of the sequences it steps
  Model() = default;
  Status CheckPrompt(std::span<const int32_t> tokens, int32_t seq) const;
  // The ids of "yes" and "no" (the reranker's answer tokens); kUnsupported without them.
  Result<std::pair<int32_t, int32_t>> RerankTokens() const;
  // Runs whole prompts through an engine::Batch, up to n_seq of them sharing each step, and
  // writes each prompt's last-position logits ([n_vocab]) or else final-normed hidden state
  // ([n_embd]) in input order.
  Status RunPrompts(const std::vector<std::vector<int32_t>>& prompts, std::vector<float>* last_logits,
                    std::vector<float>* last_hidden);
  // score.cc: a prompt's check, and entries run in n_batch chunks with their KV lengths committed.
  Status CheckScorePrompt(const std::vector<int32_t>& tokens, size_t extra) const;
  Status RunEntries(const std::vector<runtime::BatchEntry>& entries, std::vector<float>* out);

  LoadOptions options_;
  gguf::File file_;
  model::ModelConfig config_;
  runtime::ModelWeights weights_;
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer_;  // shared by models with the same vocabulary
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<runtime::Backend> backend_;  // weights placement, KV cache, scratch, forward
  std::string backend_note_;
  std::vector<int32_t> eos_ids_;
  // Batch: a sequence of adapter `id` enters / leaves (id -1: none); Use returns the adapter
  // (nullptr: not loaded, nothing counted).
  const runtime::LoraAdapter* UseAdapter(int32_t id);
  void UnuseAdapter(int32_t id);

  mutable std::mutex adapters_mu_;  // guards adapters_ and adapter_users_
  std::vector<std::unique_ptr<runtime::LoraAdapter>> adapters_;  // by id; null once unloaded (ids never reused)
  std::vector<int32_t> adapter_users_;                           // by id: running sequences using it
};

}  // namespace qwenmux::engine
