// Parsing generated assistant text back into reasoning, content and tool calls (see chat.h).
#include "chat/chat.h"
#include "chat/json_dump.h"

namespace qwenmux::chat {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
constexpr std::string_view kToolCallOpen = "<tool_call>";
constexpr std::string_view kToolCallClose = "</tool_call>";

std::string_view LStrip(std::string_view s, std::string_view chars) {
  const size_t pos = s.find_first_not_of(chars);
  return pos == std::string_view::npos ? std::string_view() : s.substr(pos);
}
std::string_view RStrip(std::string_view s, std::string_view chars) {
  const size_t pos = s.find_last_not_of(chars);
  return pos == std::string_view::npos ? std::string_view() : s.substr(0, pos + 1);
}

// Drops the longest suffix of `s` that is a proper, non-empty prefix of `tag` (a tag that may
// still be arriving in a stream).
std::string_view HoldBackPartialTag(std::string_view s, std::string_view tag) {
  for (size_t len = std::min(s.size(), tag.size() - 1); len > 0; --len) {
    if (s.substr(s.size() - len) == tag.substr(0, len)) return s.substr(0, s.size() - len);
  }
  return s;
}

// Parses the JSON between <tool_call> and </tool_call>.
Result<ChatToolCall> ParseToolCallBody(std::string_view raw) {
  const std::string_view body = RStrip(LStrip(raw, " \t\r\n"), " \t\r\n");
  Json parsed = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Error(StatusCode::kInvalidArgument, "invalid JSON");
  if (!parsed.is_object()) {
    return Error(StatusCode::kInvalidArgument, "expected a JSON object");
  }
  if (!JsonDepthWithin(parsed, kMaxJsonDepth)) {
    return Error(StatusCode::kInvalidArgument, "JSON nested deeper than {} levels", kMaxJsonDepth);
  }
  const auto name = parsed.find("name");
  if (name == parsed.end() || !name->is_string()) {
    return Error(StatusCode::kInvalidArgument, "\"name\" missing or not a string");
  }
  ChatToolCall call;
  call.name = name->get<std::string>();
  if (const auto args = parsed.find("arguments"); args != parsed.end()) {
    call.arguments = std::move(*args);
  }
  return call;
}

// Splits the answer part (after any reasoning) into content and tool calls.
void ParseAnswer(std::string_view text, const ChatOutputOptions& options, ParsedChatOutput* out) {
  std::string& content = out->message.content;
  // Text outside tool-call blocks is content, less the "\n" separators next to the blocks.
  auto add_segment = [&](std::string_view seg, bool after_block, bool before_block) {
    if (after_block) seg = LStrip(seg, "\n");
    if (before_block) seg = RStrip(seg, "\n");
    if ((after_block || before_block) && RStrip(seg, " \t\r\n").empty()) return;
    if (seg.empty()) return;
    if (after_block && !content.empty()) content.push_back('\n');
    content.append(seg);
  };
  size_t pos = 0;
  size_t index = 0;
  while (true) {
    const size_t open = text.find(kToolCallOpen, pos);
    if (open == std::string_view::npos) {
      std::string_view tail = text.substr(pos);
      if (options.partial) {
        // Hold back what may turn out to be the start of a tool call or its "\n" separator, and
        // blank text (dropped if a tool call follows).
        tail = RStrip(HoldBackPartialTag(tail, kToolCallOpen), "\n");
        if (RStrip(tail, " \t\r\n").empty()) tail = {};
      }
      add_segment(tail, index > 0, false);
      return;
    }
    add_segment(text.substr(pos, open - pos), index > 0, true);
    const size_t body = open + kToolCallOpen.size();
    const size_t close = text.find(kToolCallClose, body);
    if (close == std::string_view::npos) {
      if (options.partial) {
        out->tool_call_pending = true;
      } else {
        out->tool_call_errors.push_back(
            {index, std::string(text.substr(body)), "unterminated <tool_call>"});
      }
      return;
    }
    const std::string_view raw = text.substr(body, close - body);
    Result<ChatToolCall> call = ParseToolCallBody(raw);
    if (call.ok()) {
      out->message.tool_calls.push_back(std::move(call).value());
    } else {
      out->tool_call_errors.push_back({index, std::string(raw), call.status().message()});
    }
    ++index;
    pos = close + kToolCallClose.size();
  }
}

}  // namespace

ParsedChatOutput ParseChatOutput(std::string_view text, const ChatOutputOptions& options) {
  ParsedChatOutput out;
  out.message.role = ChatRole::kAssistant;

  // Every rule below only looks forward, so a partial parse of a prefix of the output is a prefix
  // of the final parse (reasoning, content and tool calls) and a stream can send it as deltas.
  const std::string_view trimmed = LStrip(text, " \t\r\n");
  const bool opened = trimmed.starts_with(kThinkOpen);
  if (options.partial && !opened && trimmed.size() < kThinkOpen.size() && kThinkOpen.starts_with(trimmed)) {
    return out;  // "", "\n" or "<thi": cannot tell reasoning from content yet
  }
  std::string_view answer = text;
  if (opened || options.thinking) {
    // Reasoning runs from the opener (or the start) to the first "</think>": what comes after it
    // is the answer, a later "</think>" included (a streamed answer never turns into reasoning).
    std::string_view reasoning = opened ? trimmed.substr(kThinkOpen.size()) : text;
    const size_t close = reasoning.find(kThinkClose);
    if (close == std::string_view::npos) {
      out.reasoning_open = true;
      if (options.partial) reasoning = HoldBackPartialTag(reasoning, kThinkClose);
      answer = {};
    } else {
      answer = LStrip(reasoning.substr(close + kThinkClose.size()), "\n");
      reasoning = reasoning.substr(0, close);
    }
    out.message.reasoning_content = std::string(RStrip(LStrip(reasoning, "\n"), "\n"));
  }
  ParseAnswer(answer, options, &out);
  return out;
}

}  // namespace qwenmux::chat
