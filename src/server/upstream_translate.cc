#include "server/upstream_translate.h"

namespace qwenmux::server {

Result<Json> OpenAiChatToOllama(const Json& body, const std::string& model) {
  if (body.value("stream", false))
    return Error(StatusCode::kUnsupported,
                 "stream: streamed OpenAI chat requests to an ollama-dialect backend are not translated yet "
                 "(use the backend's dialect, /api/chat, or stream: false)");
  if (body.contains("n") && body["n"].is_number_integer() && body["n"].get<int64_t>() > 1)
    return Error(StatusCode::kUnsupported, "n: an ollama-dialect backend answers one choice");
  Json out{{"model", model}, {"stream", false}};
  Json messages = Json::array();
  if (body.contains("messages") && body["messages"].is_array()) {
    for (const Json& m : body["messages"]) {
      if (!m.is_object()) return Error(StatusCode::kInvalidArgument, "messages: expected objects");
      Json o{{"role", m.value("role", "user")}};
      if (m.contains("content") && m["content"].is_string()) {
        o["content"] = m["content"];
      } else if (m.contains("content") && m["content"].is_array()) {  // text parts
        std::string text;
        for (const Json& part : m["content"]) {
          if (part.is_object() && part.value("type", "") == "text") text += part.value("text", "");
          else return Error(StatusCode::kUnsupported, "messages: only text content parts are translated");
        }
        o["content"] = text;
      } else {
        o["content"] = "";
      }
      if (m.contains("reasoning_content") && m["reasoning_content"].is_string()) o["thinking"] = m["reasoning_content"];
      if (m.contains("tool_calls") && m["tool_calls"].is_array()) {
        Json calls = Json::array();
        for (const Json& c : m["tool_calls"]) {
          if (!c.is_object() || !c.contains("function")) continue;
          const Json& f = c["function"];
          Json args = Json::object();
          if (f.contains("arguments") && f["arguments"].is_string()) {
            args = Json::parse(f["arguments"].get<std::string>(), nullptr, false);
            if (args.is_discarded()) return Error(StatusCode::kInvalidArgument, "messages: tool call arguments are not JSON");
          } else if (f.contains("arguments")) {
            args = f["arguments"];
          }
          calls.push_back(Json{{"function", {{"name", f.value("name", "")}, {"arguments", args}}}});
        }
        o["tool_calls"] = std::move(calls);
      }
      if (m.contains("tool_call_id")) o["tool_call_id"] = m["tool_call_id"];
      if (m.contains("name") && m["name"].is_string()) o["tool_name"] = m["name"];
      messages.push_back(std::move(o));
    }
  }
  out["messages"] = std::move(messages);
  if (body.contains("tools")) out["tools"] = body["tools"];
  Json options = Json::object();
  for (const char* k : {"temperature", "top_p", "top_k", "seed", "min_p", "presence_penalty", "frequency_penalty"}) {
    if (body.contains(k) && !body[k].is_null()) options[k] = body[k];
  }
  if (body.contains("stop") && !body["stop"].is_null()) {
    options["stop"] = body["stop"].is_string() ? Json::array({body["stop"]}) : body["stop"];
  }
  for (const char* k : {"max_completion_tokens", "max_tokens"}) {
    if (body.contains(k) && body[k].is_number_integer()) options["num_predict"] = body[k];
  }
  if (!options.empty()) out["options"] = std::move(options);
  if (body.contains("response_format") && body["response_format"].is_object()) {
    const Json& rf = body["response_format"];
    const std::string type = rf.value("type", "text");
    if (type == "json_object") out["format"] = "json";
    else if (type == "json_schema" && rf.contains("json_schema") && rf["json_schema"].contains("schema"))
      out["format"] = rf["json_schema"]["schema"];
  }
  if (body.contains("chat_template_kwargs") && body["chat_template_kwargs"].is_object() &&
      body["chat_template_kwargs"].contains("enable_thinking") && body["chat_template_kwargs"]["enable_thinking"].is_boolean()) {
    out["think"] = body["chat_template_kwargs"]["enable_thinking"];
  }
  if (body.contains("keep_alive")) out["keep_alive"] = body["keep_alive"];
  return out;
}

Result<Json> OllamaChatToOpenAi(const Json& answer, const std::string& model) {
  if (!answer.is_object() || !answer.contains("message") || !answer["message"].is_object())
    return Error(StatusCode::kInvalidArgument, "the answer has no `message` object");
  const Json& m = answer["message"];
  Json message{{"role", "assistant"}, {"content", m.value("content", "")}};
  if (m.contains("thinking") && m["thinking"].is_string() && !m["thinking"].get<std::string>().empty())
    message["reasoning_content"] = m["thinking"];
  std::string finish = answer.value("done_reason", "stop") == "length" ? "length" : "stop";
  if (m.contains("tool_calls") && m["tool_calls"].is_array() && !m["tool_calls"].empty()) {
    Json calls = Json::array();
    for (const Json& c : m["tool_calls"]) {
      if (!c.is_object() || !c.contains("function")) continue;
      const Json& f = c["function"];
      const Json args = f.contains("arguments") ? f["arguments"] : Json::object();
      calls.push_back(Json{{"id", NewId("call_")},
                           {"type", "function"},
                           {"function", {{"name", f.value("name", "")},
                                         {"arguments", args.is_string() ? args.get<std::string>() : Dump(args)}}}});
    }
    message["tool_calls"] = std::move(calls);
    finish = "tool_calls";
  }
  const int64_t prompt = answer.value("prompt_eval_count", int64_t{0}), completion = answer.value("eval_count", int64_t{0});
  return Json{{"id", NewId("chatcmpl-")},
              {"object", "chat.completion"},
              {"created", UnixNow()},
              {"model", model},
              {"choices", Json::array({Json{{"index", 0}, {"message", std::move(message)}, {"finish_reason", finish}}})},
              {"usage", {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}}}};
}

}  // namespace qwenmux::server
