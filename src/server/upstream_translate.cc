#include "server/upstream_translate.h"

#include <algorithm>
#include <chrono>
#include <ctime>

#include <fmt/format.h>

namespace qwenmux::server {

Result<Json> OpenAiChatToOllama(const Json& body, const std::string& model) {
  if (body.contains("n") && body["n"].is_number_integer() && body["n"].get<int64_t>() > 1)
    return Error(StatusCode::kUnsupported, "n: an ollama-dialect backend answers one choice");
  const bool stream = body.value("stream", false);
  Json out{{"model", model}, {"stream", stream}};
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
  if (body.contains("tool_choice") && !body["tool_choice"].is_null()) {  // Ollama has none: only its default
    const Json& tc = body["tool_choice"];
    if (tc == "none") out.erase("tools");
    else if (tc != "auto")
      return Error(StatusCode::kUnsupported, "tool_choice: an ollama-dialect backend cannot be made to call a tool "
                   "(use \"auto\" or \"none\")");
  }
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

namespace {

// Ollama options -> OpenAI sampling fields.
void OptionsToOpenAi(const Json& options, Json* out) {
  if (!options.is_object()) return;
  for (const char* k : {"temperature", "top_p", "top_k", "seed", "min_p", "presence_penalty", "frequency_penalty"}) {
    if (options.contains(k) && !options[k].is_null()) (*out)[k] = options[k];
  }
  if (options.contains("stop") && !options["stop"].is_null()) (*out)["stop"] = options["stop"];
  if (options.contains("num_predict") && options["num_predict"].is_number_integer() &&
      options["num_predict"].get<int64_t>() >= 0)
    (*out)["max_tokens"] = options["num_predict"];
}

}  // namespace

Result<Json> OllamaChatToOpenAiRequest(const Json& body, const std::string& model) {
  const bool stream = !(body.contains("stream") && body["stream"] == false);
  Json out{{"model", model}, {"stream", stream}};
  if (stream) out["stream_options"] = {{"include_usage", true}};
  Json messages = Json::array();
  int64_t next_id = 0;
  std::vector<std::pair<std::string, std::string>> open_calls;  // (id, function name) not yet answered
  if (body.contains("messages") && body["messages"].is_array()) {
    for (const Json& m : body["messages"]) {
      if (!m.is_object()) return Error(StatusCode::kInvalidArgument, "messages: expected objects");
      if (m.contains("images") && m["images"].is_array() && !m["images"].empty())
        return Error(StatusCode::kUnsupported, "messages: images are not translated to an openai-dialect backend");
      const std::string role = m.value("role", "user");
      Json o{{"role", role}, {"content", m.contains("content") && m["content"].is_string() ? m["content"] : Json("")}};
      if (m.contains("thinking") && m["thinking"].is_string()) o["reasoning_content"] = m["thinking"];
      if (m.contains("tool_calls") && m["tool_calls"].is_array()) {
        Json calls = Json::array();
        for (const Json& c : m["tool_calls"]) {
          if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) continue;
          const Json& f = c["function"];
          const std::string id = c.value("id", fmt::format("call_{}", next_id++));
          const Json args = f.contains("arguments") ? f["arguments"] : Json::object();
          calls.push_back(Json{{"id", id}, {"type", "function"},
                               {"function", {{"name", f.value("name", "")},
                                             {"arguments", args.is_string() ? args.get<std::string>() : Dump(args)}}}});
          open_calls.emplace_back(id, f.value("name", ""));
        }
        o["tool_calls"] = std::move(calls);
      }
      if (role == "tool") {  // OpenAI needs the call's id: given, or the oldest open call (of that name)
        std::string id = m.value("tool_call_id", "");
        const std::string tool = m.value("tool_name", m.value("name", ""));
        if (id.empty()) {
          auto it = std::find_if(open_calls.begin(), open_calls.end(),
                                 [&](const auto& c) { return tool.empty() || c.second == tool; });
          if (it != open_calls.end()) id = it->first;
        }
        std::erase_if(open_calls, [&](const auto& c) { return c.first == id; });
        o["tool_call_id"] = id.empty() ? fmt::format("call_{}", next_id++) : id;
        if (!tool.empty()) o["name"] = tool;
      }
      messages.push_back(std::move(o));
    }
  }
  out["messages"] = std::move(messages);
  if (body.contains("tools")) out["tools"] = body["tools"];
  if (body.contains("options")) OptionsToOpenAi(body["options"], &out);
  if (body.contains("format") && !body["format"].is_null()) {
    const Json& f = body["format"];
    if (f.is_string() && f == "json") out["response_format"] = {{"type", "json_object"}};
    else if (f.is_object()) out["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"name", "format"}, {"schema", f}}}};
    else if (!(f.is_string() && f.get<std::string>().empty()))
      return Error(StatusCode::kInvalidArgument, "format: expected \"json\" or a JSON schema object");
  }
  if (body.contains("think") && body["think"].is_boolean()) out["chat_template_kwargs"] = {{"enable_thinking", body["think"]}};
  return out;
}

Result<Json> OpenAiChatAnswerToOllama(const Json& answer, const std::string& model) {
  if (!answer.is_object() || !answer.contains("choices") || !answer["choices"].is_array() || answer["choices"].empty() ||
      !answer["choices"][0].is_object() || !answer["choices"][0].contains("message"))
    return Error(StatusCode::kInvalidArgument, "the answer has no choices[0].message");
  const Json& choice = answer["choices"][0];
  const Json& m = choice["message"];
  Json message{{"role", "assistant"}, {"content", m.contains("content") && m["content"].is_string() ? m["content"] : Json("")}};
  for (const char* k : {"reasoning_content", "reasoning"}) {
    if (m.contains(k) && m[k].is_string() && !m[k].get<std::string>().empty()) message["thinking"] = m[k];
  }
  if (m.contains("tool_calls") && m["tool_calls"].is_array() && !m["tool_calls"].empty())
    message["tool_calls"] = OllamaCallsOf(m["tool_calls"]);
  const std::string finish = choice.contains("finish_reason") && choice["finish_reason"].is_string()
                                 ? choice["finish_reason"].get<std::string>() : "stop";
  Json out{{"model", model}, {"created_at", OllamaTimestamp()}, {"message", std::move(message)}, {"done", true},
           {"done_reason", finish == "length" ? "length" : "stop"}};
  if (answer.contains("usage") && answer["usage"].is_object()) {
    out["prompt_eval_count"] = answer["usage"].value("prompt_tokens", int64_t{0});
    out["eval_count"] = answer["usage"].value("completion_tokens", int64_t{0});
  }
  return out;
}

Json OllamaCallsOf(const Json& openai_calls) {
  Json calls = Json::array();
  for (const Json& c : openai_calls) {
    if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) continue;
    const Json& f = c["function"];
    Json args = Json::object();
    if (f.contains("arguments") && f["arguments"].is_string()) {
      args = Json::parse(f["arguments"].get<std::string>(), nullptr, false);
      if (args.is_discarded()) args = f["arguments"];  // not JSON: passed on as the text
    } else if (f.contains("arguments")) {
      args = f["arguments"];
    }
    calls.push_back(Json{{"function", {{"name", f.value("name", "")}, {"arguments", std::move(args)}}}});
  }
  return calls;
}

std::string OllamaTimestamp() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  return fmt::format("{}.{:06d}Z", buf, us);
}

