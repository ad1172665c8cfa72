// Qwen3 chat rendering (a hand translation of the official Jinja template; see chat.h) and
// OpenAI-style request parsing.
#include "chat/chat.h"

#include "chat/json_dump.h"

namespace qwenmux::chat {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";

// Python's str.lstrip('\n') / rstrip('\n') / strip('\n').
std::string_view LStripNewlines(std::string_view s) {
  const size_t pos = s.find_first_not_of('\n');
  return pos == std::string_view::npos ? std::string_view() : s.substr(pos);
}
std::string_view RStripNewlines(std::string_view s) {
  const size_t pos = s.find_last_not_of('\n');
  return pos == std::string_view::npos ? std::string_view() : s.substr(0, pos + 1);
}
std::string_view StripNewlines(std::string_view s) { return RStripNewlines(LStripNewlines(s)); }

bool IsToolResponseWrapper(std::string_view s) {
  return s.starts_with("<tool_response>") && s.ends_with("</tool_response>");
}

// Collects the prompt as segments: text from the template itself (may hold special tokens)
// and text from the conversation (never parsed for special tokens).
class Sink {
 public:
  void Template(std::string_view s) { Add(s, true); }
  void Template(char c) { Add(std::string_view(&c, 1), true); }
  void Content(std::string_view s) { Add(s, false); }
  std::vector<PromptSegment> Take() { return std::move(segments_); }

 private:
  void Add(std::string_view s, bool trusted) {
    if (s.empty()) return;
    if (segments_.empty() || segments_.back().template_text != trusted) {
      segments_.push_back({std::string(), trusted});
    }
    segments_.back().text.append(s);
  }
  std::vector<PromptSegment> segments_;
};

void AppendToolCall(const ChatToolCall& call, Sink* out) {
  out->Template("<tool_call>\n{\"name\": \"");
  out->Content(call.name);
  out->Template("\", \"arguments\": ");
  if (call.arguments.is_string()) {
    out->Content(call.arguments.get_ref<const std::string&>());
  } else {
    std::string args;
    AppendPythonJson(call.arguments, &args);
    out->Content(args);
  }
  out->Template("}\n</tool_call>");
}

void AppendAssistant(const ChatMessage& m, bool after_last_query, bool is_last, Sink* out) {
  std::string_view content = m.content;
  std::string_view reasoning;
  if (m.reasoning_content.has_value()) {
    reasoning = *m.reasoning_content;
  } else if (const size_t last_close = content.rfind(kThinkClose);
             last_close != std::string_view::npos) {
    // content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n')
    std::string_view before = RStripNewlines(content.substr(0, content.find(kThinkClose)));
    if (const size_t open = before.rfind(kThinkOpen); open != std::string_view::npos) {
      before.remove_prefix(open + kThinkOpen.size());
    }
    reasoning = LStripNewlines(before);
    // content.split('</think>')[-1].lstrip('\n')
    content = LStripNewlines(content.substr(last_close + kThinkClose.size()));
  }
  out->Template("<|im_start|>assistant\n");
  if (after_last_query && (is_last || !reasoning.empty())) {
    out->Template("<think>\n");
    out->Content(StripNewlines(reasoning));
    out->Template("\n</think>\n\n");
    out->Content(LStripNewlines(content));
  } else {
    out->Content(content);
  }
  for (size_t j = 0; j < m.tool_calls.size(); ++j) {
    if (j > 0 || !content.empty()) out->Template('\n');
    AppendToolCall(m.tool_calls[j], out);
  }
  out->Template("<|im_end|>\n");
}

}  // namespace

const char* ChatRoleName(ChatRole role) {
  switch (role) {
    case ChatRole::kSystem: return "system";
    case ChatRole::kUser: return "user";
    case ChatRole::kAssistant: return "assistant";
    case ChatRole::kTool: return "tool";
  }
  return "unknown";
}

