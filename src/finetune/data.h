// Training data: JSONL in the common shapes, rendered with the Qwen3 chat template (thinking off,
// as the reference: enable_thinking = false, no generation prompt) and tokenized, with the loss
// mask on assistant tokens only:
//   - {"messages": [{"role": ..., "content": ...}, ...]}   (OpenAI chat shape)
//   - {"instruction": ..., "input": ... (optional), "output" (or "response"): ..., "system": ... (optional)}
//   - {"prompt": ..., "completion": ...}
// Mask convention (../shared/testdata/README.md, "LoRA training references"): 1 on each
// assistant turn's content and its <|im_end|>; 0 on system / user / tool turns, on
// "<|im_start|>assistant\n", on an empty think block "<think>\n\n</think>\n\n" and on the "\n"
// after <|im_end|>. Message text is encoded as plain text (a user typing "<|im_start|>" gets no
// control token); the template's own text with special tokens.
//
// Bad lines (invalid JSON, an unknown shape, an empty conversation, no assistant turn, no label
// left) are reported by line number and skipped; over-long examples are dropped or truncated
// (options) and counted.
//
// Thread-safety: free functions over their arguments.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "finetune/train_model.h"
#include "tokenizer/tokenizer.h"

namespace qwenmux::finetune {

struct DataOptions {
  int64_t max_tokens = 2048;    // longer examples are dropped (or truncated with `truncate`)
  bool truncate = false;
  double valid_fraction = 0.1;  // share of the examples held out for validation
  uint64_t seed = 1;            // the split
};

struct DataIssue {
  int64_t line = 0;
  std::string message;
};

struct Dataset {
  std::vector<Example> train, valid;
  std::vector<DataIssue> skipped;  // lines not used, with the reason
  int64_t lines = 0;               // non-empty lines read
  int64_t truncated = 0, dropped_long = 0;
  int64_t tokens = 0, labels = 0;  // over train + valid
  int64_t max_len = 0;

  std::string Summary() const;  // one paragraph: counts, token statistics, skipped lines (first 20)
};

// One JSON object (one line) -> an example; errors name what is wrong (not the line).
Result<Example> ExampleFromJson(const nlohmann::ordered_json& j, const tokenizer::Tokenizer& tok);

Result<Dataset> LoadJsonl(const std::string& path, const tokenizer::Tokenizer& tok, const DataOptions& o);

}  // namespace qwenmux::finetune
