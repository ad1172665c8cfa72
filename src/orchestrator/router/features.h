// What the router looks at in a request: an estimate of the prompt's size, markers of code,
// math and reasoning, whether a JSON schema or tools are asked for, the thinking switch and the
// latency the caller wants; and from them a complexity level.
//
// Complexity (deterministic; every point is named in the explanation):
//   prompt tokens (estimated): >= 1,000: +1, >= 4,000: +2, >= 16,000: +3
//   code markers (```, #include, def , std::, =>, traceback, ...)         +1
//   math markers (\frac, $$, "integral", "prove that", 3x + 2 = 7, ...)    +1
//   reasoning markers ("step by step", "analyze", "compare", ...)         +1
//   a JSON schema / JSON object response format                           +1
//   tools offered                                                         +1
//   enable_thinking: true +1, false -1 (unset: 0)
//   score 0 -> simple, 1-2 -> medium, 3-4 -> complex, >= 5 -> hardest.
// A classification by the fast model (RequestInput::classified), when the caller ran one,
// replaces the rule-based level (both are shown in the explanation).
//
// Prompt tokens are estimated without a tokenizer: ASCII bytes / 4 + one per non-ASCII code point
// (Qwen3's BPE averages about 4 bytes of English per token; CJK is about one token per
// character). A caller that has tokenized passes the exact count.
//
// Latency (a request field such as "latency": "low", or the X-Qwenmux-Latency header; the field
// wins): "low" | "fast" | "interactive" -> kLow; "normal" | "" -> kNormal; "high" | "relaxed" |
// "batch" -> kRelaxed (the caller tolerates a slow answer); a time "800ms", "2s" or a bare number
// of milliseconds "800" -> kBudget with budget_ms (time to first token).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "chat/chat.h"
#include "orchestrator/catalog/catalog.h"

namespace qwenmux::orchestrator {

enum class Complexity { kSimple = 0, kMedium = 1, kComplex = 2, kHardest = 3 };
const char* ComplexityName(Complexity c);  // "simple", "medium", "complex", "hardest"
Result<Complexity> ParseComplexity(std::string_view s);

enum class LatencyClass { kLow, kNormal, kRelaxed, kBudget };
const char* LatencyClassName(LatencyClass c);  // "low", "normal", "relaxed", "budget"

struct LatencyRequest {
  LatencyClass cls = LatencyClass::kNormal;
  int64_t budget_ms = 0;  // kBudget only: time to first token
};
// Parses one latency value (see above); errors say what is accepted.
Result<LatencyRequest> ParseLatency(std::string_view text);

// What the caller knows about the request. Views must outlive ExtractFeatures.
struct RequestInput {
  std::vector<std::string_view> texts;   // message contents (system, user, ...) or the prompt
  std::optional<int64_t> prompt_tokens;  // exact count, if tokenized
  size_t n_tools = 0;
  bool json_schema = false;              // response_format json_schema / json_object (or Ollama format)
  std::optional<bool> enable_thinking;
  std::string_view latency_field;        // the request's "latency" field ("" = absent)
  std::string_view latency_header;       // X-Qwenmux-Latency ("" = absent)
  ModelRole role = ModelRole::kChat;     // embedding/rerank requests route among those models
  std::optional<Complexity> classified;  // the fast model's classification, if one was run
};

// The chat request's texts, tools and thinking switch (views into `req`).
RequestInput InputFromChat(const chat::ChatRequest& req);

struct RequestFeatures {
  ModelRole role = ModelRole::kChat;
  int64_t prompt_tokens = 0;
  bool tokens_exact = false;
  bool code = false, math = false, reasoning = false;
  bool json_schema = false;
  bool tools = false;
  std::optional<bool> thinking;
  LatencyRequest latency;
  int score = 0;                           // the rule-based points (after clamping at 0)
  Complexity rule_complexity = Complexity::kSimple;
  std::optional<Complexity> classified;
  Complexity complexity = Complexity::kSimple;  // classified if given, else the rules'
  std::string summary;                     // "code markers + 1.2k-token prompt"
};

// Errors: an invalid latency value (kInvalidArgument, naming the field or header).
Result<RequestFeatures> ExtractFeatures(const RequestInput& input);

// The fast model as a classifier (optional; the server decides whether to spend the call): the
// messages to send it (render with enable_thinking = false, generate ~4 tokens greedily) and the
// parse of its answer (the first of simple/medium/complex/hardest in it; an error if none).
// The request's text is cut to `max_chars` bytes (at a UTF-8 boundary).
std::vector<chat::ChatMessage> ClassificationMessages(std::string_view request_text, size_t max_chars = 2000);
Result<Complexity> ParseClassification(std::string_view answer);

// "850", "1.2k", "16k" (for explanations).
std::string FormatTokens(int64_t n);

}  // namespace qwenmux::orchestrator
