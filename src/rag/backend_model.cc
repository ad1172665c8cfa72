#include "rag/backend_model.h"

#include <cmath>

#include <fmt/format.h>

namespace qwenmux::rag {

using Json = nlohmann::ordered_json;

Result<BackendChatResult> BackendChat(const BackendAccess& backend, const std::string& model, std::string_view system,
                                      std::string_view user, const BackendChatOptions& options) {
  if (!backend.call) return Error(StatusCode::kInvalidArgument, "backend model {}: no backends are configured", model);
  Json body{{"messages", Json::array({Json{{"role", "system"}, {"content", std::string(system)}},
                                      Json{{"role", "user"}, {"content", std::string(user)}}})},
            {"max_tokens", options.max_tokens},
            {"temperature", options.temperature},
            {"chat_template_kwargs", {{"enable_thinking", options.thinking}}}};
  if (options.temperature > 0) body["seed"] = options.seed;
  if (options.json_schema) {
    body["response_format"] = {{"type", "json_schema"},
                               {"json_schema", {{"name", "answer"}, {"strict", true}, {"schema", *options.json_schema}}}};
  }
  QM_ASSIGN_OR_RETURN(Json answer, backend.call(BackendCallKind::kChat, model, std::move(body)));
  const Json* choices = answer.contains("choices") ? &answer["choices"] : nullptr;
  if (!choices || !choices->is_array() || choices->empty() || !(*choices)[0].is_object())
    return Error(StatusCode::kUnavailable, "backend model {}: the answer has no choices", model);
  const Json& c = (*choices)[0];
  BackendChatResult out;
  if (c.contains("message") && c["message"].is_object() && c["message"].contains("content") &&
      c["message"]["content"].is_string())
    out.text = c["message"]["content"].get<std::string>();
  if (c.contains("finish_reason") && c["finish_reason"].is_string()) out.finish_reason = c["finish_reason"];
  if (answer.contains("usage") && answer["usage"].is_object()) {
    out.prompt_tokens = answer["usage"].value("prompt_tokens", int64_t{0});
    out.completion_tokens = answer["usage"].value("completion_tokens", int64_t{0});
  }
  return out;
}

Result<std::vector<std::vector<float>>> BackendEmbed(const BackendAccess& backend, const std::string& model,
                                                     const std::vector<std::string>& texts, int32_t dims,
                                                     int64_t* tokens) {
  if (!backend.call) return Error(StatusCode::kInvalidArgument, "backend model {}: no backends are configured", model);
  if (texts.empty()) return std::vector<std::vector<float>>{};
  Json body{{"input", texts}};
  if (dims > 0) body["dimensions"] = dims;
  QM_ASSIGN_OR_RETURN(Json answer, backend.call(BackendCallKind::kEmbeddings, model, std::move(body)));
  const Json* data = answer.contains("data") ? &answer["data"] : nullptr;
  if (!data || !data->is_array() || data->size() != texts.size())
    return Error(StatusCode::kUnavailable, "backend model {}: asked for {} embeddings, the answer has {}", model,
                 texts.size(), data && data->is_array() ? data->size() : 0);
  std::vector<std::vector<float>> out(texts.size());
  for (size_t i = 0; i < data->size(); ++i) {
    const Json& d = (*data)[i];
    const size_t at = d.contains("index") && d["index"].is_number_unsigned() ? d["index"].get<size_t>() : i;
    if (at >= out.size() || !out[at].empty() || !d.contains("embedding") || !d["embedding"].is_array() ||
        d["embedding"].empty())
      return Error(StatusCode::kUnavailable, "backend model {}: embedding {} of the answer is missing or invalid", model, i);
    std::vector<float>& v = out[at];
    double norm = 0;
    for (const Json& x : d["embedding"]) {
      if (!x.is_number()) return Error(StatusCode::kUnavailable, "backend model {}: embedding {} has a non-number", model, i);
      v.push_back(x.get<float>());
      norm += static_cast<double>(v.back()) * v.back();
    }
    if (v.size() != out[0].size() && !out[0].empty())
      return Error(StatusCode::kUnavailable, "backend model {}: embeddings of different dimensions ({} and {})", model,
                   out[0].size(), v.size());
    if (norm > 0) {
      const float inv = static_cast<float>(1.0 / std::sqrt(norm));
      for (float& x : v) x *= inv;
    }
  }
  if (tokens && answer.contains("usage") && answer["usage"].is_object())
    *tokens += answer["usage"].value("prompt_tokens", int64_t{0});
  return out;
}

}  // namespace qwenmux::rag
