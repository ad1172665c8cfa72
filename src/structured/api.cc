// Request helpers for the OpenAI / Ollama dialects and the compiled-constraint cache.
#include <cstdint>

#include "structured/structured.h"

namespace qwenmux::structured {

using json = nlohmann::ordered_json;

Result<Constraint> FromOpenAiResponseFormat(const json& rf, std::shared_ptr<const VocabIndex> vocab, const JsonSchemaOptions& options) {
  if (rf.is_null()) return Constraint(nullptr);
  if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string()) {
    return Error(StatusCode::kInvalidArgument, "response_format: expected an object with a string 'type'");
  }
  const std::string type = rf["type"].get<std::string>();
  if (type == "text") return Constraint(nullptr);
  if (type == "json_object") return CompileJsonObject(std::move(vocab), options);
  if (type == "json_schema") {
    if (!rf.contains("json_schema") || !rf["json_schema"].is_object()) {
      return Error(StatusCode::kInvalidArgument, "response_format: type json_schema needs a 'json_schema' object");
    }
    const json& js = rf["json_schema"];
    if (!js.contains("schema")) return Error(StatusCode::kInvalidArgument, "response_format.json_schema: missing 'schema'");
    auto c = CompileJsonSchema(js["schema"], std::move(vocab), options);
    if (!c.ok()) return c.status().WithContext("response_format.json_schema.schema");
    return c;
  }
  return Error(StatusCode::kInvalidArgument, "response_format: unknown type '{}' (text, json_object, json_schema)", type);
}

Result<Constraint> FromOllamaFormat(const json& format, std::shared_ptr<const VocabIndex> vocab, const JsonSchemaOptions& options) {
  if (format.is_null() || (format.is_string() && format.get<std::string>().empty())) return Constraint(nullptr);
  if (format.is_string()) {
    if (format.get<std::string>() != "json") {
      return Error(StatusCode::kInvalidArgument, "format: expected \"json\" or a JSON Schema object, got {}", format.dump());
    }
    return CompileJsonObject(std::move(vocab), options);
  }
  if (!format.is_object()) return Error(StatusCode::kInvalidArgument, "format: expected \"json\" or a JSON Schema object");
  auto c = CompileJsonSchema(format, std::move(vocab), options);
  if (!c.ok()) return c.status().WithContext("format");
  return c;
}

Result<Constraint> ConstraintCache::GetOrCompile(const VocabIndex& vocab, const std::string& key,
                                                 const std::function<Result<Constraint>()>& compile) {
  // A cached constraint holds its VocabIndex, so the address identifies the vocabulary.
  const std::string full = std::to_string(reinterpret_cast<uintptr_t>(&vocab)) + "\n" + key;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(full);
    if (it != entries_.end()) {
      it->second.second = ++tick_;
      return it->second.first;
    }
  }
  QM_ASSIGN_OR_RETURN(Constraint c, compile());
  std::lock_guard<std::mutex> lock(mu_);
  if (entries_.size() >= max_entries_ && !entries_.count(full)) {
    auto oldest = entries_.begin();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->second.second < oldest->second.second) oldest = it;
    }
    if (oldest != entries_.end()) entries_.erase(oldest);
  }
  if (max_entries_ > 0) entries_[full] = {c, ++tick_};
  return c;
}

size_t ConstraintCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace qwenmux::structured
