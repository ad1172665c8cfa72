// Qwen3 chat formatting, natively (no Jinja engine):
//   - RenderChat: a conversation -> the prompt text, byte-identical to what Hugging Face's
//     apply_chat_template produces with Qwen3's official template (hybrid thinking release):
//     system/user/assistant/tool turns, the tools section, assistant tool calls, consecutive
//     tool results merged into one user turn, thinking of earlier turns stripped
//     (last_query_index), reasoning_content, enable_thinking=false, generation prompt on/off.
//     See docs: shared/docs/qwen3-reference.md §5.
//   - ParseChatRequestJson: an OpenAI-style request (messages, tools, ...) -> these structs,
//     with errors that name the offending field ("messages[2].role: unknown role \"foo\"").
//   - ParseChatOutput: generated assistant text -> reasoning, content and tool calls; tolerant
//     of an unfinished stream.
// All functions are pure; thread-safe. JSON inputs must be nlohmann::ordered_json: the tools
// and tool-call arguments are re-serialised in the prompt in their original key order, as the
// reference does; nlohmann::json would sort the keys and change the prompt bytes.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace qwenmux::chat {

// Deepest JSON nesting accepted from requests and model output (tools, tool-call arguments).
inline constexpr int kMaxJsonDepth = 128;

enum class ChatRole { kSystem, kUser, kAssistant, kTool };

// "system", "user", "assistant", "tool".
const char* ChatRoleName(ChatRole role);

struct ChatToolCall {
  std::string id;    // OpenAI tool call id; not rendered by the Qwen3 template
  std::string name;  // function name
  // A JSON string is rendered verbatim (OpenAI sends arguments as a JSON-encoded string);
  // any other JSON value (normally an object) is rendered as json.dumps would.
  nlohmann::ordered_json arguments = nlohmann::ordered_json::object();
};

struct ChatMessage {
  ChatRole role = ChatRole::kUser;
  std::string content;
  // Assistant only. When set (even to ""), it is the reasoning and `content` is taken as is;
  // when unset, reasoning is split out of `content` at "</think>" as the template does.
  std::optional<std::string> reasoning_content;
  std::vector<ChatToolCall> tool_calls;  // assistant only
  std::string tool_call_id;              // tool only; not rendered by the Qwen3 template
  std::string name;                      // optional participant/tool name; not rendered
};

struct ChatOptions {
  // Append "<|im_start|>assistant\n" (true for chat completion requests; note that HF's
  // apply_chat_template defaults to false).
  bool add_generation_prompt = true;
  // Unset or true: the model opens <think> itself. false: the generation prompt gets an empty,
  // closed think block "<think>\n\n</think>\n\n" (the hard switch).
  std::optional<bool> enable_thinking;
  // OpenAI tool definitions (array of objects); empty or null = no tools section.
  nlohmann::ordered_json tools = nlohmann::ordered_json::array();
};

struct ChatRequest {
  std::vector<ChatMessage> messages;
  ChatOptions options;
};

// Renders the prompt. Errors (kInvalidArgument) for an empty conversation only; every
// ChatMessage value is renderable.
Result<std::string> RenderChat(std::span<const ChatMessage> messages, const ChatOptions& options);

// The same prompt as consecutive segments: the template's own text (role markers, think and
// tool tags: may be encoded with special tokens) and the conversation's text (message content,
// reasoning, tool definitions and call arguments, names: must be encoded as plain text, so that
// "<|im_start|>" typed by a user never becomes a control token). Concatenated, the segments are
// exactly RenderChat's output; adjacent segments of the same kind are merged.
struct PromptSegment {
  std::string text;
  bool template_text = false;
};
Result<std::vector<PromptSegment>> RenderChatSegments(std::span<const ChatMessage> messages,
                                                      const ChatOptions& options);

// Parses an OpenAI-style messages array. Accepted per message:
//   role: "system" | "user" | "assistant" | "tool" (required)
//   content: string, or an array of {"type": "text", "text": ...} parts (concatenated);
//            null or missing only for assistant messages (= "")
//   reasoning_content: string or null (assistant)
//   tool_calls: array of {"id"?, "type"?, "function": {"name", "arguments"}} or
//               {"name", "arguments"} (assistant); arguments string or any JSON value
//   tool_call_id, name: strings (optional)
// Unknown keys are ignored. JSON nested deeper than 128 levels is rejected.
Result<std::vector<ChatMessage>> ParseChatMessagesJson(const nlohmann::ordered_json& messages);

// Parses a request object: "messages" (required, non-empty), and the options, each either at
// the top level or inside "chat_template_kwargs" / "kwargs" (the latter as in the project's
// chat-template-cases.json; the nested object wins):
//   tools: array of objects or null; enable_thinking: bool or null;
//   add_generation_prompt: bool (default true).
// Other keys (model, temperature, ...) are ignored.
Result<ChatRequest> ParseChatRequestJson(const nlohmann::ordered_json& request);

// ---- Output parsing ----

struct ChatOutputOptions {
  // The prompt left thinking on (enable_thinking unset or true, or a thinking-only model whose
  // generation prompt already holds "<think>\n"): the output is reasoning until "</think>",
  // whether or not it repeats the "<think>" opener. When false, only output that starts with
  // "<think>" has reasoning.
  bool thinking = true;
  // The stream is unfinished: an unclosed <tool_call> and a trailing partial tag (e.g. "</thi")
  // are held back instead of being shown or reported as errors.
  bool partial = false;
};

struct ToolCallParseError {
  size_t index = 0;   // 0-based index among the <tool_call> blocks of the output
  std::string raw;    // the text between <tool_call> and </tool_call> (or end of text)
  std::string message;
};

struct ParsedChatOutput {
  // role assistant; content, reasoning_content (set when the output has a think block or
  // thinking was on) and the well-formed tool calls, in order.
  ChatMessage message;
  bool reasoning_open = false;     // inside an unclosed think block (everything is reasoning)
  bool tool_call_pending = false;  // partial output ends inside an unclosed <tool_call>
  std::vector<ToolCallParseError> tool_call_errors;  // malformed or unterminated tool calls
};

// Splits generated assistant text (special tokens rendered as text, stop token excluded) into
// reasoning (up to the first "</think>", "\n"-trimmed), content and Hermes-style tool calls
// "<tool_call>\n{\"name\": ..., \"arguments\": {...}}\n</tool_call>". The "\n" separators
// around tool calls are not part of the content. Never fails: problems are reported in
// tool_call_errors.
ParsedChatOutput ParseChatOutput(std::string_view text, const ChatOutputOptions& options);

}  // namespace qwenmux::chat
