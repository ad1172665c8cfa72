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
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/thread_pool.h"
#include "engine/logit_processor.h"
#include "engine/sampler.h"
#include "gguf/gguf.h"
#include "model/config.h"
#include "runtime/backend.h"
#include "runtime/forward.h"
#include "runtime/kv_cache.h"
#include "runtime/weights.h"
#include "tokenizer/tokenizer.h"

namespace qwenmux::engine {

struct LoadOptions {
  int32_t n_ctx = 4096;     // KV-cache positions per sequence (clipped to the training context)
  int32_t n_seq = 1;        // sequences that can share a batch
  int32_t n_batch = 512;    // prompt tokens per forward call (prefill chunk)
  size_t n_threads = 0;     // 0: all hardware threads
  // Where the model runs (--device, a model's `device:`): cpu, cuda, or auto (cuda when a usable
  // GPU is present; runtime/device_select.h).
  runtime::DeviceChoice device = runtime::DeviceChoice::kAuto;
  int device_index = 0;     // which GPU (cuda:N)
};

struct GenerateOptions {
  SamplerOptions sampler;
  int32_t max_tokens = 256;
  std::vector<std::string> stop;  // stop strings (not included in the output)
  bool stop_on_eos = true;        // <|im_end|> and <|endoftext|>
  // Constrained decoding (structured/structured.h): Apply before each draw, Accept after; the
  // generation ends with "stop" once it reports Done(). Not owned; one per sequence.
  LogitProcessor* processor = nullptr;
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

class Model {
 public:
  static Result<std::unique_ptr<Model>> Load(const std::string& path, const LoadOptions& options = {});

  const model::ModelConfig& config() const { return config_; }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  const gguf::File& file() const { return file_; }
  const LoadOptions& options() const { return options_; }
  runtime::KvCache& kv() { return kv_; }
  ThreadPool& pool() { return *pool_; }

  // Low level: one batch through the model (see runtime::CpuForward::Run).
  Status Forward(std::span<const runtime::BatchEntry> batch, float* logits, float* hidden);

  // Feeds `tokens` to sequence `seq` from its current length, in chunks of n_batch; returns the
  // logits of the last token ([n_vocab]) in *last_logits if given, or all positions' logits
  // ([tokens.size(), n_vocab]) in *all_logits if given.
  Status Prefill(int32_t seq, std::span<const int32_t> tokens, std::vector<float>* last_logits,
                 std::vector<float>* all_logits = nullptr);
  void ResetSequence(int32_t seq) { kv_.set_length(seq, 0); }
  // <|im_end|> or <|endoftext|>: the tokens that end a generation when stop_on_eos is set.
  bool IsEndOfGeneration(int32_t token) const {
    return std::find(eos_ids_.begin(), eos_ids_.end(), token) != eos_ids_.end();
  }

  // Generates from a prompt on sequence `seq` (which is reset first).
  Result<GenerateResult> Generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                                  const TokenCallback& on_text = nullptr, int32_t seq = 0);

  // Qwen3-Embedding: last-token pooling of the final normed hidden state, L2-normalised, then
  // truncated to `dims` (0 = full) and re-normalised. Each input must end in <|endoftext|> (it
  // is appended when missing).
  Result<std::vector<std::vector<float>>> Embed(const std::vector<std::vector<int32_t>>& inputs, int32_t dims = 0);

  // Qwen3-Reranker: for each token sequence (already in the reranker prompt format), the
  // probability of "yes" = softmax([l_no, l_yes])[1] at the last position.
  Result<std::vector<float>> RerankScores(const std::vector<std::vector<int32_t>>& inputs);

  // Tokenizes the Qwen3-Reranker prompt for (instruction, query, document).
  std::vector<int32_t> RerankPrompt(std::string_view instruction, std::string_view query, std::string_view document) const;

 private:
  Model() = default;
  Status CheckPrompt(std::span<const int32_t> tokens, int32_t seq) const;
  // Runs whole prompts, up to n_seq of them sharing each batch (tokens interleaved, chunked by
  // n_batch), and writes each prompt's last-position logits ([n_vocab]) and/or final-normed
  // hidden state ([n_embd]) in input order. The sequences' KV slots are reset afterwards.
  Status RunPrompts(const std::vector<std::vector<int32_t>>& prompts, std::vector<float>* last_logits,
                    std::vector<float>* last_hidden);

  LoadOptions options_;
  gguf::File file_;
  model::ModelConfig config_;
  runtime::ModelWeights weights_;
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer_;  // shared by models with the same vocabulary
  std::unique_ptr<ThreadPool> pool_;
  runtime::KvCache kv_;
  std::unique_ptr<runtime::CpuForward> forward_;
  std::vector<int32_t> eos_ids_;
};

}  // namespace qwenmux::engine