Result<Json> OpenAiEmbedToOllama(const Json& body, const std::string& model) {
  if (!body.contains("input")) return Error(StatusCode::kInvalidArgument, "input: required");
  const Json& in = body["input"];
  if (!in.is_string() && !(in.is_array() && std::all_of(in.begin(), in.end(), [](const Json& x) { return x.is_string(); })))
    return Error(StatusCode::kUnsupported, "input: only text (a string or a list of strings) is translated to an ollama-dialect backend");
  const std::string encoding = body.contains("encoding_format") && body["encoding_format"].is_string()
                                   ? body["encoding_format"].get<std::string>() : "float";
  if (encoding != "float" && encoding != "base64")
    return Error(StatusCode::kInvalidArgument, "encoding_format: expected float or base64");
  Json out{{"model", model}, {"input", in}};
  if (body.contains("dimensions")) out["dimensions"] = body["dimensions"];
  return out;
}

Result<Json> OllamaEmbedAnswerToOpenAi(const Json& answer, const std::string& model, bool base64) {
  if (!answer.is_object() || !answer.contains("embeddings") || !answer["embeddings"].is_array())
    return Error(StatusCode::kInvalidArgument, "the answer has no `embeddings` list");
  Json data = Json::array();
  int64_t i = 0;
  for (const Json& e : answer["embeddings"]) {
    if (!e.is_array()) return Error(StatusCode::kInvalidArgument, "embeddings[{}]: expected a list of numbers", i);
    Json v = e;
    if (base64) {  // little-endian float32, as OpenAI's encoding_format "base64"
      std::vector<float> f;
      for (const Json& x : e) {
        if (!x.is_number()) return Error(StatusCode::kInvalidArgument, "embeddings[{}]: expected a list of numbers", i);
        f.push_back(x.get<float>());
      }
      v = Base64(f.data(), f.size() * sizeof(float));
    }
    data.push_back(Json{{"object", "embedding"}, {"index", i++}, {"embedding", std::move(v)}});
  }
  const int64_t tokens = answer.value("prompt_eval_count", int64_t{0});
  return Json{{"object", "list"}, {"data", std::move(data)}, {"model", model},
              {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}};
}

Result<Json> OllamaEmbedToOpenAi(const Json& body, const std::string& model, bool legacy) {
  const char* key = legacy ? "prompt" : "input";
  if (!body.contains(key)) return Error(StatusCode::kInvalidArgument, "{}: required", key);
  Json out{{"model", model}, {"input", body[key]}, {"encoding_format", "float"}};
  if (body.contains("dimensions")) out["dimensions"] = body["dimensions"];
  return out;
}

Result<Json> OpenAiEmbedAnswerToOllama(const Json& answer, const std::string& model, bool legacy) {
  if (!answer.is_object() || !answer.contains("data") || !answer["data"].is_array())
    return Error(StatusCode::kInvalidArgument, "the answer has no `data` list");
  std::vector<Json> rows(answer["data"].size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const Json& d = answer["data"][i];
    if (!d.is_object() || !d.contains("embedding") || !d["embedding"].is_array())
      return Error(StatusCode::kInvalidArgument, "data[{}]: no float `embedding` list", i);
    const size_t at = d.contains("index") && d["index"].is_number_unsigned() ? d["index"].get<size_t>() : i;
    if (at >= rows.size()) return Error(StatusCode::kInvalidArgument, "data[{}]: index {} out of range", i, at);
    rows[at] = d["embedding"];
  }
  if (legacy) {
    if (rows.empty()) return Error(StatusCode::kInvalidArgument, "the answer has no embedding");
    return Json{{"embedding", rows[0]}};
  }
  Json out{{"model", model}, {"embeddings", Json(rows)}};
  if (answer.contains("usage") && answer["usage"].is_object()) out["prompt_eval_count"] = answer["usage"].value("prompt_tokens", int64_t{0});
  return out;
}

}  // namespace qwenmux::server
