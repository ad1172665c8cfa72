// Tokenizer::FromGguf: reads the vocabulary arrays from GGUF metadata.
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace qwenmux::tokenizer {

Result<Tokenizer> Tokenizer::FromGguf(const gguf::File& file) {
  // GGUF errors already name the file; tokenizer errors get it prepended.
  auto fail = [](const Status& s) { return s.WithContext("tokenizer"); };
  auto model = file.GetOptional<std::string>("tokenizer.ggml.model");
  if (!model.ok()) return fail(model.status());
  if (model->has_value() && **model != "gpt2") {
    return Error(StatusCode::kUnsupported,
                 "tokenizer: {}: tokenizer.ggml.model is '{}'; only byte-level BPE ('gpt2') is "
                 "supported",
                 file.name(), **model);
  }
  auto tokens = file.GetArray("tokenizer.ggml.tokens", gguf::ValueType::kString);
  if (!tokens.ok()) return fail(tokens.status());
  auto types = file.GetArray("tokenizer.ggml.token_type", gguf::ValueType::kI32);
  if (!types.ok()) return fail(types.status());
  auto merges = file.GetArray("tokenizer.ggml.merges", gguf::ValueType::kString);
  if (!merges.ok()) return fail(merges.status());

  std::vector<std::string> tok;
  tok.reserve((*tokens)->items.size());
  const auto bad_item = [&](const char* key) {
    return Error(StatusCode::kCorrupt, "tokenizer: {}: {} holds an item of the wrong type",
                 file.name(), key);
  };
  for (const auto& v : (*tokens)->items) {
    const auto* s = std::get_if<std::string>(&v.v);
    if (s == nullptr) return bad_item("tokenizer.ggml.tokens");
    tok.push_back(*s);
  }
  std::vector<int32_t> ty;
  ty.reserve((*types)->items.size());
  for (const auto& v : (*types)->items) {
    const auto* x = std::get_if<int32_t>(&v.v);
    if (x == nullptr) return bad_item("tokenizer.ggml.token_type");
    ty.push_back(*x);
  }
  std::vector<std::string> mg;
  mg.reserve((*merges)->items.size());
  for (const auto& v : (*merges)->items) {
    const auto* s = std::get_if<std::string>(&v.v);
    if (s == nullptr) return bad_item("tokenizer.ggml.merges");
    mg.push_back(*s);
  }
  auto t = Create(std::move(tok), std::move(ty), std::move(mg));
  if (!t.ok()) return t.status().WithContext(file.name());
  return t;
}

}  // namespace qwenmux::tokenizer
