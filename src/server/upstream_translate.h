// OpenAI <-> Ollama translation for the backends (upstream.h), requests and whole answers:
// chat (messages, tools and tool calls, sampling, response_format <-> format, thinking, usage)
// and embeddings, both ways. Streamed answers: upstream_stream.h.
//
// Thread-safety: pure functions.
#pragma once

#include <string>

#include "base/status.h"
#include "server/api_common.h"

namespace qwenmux::server {

// OpenAI /v1/chat/completions body -> Ollama /api/chat body for `model` ("stream" kept):
// messages (role, content, reasoning_content -> thinking, tool_calls, tool_call_id), tools,
// temperature/top_p/top_k/seed/stop/max_tokens -> options, response_format -> format,
// chat_template_kwargs.enable_thinking -> think. kUnsupported for n > 1, non-text parts and a
// tool_choice other than auto/none (Ollama cannot force a call; "none" drops the tools).
Result<Json> OpenAiChatToOllama(const Json& body, const std::string& model);

// Ollama /api/chat answer -> OpenAI chat.completion, `model` as the client named it.
// kInvalidArgument when the answer lacks `message`.
Result<Json> OllamaChatToOpenAi(const Json& answer, const std::string& model);

// Ollama /api/chat body -> OpenAI /v1/chat/completions body for `model`: streamed unless
// "stream": false (then with stream_options.include_usage), thinking -> reasoning_content,
// tool calls get ids (a tool answer without tool_call_id takes the oldest open call of its
// tool_name), options -> sampling fields (num_predict -> max_tokens), format "json" ->
// json_object, a schema -> json_schema, think -> chat_template_kwargs.enable_thinking.
// kUnsupported for images.
Result<Json> OllamaChatToOpenAiRequest(const Json& body, const std::string& model);

// OpenAI chat.completion -> Ollama /api/chat answer (done: true, usage as eval counts).
Result<Json> OpenAiChatAnswerToOllama(const Json& answer, const std::string& model);

// OpenAI tool_calls (arguments as JSON text) -> Ollama's (arguments as an object; kept as the
// text when it is not JSON).
Json OllamaCallsOf(const Json& openai_calls);

// "2026-12-07T16:30:43.123456Z", Ollama's created_at.
std::string OllamaTimestamp();

// Embeddings. OpenAI /v1/embeddings body -> Ollama /api/embed (text input only;
// encoding_format float or base64, see below).
Result<Json> OpenAiEmbedToOllama(const Json& body, const std::string& model);
// Ollama /api/embed answer -> OpenAI embedding list; base64: each vector as little-endian
// float32 in base64 (encoding_format "base64", the official openai client's default).
Result<Json> OllamaEmbedAnswerToOpenAi(const Json& answer, const std::string& model, bool base64 = false);
// Ollama /api/embed body (legacy: /api/embeddings, "prompt") -> OpenAI /v1/embeddings.
Result<Json> OllamaEmbedToOpenAi(const Json& body, const std::string& model, bool legacy);
// OpenAI embedding list -> Ollama /api/embed answer (legacy: {"embedding": [...]}).
Result<Json> OpenAiEmbedAnswerToOllama(const Json& answer, const std::string& model, bool legacy);

// Completions (upstream_complete.cc). OpenAI /v1/completions body -> Ollama /api/generate with
// raw: true (the prompt as it is, no chat template), sampling as for chat, "stream" kept.
// kUnsupported for token-id or several prompts, n > 1, echo and logprobs.
Result<Json> OpenAiCompletionToOllama(const Json& body, const std::string& model);
// Ollama /api/generate answer -> OpenAI text_completion (usage from the eval counts).
Result<Json> OllamaGenerateAnswerToOpenAi(const Json& answer, const std::string& model);
// Ollama /api/generate body -> OpenAI: with raw: true a /v1/completions body (*chat = false);
// else /v1/chat/completions (*chat = true) with system and prompt as messages, so the backend
// applies its own template as Ollama would. Streamed unless "stream": false, options, format and
// think as for chat. kUnsupported for images, context and suffix.
Result<Json> OllamaGenerateToOpenAi(const Json& body, const std::string& model, bool* chat);
// OpenAI text_completion or chat.completion -> Ollama /api/generate answer ("response",
// "thinking", done_reason, eval counts).
Result<Json> OpenAiAnswerToOllamaGenerate(const Json& answer, const std::string& model);

}  // namespace qwenmux::server
