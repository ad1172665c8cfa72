#include "server/upstream_stream.h"

#include <fmt/format.h>

#include "server/upstream_translate.h"

namespace qwenmux::server {

namespace {

// The message of an error object: {"error": "..."} or {"error": {"message": "..."}}.
std::string ErrorOf(const Json& j) {
  const Json& e = j["error"];
  if (e.is_string()) return e.get<std::string>();
  if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
  return Dump(e);
}

std::string Snip(std::string_view s) { return std::string(s.substr(0, 120)) + (s.size() > 120 ? "..." : ""); }

}  // namespace

Status StreamTranslator::Feed(std::string_view chunk, std::string* out) {
  pending_.append(chunk);
  size_t start = 0;
  for (size_t nl; (nl = pending_.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string_view line(pending_.data() + start, nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty() && !done_) QM_RETURN_IF_ERROR(Line(line, out));
  }
  pending_.erase(0, start);
  if (pending_.size() > max_line_)
    return Error(StatusCode::kResourceExhausted, "a line of the stream is longer than {} bytes", max_line_);
  return Status::Ok();
}

// --- Ollama NDJSON -> OpenAI SSE ---

OllamaToSse::OllamaToSse(std::string model, bool include_usage, size_t max_line, bool completion)
    : StreamTranslator(max_line), model_(std::move(model)), id_(NewId(completion ? "cmpl-" : "chatcmpl-")),
      created_(UnixNow()), include_usage_(include_usage), completion_(completion) {}

// A chunk of `delta`; completion: of delta.content as choices[0].text (other fields dropped).
std::string OllamaToSse::Chunk(Json delta, const Json& finish) const {
  Json choice{{"index", 0}, {"finish_reason", finish}};
  if (completion_) {
    choice["text"] = delta.contains("content") ? delta["content"] : Json("");
    choice["logprobs"] = nullptr;
  } else {
    choice["delta"] = std::move(delta);
  }
  Json c{{"id", id_}, {"object", completion_ ? "text_completion" : "chat.completion.chunk"}, {"created", created_},
         {"model", model_}, {"choices", Json::array({std::move(choice)})}};
  return "data: " + Dump(c) + "\n\n";
}

Status OllamaToSse::Line(std::string_view line, std::string* out) {
  const Json j = Json::parse(line, nullptr, false);
  if (!j.is_object()) return Error(StatusCode::kInvalidArgument, "a line of the stream is not a JSON object: {}", Snip(line));
  if (j.contains("error")) return Error(StatusCode::kUnavailable, "{}", ErrorOf(j));
  if (!started_ && !completion_) *out += Chunk(Json{{"role", "assistant"}, {"content", ""}}, nullptr);
  started_ = true;
  if (completion_ && j.contains("response") && j["response"].is_string() && !j["response"].get<std::string>().empty())
    *out += Chunk(Json{{"content", j["response"]}}, nullptr);  // an /api/generate line ("thinking" has no place)
  if (!completion_ && j.contains("message") && j["message"].is_object()) {
    const Json& m = j["message"];
    if (m.contains("thinking") && m["thinking"].is_string() && !m["thinking"].get<std::string>().empty())
      *out += Chunk(Json{{"reasoning_content", m["thinking"]}}, nullptr);
    if (m.contains("content") && m["content"].is_string() && !m["content"].get<std::string>().empty())
      *out += Chunk(Json{{"content", m["content"]}}, nullptr);
    if (m.contains("tool_calls") && m["tool_calls"].is_array()) {
      Json calls = Json::array();
      for (const Json& c : m["tool_calls"]) {
        if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) continue;
        const Json& f = c["function"];
        const Json args = f.contains("arguments") ? f["arguments"] : Json::object();
        calls.push_back(Json{{"index", tool_calls_++}, {"id", NewId("call_")}, {"type", "function"},
                             {"function", {{"name", f.value("name", "")},
                                           {"arguments", args.is_string() ? args.get<std::string>() : Dump(args)}}}});
      }
      if (!calls.empty()) *out += Chunk(Json{{"tool_calls", std::move(calls)}}, nullptr);
    }
  }
  if (j.value("done", false)) {
    done_ = true;
    const std::string reason = tool_calls_ > 0 ? "tool_calls" : j.value("done_reason", "stop") == "length" ? "length" : "stop";
    *out += Chunk(Json::object(), reason);
    if (include_usage_) {
      const int64_t p = j.value("prompt_eval_count", int64_t{0}), c = j.value("eval_count", int64_t{0});
      Json u{{"id", id_}, {"object", completion_ ? "text_completion" : "chat.completion.chunk"}, {"created", created_}, {"model", model_},
             {"choices", Json::array()},
             {"usage", {{"prompt_tokens", p}, {"completion_tokens", c}, {"total_tokens", p + c}}}};
      *out += "data: " + Dump(u) + "\n\n";
    }
    *out += "data: [DONE]\n\n";
  }
  return Status::Ok();
}

Status OllamaToSse::Finish(std::string* out) {
  QM_RETURN_IF_ERROR(Feed("\n", out));
  if (!done_) return Error(StatusCode::kUnavailable, "the stream ended before its \"done\": true line");
  return Status::Ok();
}

// --- OpenAI SSE -> Ollama NDJSON ---

SseToOllama::SseToOllama(std::string model, size_t max_line, bool generate)
    : StreamTranslator(max_line), model_(std::move(model)), generate_(generate) {}

// One line of `message`; generate: its content as "response" and its thinking as "thinking".
std::string SseToOllama::Message(Json message, bool done) const {
  Json line{{"model", model_}, {"created_at", OllamaTimestamp()}};
  if (generate_) {
    line["response"] = message.value("content", "");
    if (message.contains("thinking")) line["thinking"] = message["thinking"];
  } else {
    line["message"] = std::move(message);
  }
  line["done"] = done;
  return Dump(line) + "\n";
}

Status SseToOllama::Line(std::string_view line, std::string* out) {
  if (!line.starts_with("data:")) return Status::Ok();  // event:, id:, comments
  line.remove_prefix(5);
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  if (line == "[DONE]") {
    End(out);
    return Status::Ok();
  }
  const Json j = Json::parse(line, nullptr, false);
  if (!j.is_object()) return Error(StatusCode::kInvalidArgument, "an event of the stream is not a JSON object: {}", Snip(line));
  if (j.contains("error")) return Error(StatusCode::kUnavailable, "{}", ErrorOf(j));
  if (j.contains("usage") && j["usage"].is_object()) {
    prompt_tokens_ = j["usage"].value("prompt_tokens", int64_t{0});
    completion_tokens_ = j["usage"].value("completion_tokens", int64_t{0});
  }
  if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty() || !j["choices"][0].is_object())
    return Status::Ok();
  const Json& ch = j["choices"][0];
  if (ch.contains("finish_reason") && ch["finish_reason"].is_string()) finish_ = ch["finish_reason"].get<std::string>();
  if (ch.contains("text") && ch["text"].is_string() && !ch["text"].get<std::string>().empty())  // a text_completion chunk
    *out += Message(Json{{"role", "assistant"}, {"content", ch["text"]}}, false);
  if (!ch.contains("delta") || !ch["delta"].is_object()) return Status::Ok();
  const Json& d = ch["delta"];
  for (const char* k : {"reasoning_content", "reasoning"}) {
    if (d.contains(k) && d[k].is_string() && !d[k].get<std::string>().empty())
      *out += Message(Json{{"role", "assistant"}, {"content", ""}, {"thinking", d[k]}}, false);
  }
  if (d.contains("content") && d["content"].is_string() && !d["content"].get<std::string>().empty())
    *out += Message(Json{{"role", "assistant"}, {"content", d["content"]}}, false);
  if (d.contains("tool_calls") && d["tool_calls"].is_array()) {
    for (const Json& c : d["tool_calls"]) {
      if (!c.is_object()) continue;
      Call& call = calls_[c.value("index", int64_t{0})];
      if (c.contains("id") && c["id"].is_string()) call.id = c["id"].get<std::string>();
      if (c.contains("function") && c["function"].is_object()) {
        const Json& f = c["function"];
        if (f.contains("name") && f["name"].is_string()) call.name += f["name"].get<std::string>();
        if (f.contains("arguments") && f["arguments"].is_string()) call.arguments += f["arguments"].get<std::string>();
      }
    }
  }
  return Status::Ok();
}

