// Batched model calls of the pipeline stages, on an engine::Model the caller holds exclusively:
//
// - ScoreContinuations: teacher-forced log P(continuation | prompt) for every prompt and every
//   continuation. Each prompt is prefilled once (prompts share forward passes, one KV sequence
//   each); every continuation is then fed after it and the sequence is cut back to the prompt.
//   This is classification constrained to a label set: softmax over the label scores is the
//   confidence.
// - GenerateConstrained: greedy decoding of several prompts together through the engine's batch
//   step (engine/batch.h: one forward pass per step for all unfinished sequences, up to the
//   model's n_seq; a finished sequence's slot goes to the next prompt), each token restricted by
//   its sequence's LogitProcessor; no end-of-sequence stop (the processor's Done() ends it).
//
// Scoring handles prompts in groups of the model's n_seq. A prompt that does not fit the context
// fails alone (its own Status); the others go on.
//
// Thread-safety: like engine::Model (one thread at a time per model).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "base/status.h"
#include "engine/engine.h"
#include "engine/logit_processor.h"

namespace qwenmux::pipeline {

using ScoreOutput = engine::ScoreOutput;

// engine::Model::ScoreContinuations. `tokens` (if not null) is increased by the tokens run
// through the model.
Result<std::vector<ScoreOutput>> ScoreContinuations(engine::Model& model, const std::vector<std::vector<int32_t>>& prompts,
                                                    const std::vector<std::vector<int32_t>>& continuations,
                                                    int64_t* tokens = nullptr, int32_t adapter = -1,
                                                    float adapter_scale = 1.0f);

struct ConstrainedOutput {
  Status status;                 // per prompt (prompt too long, processor error)
  std::vector<int32_t> tokens;
  std::string text;
  bool complete = false;         // the processor said Done() before max_tokens
};

Result<std::vector<ConstrainedOutput>> GenerateConstrained(engine::Model& model,
                                                           const std::vector<std::vector<int32_t>>& prompts,
                                                           std::vector<std::unique_ptr<engine::LogitProcessor>> processors,
                                                           int32_t max_tokens, int64_t* tokens = nullptr,
                                                           int32_t adapter = -1, float adapter_scale = 1.0f);

// Softmax of scores (log domain) -> probabilities.
std::vector<double> Softmax(const std::vector<double>& scores);

}  // namespace qwenmux::pipeline
