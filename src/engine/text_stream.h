// The text side of one generated sequence: token ids -> complete UTF-8 pieces, with stop strings
// cut out (the first match ends the sequence; a tail that could still become a stop string is
// held back until it cannot). Used by Model::Generate and by the scheduler's batched sequences.
//
// Thread-safety: single-threaded state of one sequence.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "tokenizer/tokenizer.h"

namespace qwenmux::engine {

class TextStream {
 public:
  TextStream(const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stop)
      : decoder_(tokenizer), stop_(std::move(stop)) {}

  // Decodes `token` and appends the text that is safe to emit now to *out (which is cleared
  // first). Returns true when a stop string matched: *out then ends just before it and the
  // sequence is over. Error: an out-of-range token id.
  Result<bool> Push(int32_t token, std::string* out);

  // End of the sequence without a stop string (length, context full): appends the held-back
  // text and any incomplete character (as U+FFFD) to *out (cleared first).
  void Finish(std::string* out);

 private:
  tokenizer::StreamDecoder decoder_;
  std::vector<std::string> stop_;
  std::string pending_;  // decoded text not yet emitted (may be the start of a stop string)
  std::string piece_;
};

}  // namespace qwenmux::engine