Result<std::vector<PromptSegment>> RenderChatSegments(std::span<const ChatMessage> messages,
                                                      const ChatOptions& options) {
  if (messages.empty()) {
    return Error(StatusCode::kInvalidArgument, "chat: no messages to render");
  }
  const size_t n = messages.size();
  const bool first_is_system = messages[0].role == ChatRole::kSystem;
  const bool has_tools = options.tools.is_array() && !options.tools.empty();
  Sink out;
  if (has_tools) {
    out.Template("<|im_start|>system\n");
    if (first_is_system) {
      out.Content(messages[0].content);
      out.Template("\n\n");
    }
    out.Template(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
    for (const Json& tool : options.tools) {
      out.Template('\n');
      std::string tool_json;
      AppendPythonJson(tool, &tool_json);
      out.Content(tool_json);
    }
    out.Template(
        "\n</tools>\n\nFor each function call, return a json object with function name and "
        "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
        "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n");
  } else if (first_is_system) {
    out.Template("<|im_start|>system\n");
    out.Content(messages[0].content);
    out.Template("<|im_end|>\n");
  }

  // The last user message that is a real query (not a wrapped tool result); assistant turns
  // after it belong to the current tool loop and keep their reasoning.
  size_t last_query_index = n - 1;
  for (size_t k = n; k-- > 0;) {
    if (messages[k].role == ChatRole::kUser && !IsToolResponseWrapper(messages[k].content)) {
      last_query_index = k;
      break;
    }
  }

  for (size_t i = 0; i < n; ++i) {
    const ChatMessage& m = messages[i];
    const bool is_last = i + 1 == n;
    switch (m.role) {
      case ChatRole::kSystem:
        if (i == 0) break;  // rendered above
        [[fallthrough]];
      case ChatRole::kUser:
        out.Template("<|im_start|>");
        out.Template(ChatRoleName(m.role));
        out.Template('\n');
        out.Content(m.content);
        out.Template("<|im_end|>\n");
        break;
      case ChatRole::kAssistant:
        AppendAssistant(m, i > last_query_index, is_last, &out);
        break;
      case ChatRole::kTool:
        if (i == 0 || messages[i - 1].role != ChatRole::kTool) out.Template("<|im_start|>user");
        out.Template("\n<tool_response>\n");
        out.Content(m.content);
        out.Template("\n</tool_response>");
        if (is_last || messages[i + 1].role != ChatRole::kTool) out.Template("<|im_end|>\n");
        break;
    }
  }
  if (options.add_generation_prompt) {
    out.Template("<|im_start|>assistant\n");
    if (options.enable_thinking.has_value() && !*options.enable_thinking) {
      out.Template("<think>\n\n</think>\n\n");
    }
  }
  return out.Take();
}

Result<std::string> RenderChat(std::span<const ChatMessage> messages, const ChatOptions& options) {
  QM_ASSIGN_OR_RETURN(std::vector<PromptSegment> segments, RenderChatSegments(messages, options));
  std::string out;
  for (const PromptSegment& s : segments) out.append(s.text);
  return out;
}

// ---- Request parsing ----
namespace {


const char* JsonTypeName(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float: return "a number";
    case Json::value_t::string: return "a string";
    case Json::value_t::array: return "an array";
    case Json::value_t::object: return "an object";
    default: return "an invalid value";
  }
}

// Optional string field: missing or null -> nullopt.
Result<std::optional<std::string>> OptionalString(const Json& obj, const char* key,
                                                  const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) {
    return Error(StatusCode::kInvalidArgument, "{}.{}: expected a string, got {}", where, key,
                 JsonTypeName(*it));
  }
  return std::optional<std::string>(it->get<std::string>());
}

// content: string or array of text parts; null/missing allowed only when `nullable`.
Result<std::string> ParseContent(const Json& msg, bool nullable, const std::string& where) {
  const auto it = msg.find("content");
  if (it == msg.end() || it->is_null()) {
    if (nullable) return std::string();
    return Error(StatusCode::kInvalidArgument, "{}.content: {}", where,
                 it == msg.end() ? "missing" : "must not be null for this role");
  }
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) {
    return Error(StatusCode::kInvalidArgument,
                 "{}.content: expected a string or an array of text parts, got {}", where,
                 JsonTypeName(*it));
  }
  std::string text;
  for (size_t p = 0; p < it->size(); ++p) {
    const Json& part = (*it)[p];
    const std::string part_where = fmt::format("{}.content[{}]", where, p);
    if (!part.is_object()) {
      return Error(StatusCode::kInvalidArgument, "{}: expected an object, got {}", part_where,
                   JsonTypeName(part));
    }
    const auto type = part.find("type");
    if (type == part.end() || !type->is_string() || type->get_ref<const std::string&>() != "text") {
      return Error(StatusCode::kUnsupported, "{}.type: only \"text\" content parts are supported",
                   part_where);
    }
    const auto part_text = part.find("text");
    if (part_text == part.end() || !part_text->is_string()) {
      return Error(StatusCode::kInvalidArgument, "{}.text: expected a string", part_where);
    }
    text.append(part_text->get_ref<const std::string&>());
  }
  return text;
}

