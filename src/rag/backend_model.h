// Models of other engines ("NAME/MODEL" of a configured backend, issue 18) as the model of a RAG
// or pipeline stage. The stages stay below the server layer, so they reach a backend through a
// BackendAccess the caller gives: the server and `qwenmux run`/`ask` fill it from their
// server::Upstreams (Owns and Call). Requests are whole (not streamed) and in the OpenAI dialect;
// an Ollama backend's are translated by Upstreams::Call.
//
// What a backend can do for a stage: chat text (optionally constrained by a JSON schema through
// `response_format`) and embeddings. What it cannot: token log-probabilities and logits, the
// model's tokenizer and context size. Token counts of backend stages are therefore approximate
// (rag::ApproxTokens) unless the backend reports usage.
//
// Thread-safety: BackendAccess's functions may be called from any thread (Upstreams' are).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace qwenmux::rag {

enum class BackendCallKind { kChat, kEmbeddings };

struct BackendAccess {
  // Whether `ref` is "NAME/MODEL" of a configured backend NAME.
  std::function<bool(std::string_view ref)> owns;
  // A whole request to the backend model `model` (OpenAI dialect body; "model" is set by it);
  // server::Upstreams::Call. Errors name the backend.
  std::function<Result<nlohmann::ordered_json>(BackendCallKind kind, const std::string& model,
                                               nlohmann::ordered_json body)>
      call;
  bool Owns(std::string_view ref) const { return owns && call && owns(ref); }
};

struct BackendChatOptions {
  int32_t max_tokens = 512;
  double temperature = 0;                              // 0: greedy
  uint64_t seed = 0;                                   // sent when temperature > 0
  bool thinking = false;                               // chat_template_kwargs.enable_thinking
  const nlohmann::ordered_json* json_schema = nullptr;  // response_format json_schema (null: free text)
};

struct BackendChatResult {
  std::string text;           // the answer's content (reasoning apart)
  std::string finish_reason;  // "stop", "length", ...
  int64_t prompt_tokens = 0, completion_tokens = 0;  // the backend's usage (0: not reported)
};

// One chat turn (system, user) on the backend model `model`.
Result<BackendChatResult> BackendChat(const BackendAccess& backend, const std::string& model, std::string_view system,
                                      std::string_view user, const BackendChatOptions& options);

// Embeddings of `texts` (one vector each, in order) from the backend model; `dims` > 0 asks for
// that many dimensions (OpenAI `dimensions`). `tokens` (if not null) gets the reported prompt
// tokens added. Every vector is L2-normalised here (backends differ on whether they are).
Result<std::vector<std::vector<float>>> BackendEmbed(const BackendAccess& backend, const std::string& model,
                                                     const std::vector<std::string>& texts, int32_t dims,
                                                     int64_t* tokens = nullptr);

}  // namespace qwenmux::rag
