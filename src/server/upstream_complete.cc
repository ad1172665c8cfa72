// Completions translated between the dialects for the backends (upstream_translate.h):
// OpenAI /v1/completions <-> Ollama /api/generate, requests and whole answers. The sampling
// fields, format and think go through the chat translations, so both keep one mapping.
#include <fmt/format.h>

#include "server/upstream_translate.h"

namespace qwenmux::server {

namespace {

std::string FinishOf(const Json& choice) {
  return choice.contains("finish_reason") && choice["finish_reason"].is_string() ? choice["finish_reason"].get<std::string>()
                                                                                  : "stop";
}

}  // namespace

Result<Json> OpenAiCompletionToOllama(const Json& body, const std::string& model) {
  const Json* prompt = body.contains("prompt") ? &body["prompt"] : nullptr;
  if (prompt && prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) prompt = &(*prompt)[0];
  if (!prompt || !prompt->is_string())
    return Error(StatusCode::kUnsupported, "prompt: only a text prompt (a string or an array of one string) is "
                 "translated to an ollama-dialect backend");
  if (body.value("echo", false)) return Error(StatusCode::kUnsupported, "echo: not translated to an ollama-dialect backend");
  if (body.contains("logprobs") && !body["logprobs"].is_null())
    return Error(StatusCode::kUnsupported, "logprobs: not translated to an ollama-dialect backend");
  Json as_chat = body;  // the chat translation maps n, sampling, stop, max_tokens, response_format
  as_chat.erase("prompt");
  as_chat["messages"] = Json::array();
  QM_ASSIGN_OR_RETURN(Json out, OpenAiChatToOllama(as_chat, model));
  out.erase("messages");
  out["prompt"] = *prompt;
  out["raw"] = true;
  if (body.contains("suffix") && body["suffix"].is_string()) out["suffix"] = body["suffix"];
  return out;
}

Result<Json> OllamaGenerateAnswerToOpenAi(const Json& answer, const std::string& model) {
  if (!answer.is_object() || !answer.contains("response") || !answer["response"].is_string())
    return Error(StatusCode::kInvalidArgument, "the answer has no `response` text");
  const int64_t prompt = answer.value("prompt_eval_count", int64_t{0}), completion = answer.value("eval_count", int64_t{0});
  const std::string finish = answer.value("done_reason", "stop") == "length" ? "length" : "stop";
  return Json{{"id", NewId("cmpl-")},
              {"object", "text_completion"},
              {"created", UnixNow()},
              {"model", model},
              {"choices", Json::array({Json{{"index", 0}, {"text", answer["response"]}, {"logprobs", nullptr},
                                            {"finish_reason", finish}}})},
              {"usage", {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}}}};
}

Result<Json> OllamaGenerateToOpenAi(const Json& body, const std::string& model, bool* chat) {
  if (body.contains("images") && body["images"].is_array() && !body["images"].empty())
    return Error(StatusCode::kUnsupported, "images: not translated to an openai-dialect backend");
  for (const char* k : {"context", "suffix"}) {
    if (body.contains(k) && !body[k].is_null())
      return Error(StatusCode::kUnsupported, "{}: not translated to an openai-dialect backend", k);
  }
  if (body.contains("prompt") && !body["prompt"].is_string())
    return Error(StatusCode::kInvalidArgument, "prompt: expected a string");
  const std::string prompt = body.value("prompt", ""), system = body.value("system", "");
  *chat = !body.value("raw", false);
  Json as_chat = body;  // the chat translation maps stream, options, format, think
  for (const char* k : {"prompt", "system", "raw", "template"}) as_chat.erase(k);
  as_chat["messages"] = Json::array();
  if (*chat && !system.empty()) as_chat["messages"].push_back(Json{{"role", "system"}, {"content", system}});
  if (*chat) as_chat["messages"].push_back(Json{{"role", "user"}, {"content", prompt}});
  QM_ASSIGN_OR_RETURN(Json out, OllamaChatToOpenAiRequest(as_chat, model));
  if (!*chat) {  // raw: the text as it is, to /v1/completions
    out.erase("messages");
    out.erase("chat_template_kwargs");
    out["prompt"] = prompt;
  }
  return out;
}

Result<Json> OpenAiAnswerToOllamaGenerate(const Json& answer, const std::string& model) {
  if (!answer.is_object() || !answer.contains("choices") || !answer["choices"].is_array() || answer["choices"].empty() ||
      !answer["choices"][0].is_object())
    return Error(StatusCode::kInvalidArgument, "the answer has no choices[0]");
  const Json& choice = answer["choices"][0];
  Json out;
  if (choice.contains("text") && choice["text"].is_string()) {  // text_completion
    out = Json{{"model", model}, {"created_at", OllamaTimestamp()}, {"response", choice["text"]}, {"done", true},
               {"done_reason", FinishOf(choice) == "length" ? "length" : "stop"}};
    if (answer.contains("usage") && answer["usage"].is_object()) {
      out["prompt_eval_count"] = answer["usage"].value("prompt_tokens", int64_t{0});
      out["eval_count"] = answer["usage"].value("completion_tokens", int64_t{0});
    }
    return out;
  }
  QM_ASSIGN_OR_RETURN(out, OpenAiChatAnswerToOllama(answer, model));  // chat.completion: its message's text
  const Json message = out["message"];
  out.erase("message");
  out["response"] = message.value("content", "");
  if (message.contains("thinking")) out["thinking"] = message["thinking"];
  return out;
}

}  // namespace qwenmux::server
