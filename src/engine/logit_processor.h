// A per-sequence hook between the model's logits and the sampler: constrained decoding (JSON
// schema, grammar, tool calls), thinking budgets, forced tokens. The scheduler calls, for each
// generated token of the sequence:
//   Apply(logits)   - set disallowed tokens to -inf (may force one token by masking all others);
//   <sampler draws a token>
//   Accept(token)   - advance the processor's state.
// Done() true means the constrained value is complete: the scheduler ends the sequence with
// finish_reason "stop" (it still honours eos/stop strings/max_tokens as usual).
//
// Thread-safety: one processor belongs to one sequence and is called from one thread at a time.
// Processors of different sequences may run concurrently; shared compiled data (e.g. a schema
// compiled once against the vocabulary) must be immutable or internally synchronised.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "base/status.h"

namespace qwenmux::engine {

class LogitProcessor {
 public:
  virtual ~LogitProcessor() = default;
  // logits: one row of n_vocab. An error (e.g. no token allowed) fails the request.
  virtual Status Apply(std::span<float> logits) = 0;
  // token: the sampled id (always one Apply left finite). Error: the token is not allowed.
  virtual Status Accept(int32_t token) = 0;
  virtual bool Done() const = 0;
};

}  // namespace qwenmux::engine
