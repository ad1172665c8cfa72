// Tokenizer::FromGguf: reads the vocabulary arrays from GGUF metadata.
#include <array>
#include <list>
#include <mutex>

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

namespace {

// Sizes and two independent 64-bit hashes (FNV-1a and a multiplicative one) of the tokenizer arrays.
using Fingerprint = std::array<uint64_t, 5>;

void HashBytes(const void* p, size_t n, uint64_t* h1, uint64_t* h2) {
  const auto* b = static_cast<const uint8_t*>(p);
  uint64_t a = *h1, c = *h2;
  for (size_t i = 0; i < n; ++i) {
    a = (a ^ b[i]) * 0x100000001b3ull;
    c = (c + b[i] + 1) * 0x9E3779B97F4A7C15ull;
    c ^= c >> 29;
  }
  *h1 = a;
  *h2 = c;
}

Fingerprint FingerprintOf(const gguf::File& file) {
  Fingerprint f{0, 0, 0, 0xcbf29ce484222325ull, 0x243F6A8885A308D3ull};
  const char* keys[] = {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"};
  for (int k = 0; k < 3; ++k) {
    const gguf::Value* v = file.Find(keys[k]);
    const auto* arr = v ? std::get_if<gguf::Array>(&v->v) : nullptr;
    if (arr == nullptr) continue;
    f[k] = arr->items.size() + 1;
    for (const gguf::Value& item : arr->items) {
      if (const auto* s = std::get_if<std::string>(&item.v)) {
        const uint64_t len = s->size();
        HashBytes(&len, sizeof len, &f[3], &f[4]);
        HashBytes(s->data(), s->size(), &f[3], &f[4]);
      } else if (const auto* x = std::get_if<int32_t>(&item.v)) {
        HashBytes(x, sizeof *x, &f[3], &f[4]);
      } else {
        const uint64_t tag = item.v.index() + 1000;
        HashBytes(&tag, sizeof tag, &f[3], &f[4]);
      }
    }
  }
  return f;
}

std::mutex g_cache_mu;
std::list<std::pair<Fingerprint, std::shared_ptr<const Tokenizer>>> g_cache;  // most recent first

}  // namespace

void Tokenizer::ClearSharedCache() {
  std::lock_guard<std::mutex> lock(g_cache_mu);
  g_cache.clear();
}

Result<std::shared_ptr<const Tokenizer>> Tokenizer::SharedFromGguf(const gguf::File& file) {
  std::mutex& mu = g_cache_mu;
  auto& cache = g_cache;
  constexpr size_t kCapacity = 4;
  const Fingerprint key = FingerprintOf(file);
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto it = cache.begin(); it != cache.end(); ++it) {
      if (it->first == key) {
        cache.splice(cache.begin(), cache, it);
        return cache.front().second;
      }
    }
  }
  // Built outside the lock; two loads of a new vocabulary at once may both build it (harmless).
  QM_ASSIGN_OR_RETURN(Tokenizer tok, FromGguf(file));
  auto shared = std::make_shared<const Tokenizer>(std::move(tok));
  std::lock_guard<std::mutex> lock(mu);
  cache.emplace_front(key, shared);
  if (cache.size() > kCapacity) cache.pop_back();
  return shared;
}

}  // namespace qwenmux::tokenizer