Result<ChatToolCall> ParseToolCall(const Json& call, const std::string& where) {
  if (!call.is_object()) {
    return Error(StatusCode::kInvalidArgument, "{}: expected an object, got {}", where,
                 JsonTypeName(call));
  }
  ChatToolCall out;
  QM_ASSIGN_OR_RETURN(std::optional<std::string> id, OptionalString(call, "id", where));
  out.id = id.value_or("");
  const Json* fn = &call;
  std::string fn_where = where;
  if (const auto it = call.find("function"); it != call.end() && !it->is_null()) {
    if (!it->is_object()) {
      return Error(StatusCode::kInvalidArgument, "{}.function: expected an object, got {}", where,
                   JsonTypeName(*it));
    }
    fn = &*it;
    fn_where = where + ".function";
  }
  const auto name = fn->find("name");
  if (name == fn->end() || !name->is_string()) {
    return Error(StatusCode::kInvalidArgument, "{}.name: expected a string, got {}", fn_where,
                 name == fn->end() ? "nothing" : JsonTypeName(*name));
  }
  out.name = name->get<std::string>();
  const auto args = fn->find("arguments");
  if (args == fn->end()) {
    return Error(StatusCode::kInvalidArgument, "{}.arguments: missing", fn_where);
  }
  out.arguments = *args;
  return out;
}

Result<ChatRole> ParseRole(const Json& msg, const std::string& where) {
  const auto it = msg.find("role");
  if (it == msg.end()) return Error(StatusCode::kInvalidArgument, "{}.role: missing", where);
  if (!it->is_string()) {
    return Error(StatusCode::kInvalidArgument, "{}.role: expected a string, got {}", where,
                 JsonTypeName(*it));
  }
  const std::string& role = it->get_ref<const std::string&>();
  // OpenAI's newer name for system instructions (o1 and later); Qwen3 has one system turn.
  if (role == "system" || role == "developer") return ChatRole::kSystem;
  if (role == "user") return ChatRole::kUser;
  if (role == "assistant") return ChatRole::kAssistant;
  if (role == "tool") return ChatRole::kTool;
  return Error(StatusCode::kInvalidArgument, "{}.role: unknown role \"{}\"", where, role);
}

Result<ChatMessage> ParseMessage(const Json& msg, const std::string& where) {
  if (!msg.is_object()) {
    return Error(StatusCode::kInvalidArgument, "{}: expected an object, got {}", where,
                 JsonTypeName(msg));
  }
  ChatMessage out;
  QM_ASSIGN_OR_RETURN(out.role, ParseRole(msg, where));
  const bool assistant = out.role == ChatRole::kAssistant;
  QM_ASSIGN_OR_RETURN(out.content, ParseContent(msg, assistant, where));
  if (assistant) {
    QM_ASSIGN_OR_RETURN(out.reasoning_content, OptionalString(msg, "reasoning_content", where));
  }
  if (const auto it = msg.find("tool_calls"); it != msg.end() && !it->is_null()) {
    if (!it->is_array()) {
      return Error(StatusCode::kInvalidArgument, "{}.tool_calls: expected an array, got {}",
                   where, JsonTypeName(*it));
    }
    if (!assistant && !it->empty()) {
      return Error(StatusCode::kInvalidArgument,
                   "{}.tool_calls: only assistant messages carry tool calls", where);
    }
    for (size_t j = 0; j < it->size(); ++j) {
      QM_ASSIGN_OR_RETURN(ChatToolCall call,
                          ParseToolCall((*it)[j], fmt::format("{}.tool_calls[{}]", where, j)));
      out.tool_calls.push_back(std::move(call));
    }
  }
  QM_ASSIGN_OR_RETURN(std::optional<std::string> call_id,
                      OptionalString(msg, "tool_call_id", where));
  out.tool_call_id = call_id.value_or("");
  QM_ASSIGN_OR_RETURN(std::optional<std::string> name, OptionalString(msg, "name", where));
  out.name = name.value_or("");
  return out;
}