void SseToOllama::End(std::string* out) {
  if (done_) return;
  done_ = true;
  if (!calls_.empty()) {  // whole calls, as Ollama sends them
    Json calls = Json::array();
    for (const auto& [index, c] : calls_) {
      calls.push_back(Json{{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
    }
    *out += Message(Json{{"role", "assistant"}, {"content", ""}, {"tool_calls", OllamaCallsOf(calls)}}, false);
  }
  Json last{{"model", model_}, {"created_at", OllamaTimestamp()}};
  if (generate_) last["response"] = "";
  else last["message"] = {{"role", "assistant"}, {"content", ""}};
  last["done"] = true;
  last["done_reason"] = finish_ == "length" ? "length" : "stop";
  if (prompt_tokens_ >= 0) {
    last["prompt_eval_count"] = prompt_tokens_;
    last["eval_count"] = completion_tokens_;
  }
  *out += Dump(last) + "\n";
}

Status SseToOllama::Finish(std::string* out) {
  QM_RETURN_IF_ERROR(Feed("\n", out));
  if (done_) return Status::Ok();
  if (!finish_.empty()) {  // a backend that ends without [DONE] after the last choice
    End(out);
    return Status::Ok();
  }
  return Error(StatusCode::kUnavailable, "the stream ended before its last event");
}

}  // namespace qwenmux::server
