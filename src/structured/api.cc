// Request helpers for the OpenAI / Ollama dialects and the compiled-constraint cache.
#include <algorithm>
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

Status WarmStartMasks(const Constraint& c) {
  if (!c) return Status::Ok();
  GrammarMatcher m(c);
  TokenMask mask;
  return m.ComputeMask(&mask);
}

ConstraintCache::ConstraintCache(size_t max_bytes, size_t max_entries)
    : max_bytes_(max_bytes), max_entries_(max_entries), memory_(std::make_shared<ConstraintMemory>(max_bytes)) {}

ConstraintOptions ConstraintCache::options() const {
  ConstraintOptions o;
  // One constraint's mask cache never takes more than a quarter of the whole budget.
  o.mask_cache_bytes = std::min(o.mask_cache_bytes, max_bytes() / 4);
  o.memory = memory_;
  return o;
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
      Constraint c = it->second.first;
      EvictLocked(full);  // mask caches grew since the last lookup
      return c;
    }
  }
  QM_ASSIGN_OR_RETURN(Constraint c, compile());
  std::lock_guard<std::mutex> lock(mu_);
  if (max_entries_ > 0 && max_bytes_ > 0) {
    entries_[full] = {c, ++tick_};
    EvictLocked(full);
  }
  return c;
}

void ConstraintCache::EvictLocked(const std::string& keep) {
  size_t total = 0;
  for (const auto& [_, e] : entries_) total += e.first ? e.first->memory_bytes() : 0;
  while (entries_.size() > 1 && (total > max_bytes_ || entries_.size() > max_entries_)) {
    auto oldest = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->first != keep && (oldest == entries_.end() || it->second.second < oldest->second.second)) oldest = it;
    }
    if (oldest == entries_.end()) break;
    total -= oldest->second.first ? std::min(total, oldest->second.first->memory_bytes()) : 0;
    entries_.erase(oldest);
  }
}

size_t ConstraintCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

size_t ConstraintCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t total = 0;
  for (const auto& [_, e] : entries_) total += e.first ? e.first->memory_bytes() : 0;
  return total;
}

size_t ConstraintCache::max_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_bytes_;
}

void ConstraintCache::set_max_bytes(size_t max_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  max_bytes_ = max_bytes;
  memory_->set_limit(max_bytes);
}

}  // namespace qwenmux::structured