// Looks `key` up in the nested kwargs objects first, then at the top level.
const Json* FindOption(const Json& request, const char* key) {
  for (const char* nested : {"chat_template_kwargs", "kwargs"}) {
    const auto it = request.find(nested);
    if (it != request.end() && it->is_object()) {
      const auto found = it->find(key);
      if (found != it->end()) return &*found;
    }
  }
  const auto it = request.find(key);
  return it == request.end() ? nullptr : &*it;
}

}  // namespace

Result<std::vector<ChatMessage>> ParseChatMessagesJson(const Json& messages) {
  if (!messages.is_array()) {
    return Error(StatusCode::kInvalidArgument, "messages: expected an array, got {}",
                 JsonTypeName(messages));
  }
  if (!JsonDepthWithin(messages, kMaxJsonDepth)) {
    return Error(StatusCode::kInvalidArgument, "messages: JSON nested deeper than {} levels",
                 kMaxJsonDepth);
  }
  std::vector<ChatMessage> out;
  out.reserve(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    QM_ASSIGN_OR_RETURN(ChatMessage m, ParseMessage(messages[i], fmt::format("messages[{}]", i)));
    out.push_back(std::move(m));
  }
  return out;
}

Result<ChatRequest> ParseChatRequestJson(const Json& request) {
  if (!request.is_object()) {
    return Error(StatusCode::kInvalidArgument, "chat request: expected an object, got {}",
                 JsonTypeName(request));
  }
  for (const char* nested : {"chat_template_kwargs", "kwargs"}) {
    const auto it = request.find(nested);
    if (it != request.end() && !it->is_null() && !it->is_object()) {
      return Error(StatusCode::kInvalidArgument, "{}: expected an object, got {}", nested,
                   JsonTypeName(*it));
    }
  }
  ChatRequest out;
  const auto messages = request.find("messages");
  if (messages == request.end()) {
    return Error(StatusCode::kInvalidArgument, "messages: missing");
  }
  QM_ASSIGN_OR_RETURN(out.messages, ParseChatMessagesJson(*messages));
  if (out.messages.empty()) return Error(StatusCode::kInvalidArgument, "messages: empty");

  if (const Json* tools = FindOption(request, "tools"); tools != nullptr && !tools->is_null()) {
    if (!tools->is_array()) {
      return Error(StatusCode::kInvalidArgument, "tools: expected an array, got {}",
                   JsonTypeName(*tools));
    }
    for (size_t t = 0; t < tools->size(); ++t) {
      if (!(*tools)[t].is_object()) {
        return Error(StatusCode::kInvalidArgument, "tools[{}]: expected an object, got {}", t,
                     JsonTypeName((*tools)[t]));
      }
    }
    if (!JsonDepthWithin(*tools, kMaxJsonDepth)) {
      return Error(StatusCode::kInvalidArgument, "tools: JSON nested deeper than {} levels",
                   kMaxJsonDepth);
    }
    out.options.tools = *tools;
  }
  if (const Json* v = FindOption(request, "enable_thinking"); v != nullptr && !v->is_null()) {
    if (!v->is_boolean()) {
      return Error(StatusCode::kInvalidArgument, "enable_thinking: expected a boolean, got {}",
                   JsonTypeName(*v));
    }
    out.options.enable_thinking = v->get<bool>();
  }
  if (const Json* v = FindOption(request, "add_generation_prompt"); v != nullptr) {
    if (!v->is_boolean()) {
      return Error(StatusCode::kInvalidArgument,
                   "add_generation_prompt: expected a boolean, got {}", JsonTypeName(*v));
    }
    out.options.add_generation_prompt = v->get<bool>();
  }
  return out;
}

}  // namespace qwenmux::chat
