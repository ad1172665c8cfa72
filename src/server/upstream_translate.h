// OpenAI <-> Ollama translation for the backends (upstream.h): an OpenAI chat completion
// request sent to an Ollama backend's /api/chat (not streamed), and its answer back.
//
// Thread-safety: pure functions.
#pragma once

#include <string>

#include "base/status.h"
#include "server/api_common.h"

namespace qwenmux::server {

// OpenAI /v1/chat/completions body -> Ollama /api/chat body for `model` (stream false):
// messages (role, content, reasoning_content -> thinking, tool_calls, tool_call_id), tools,
// temperature/top_p/top_k/seed/stop/max_tokens -> options, response_format -> format,
// chat_template_kwargs.enable_thinking -> think. kUnsupported for "stream": true and n > 1.
Result<Json> OpenAiChatToOllama(const Json& body, const std::string& model);

// Ollama /api/chat answer -> OpenAI chat.completion, `model` as the client named it.
// kInvalidArgument when the answer lacks `message`.
Result<Json> OllamaChatToOpenAi(const Json& answer, const std::string& model);

}  // namespace qwenmux::server
