#include "base/ascii.h"
#include "orchestrator/catalog/catalog.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace qwenmux::orchestrator {

namespace {

// Where the file names come from (checked 2025 with the project's search tools; this machine has
// no internet, so nothing here was fetched from the hub itself):
//  * Official repos are "Qwen/Qwen3-<Size>-GGUF"; the Qwen3-30B-A3B-GGUF model card lists
//    "Quantization: q4_K_M, q5_0, q5_K_M, q6_K, q8_0" (copy in JoseAdrianRodriguezGonzalez/
//    Llm-Component, Qwen__Qwen3-30B-A3B-GGUF/README.md); we assume the other chat sizes offer
//    the same set (NOT verified per size; Qwen3-0.6B/1.7B may offer fewer).
//  * File names "Qwen3-<Size>-<QUANT>.gguf" seen verbatim in public code that downloads from
//    the official repos: Qwen3-0.6B-Q8_0.gguf, Qwen3-1.7B-Q8_0.gguf (1,834,426,016 bytes,
//    sha256 061b54da...), Qwen3-14B-Q8_0.gguf, and Qwen3-Embedding-0.6B-Q8_0.gguf from
//    Qwen/Qwen3-Embedding-0.6B-GGUF (639,150,592 bytes, LFS oid sha256 06507c7b...).
//    Those entries carry verified = true; every other (repo, file) pair follows the same
//    pattern but was not seen, so it is marked unverified (a 404 from `pull` would show it).
//  * Qwen/Qwen3-Embedding-4B-GGUF and -8B-GGUF exist (Qwen's Qwen3-Embedding collection page);
//    their file list was not seen.
//  * Qwen publishes no official Qwen3-Reranker GGUF that we could find. The 0.6B entry points
//    at ggml-org/Qwen3-Reranker-0.6B-Q8_0-GGUF (repo seen; the file name is the GGUF-my-repo
//    lower-case convention, not verified). The 4B/8B rerankers have no source: pull them with
//    `qwenmux pull hf:REPO/FILE` and `qwenmux tag`.
struct QuantSource {
  const char* quant;     // "Q8_0"
  const char* file;      // exact file name, or nullptr for "<stem>-<quant>.gguf"
  bool verified;
};

struct ModelSources {
  const char* shape;          // model/shapes.h name
  const char* family;
  const char* size_tag;
  ModelRole role;
  const char* repo;           // "" if no known GGUF source
  const char* file_stem;      // "Qwen3-8B"
  const char* default_quant;  // for "qwen3:8b" without a quantization
  uint32_t yarn_ctx;          // 0: no YaRN extension in the model card
  std::vector<QuantSource> quants;
};

constexpr uint32_t kYarn = 131072;  // model cards: 32,768 native, 131,072 with YaRN (factor 4)

// The Qwen repos also hold Q5_0 files; the engine has no Q5_0 kernels, so the catalog leaves
// them out (hf:REPO/FILE still names any file).
std::vector<QuantSource> ChatQuants(bool q8_verified) {
  return {{"Q4_K_M", nullptr, false}, {"Q5_K_M", nullptr, false},
          {"Q6_K", nullptr, false}, {"Q8_0", nullptr, q8_verified}};
}

const std::vector<ModelSources>& SourceTable() {
  static const std::vector<ModelSources> kTable = {
      {"qwen3-0.6b", "qwen3", "0.6b", ModelRole::kChat, "Qwen/Qwen3-0.6B-GGUF", "Qwen3-0.6B",
       "Q4_K_M", kYarn, ChatQuants(true)},
      {"qwen3-1.7b", "qwen3", "1.7b", ModelRole::kChat, "Qwen/Qwen3-1.7B-GGUF", "Qwen3-1.7B",
       "Q4_K_M", kYarn, ChatQuants(true)},
      {"qwen3-4b", "qwen3", "4b", ModelRole::kChat, "Qwen/Qwen3-4B-GGUF", "Qwen3-4B", "Q4_K_M",
       kYarn, ChatQuants(false)},
      {"qwen3-8b", "qwen3", "8b", ModelRole::kChat, "Qwen/Qwen3-8B-GGUF", "Qwen3-8B", "Q4_K_M",
       kYarn, ChatQuants(false)},
      {"qwen3-14b", "qwen3", "14b", ModelRole::kChat, "Qwen/Qwen3-14B-GGUF", "Qwen3-14B",
       "Q4_K_M", kYarn, ChatQuants(true)},
      {"qwen3-32b", "qwen3", "32b", ModelRole::kChat, "Qwen/Qwen3-32B-GGUF", "Qwen3-32B",
       "Q4_K_M", kYarn, ChatQuants(false)},
      {"qwen3-30b-a3b", "qwen3", "30b-a3b", ModelRole::kChat, "Qwen/Qwen3-30B-A3B-GGUF",
       "Qwen3-30B-A3B", "Q4_K_M", kYarn, ChatQuants(false)},
      {"qwen3-embedding-0.6b", "qwen3-embedding", "0.6b", ModelRole::kEmbedding,
       "Qwen/Qwen3-Embedding-0.6B-GGUF", "Qwen3-Embedding-0.6B", "Q8_0", 0,
       {{"Q8_0", nullptr, true}, {"F16", "Qwen3-Embedding-0.6B-f16.gguf", false}}},
      {"qwen3-embedding-4b", "qwen3-embedding", "4b", ModelRole::kEmbedding,
       "Qwen/Qwen3-Embedding-4B-GGUF", "Qwen3-Embedding-4B", "Q8_0", 0,
       {{"Q4_K_M", nullptr, false}, {"Q5_K_M", nullptr, false}, {"Q6_K", nullptr, false},
        {"Q8_0", nullptr, false}, {"F16", "Qwen3-Embedding-4B-f16.gguf", false}}},
      {"qwen3-embedding-8b", "qwen3-embedding", "8b", ModelRole::kEmbedding,
       "Qwen/Qwen3-Embedding-8B-GGUF", "Qwen3-Embedding-8B", "Q8_0", 0,
       {{"Q4_K_M", nullptr, false}, {"Q5_K_M", nullptr, false}, {"Q6_K", nullptr, false},
        {"Q8_0", nullptr, false}, {"F16", "Qwen3-Embedding-8B-f16.gguf", false}}},
      {"qwen3-reranker-0.6b", "qwen3-reranker", "0.6b", ModelRole::kReranker,
       "ggml-org/Qwen3-Reranker-0.6B-Q8_0-GGUF", "Qwen3-Reranker-0.6B", "Q8_0", 0,
       {{"Q8_0", "qwen3-reranker-0.6b-q8_0.gguf", false}}},
      {"qwen3-reranker-4b", "qwen3-reranker", "4b", ModelRole::kReranker, "",
       "Qwen3-Reranker-4B", "Q8_0", 0, {{"Q8_0", nullptr, false}}},
      {"qwen3-reranker-8b", "qwen3-reranker", "8b", ModelRole::kReranker, "",
       "Qwen3-Reranker-8B", "Q8_0", 0, {{"Q8_0", nullptr, false}}},
  };
  return kTable;
}

std::vector<CatalogEntry> BuildCatalog() {
  std::vector<CatalogEntry> out;
  for (const ModelSources& m : SourceTable()) {
    Result<const model::ModelShape*> shape = model::FindShape(m.shape);
    assert(shape.ok() && "catalog names a shape missing from model/shapes.h");
    if (!shape.ok()) continue;
    for (const QuantSource& q : m.quants) {
      CatalogEntry e;
      e.family = m.family;
      e.size_tag = m.size_tag;
      e.quantization = q.quant;
      e.name = fmt::format("{}:{}-{}", m.family, m.size_tag, AsciiLower(q.quant));
      e.role = m.role;
      e.shape = *shape;
      e.hf_repo = m.repo;
      if (*m.repo != '\0') e.hf_file = q.file ? q.file : fmt::format("{}-{}.gguf", m.file_stem, q.quant);
      e.file_name_verified = q.verified;
      e.context_length = (*shape)->n_ctx_train;
      e.yarn_context_length = m.yarn_ctx;
      out.push_back(std::move(e));
    }
  }
  return out;
}

constexpr Tier kTiers[] = {
    {"qwen3-fast", "qwen3:1.7b-q4_k_m", "Qwen3-1.7B Q4_K_M: classification, routing, short answers"},
    {"qwen3-balanced", "qwen3:8b-q8_0", "Qwen3-8B Q8_0: general chat and extraction"},
    {"qwen3-quality", "qwen3:14b-q8_0", "Qwen3-14B Q8_0: careful extraction and writing"},
    {"qwen3-max", "qwen3:30b-a3b-q8_0", "Qwen3-30B-A3B Q8_0 (MoE, 3B active): hardest tasks"},
};

}  // namespace

const char* ModelRoleName(ModelRole r) {
  switch (r) {
    case ModelRole::kChat: return "chat";
    case ModelRole::kEmbedding: return "embedding";
    case ModelRole::kReranker: return "reranker";
  }
  return "?";
}

Result<ModelRole> ParseModelRole(std::string_view s) {
  if (s == "chat") return ModelRole::kChat;
  if (s == "embedding") return ModelRole::kEmbedding;
  if (s == "reranker") return ModelRole::kReranker;
  return Error(StatusCode::kInvalidArgument,
               "\"{}\" is not a role (use chat, embedding or reranker)", s);
}

std::span<const CatalogEntry> Catalog() {
  static const std::vector<CatalogEntry> kCatalog = BuildCatalog();
  return kCatalog;
}

std::span<const Tier> DefaultTiers() { return kTiers; }

Result<const CatalogEntry*> FindInCatalog(std::string_view name) {
  std::string key = AsciiLower(name);
  for (const Tier& t : kTiers) {
    if (key == t.name) key = t.target;
  }
  for (const CatalogEntry& e : Catalog()) {
    if (e.name == key) return &e;
  }
  // "qwen3:8b": the family's default quantization.
  for (const ModelSources& m : SourceTable()) {
    if (key == fmt::format("{}:{}", m.family, m.size_tag)) {
      return FindInCatalog(fmt::format("{}:{}-{}", m.family, m.size_tag, AsciiLower(m.default_quant)));
    }
  }
  // Suggest entries that share the part before the first '-' of the tag ("qwen3:8b-...").
  size_t colon = key.find(':');
  std::string prefix = colon == std::string::npos ? "" : key.substr(0, key.find('-', colon));
  std::string close;
  for (const CatalogEntry& e : Catalog()) {
    if (!prefix.empty() && e.name.rfind(prefix, 0) == 0) close += (close.empty() ? "" : ", ") + e.name;
  }
  if (close.empty()) {
    return Error(StatusCode::kNotFound,
                 "catalog: no model \"{}\" (names look like qwen3:8b-q8_0, qwen3-embedding:0.6b-q8_0; "
                 "tiers: qwen3-fast, qwen3-balanced, qwen3-quality, qwen3-max)", name);
  }
  return Error(StatusCode::kNotFound, "catalog: no model \"{}\"; close: {}", name, close);
}

std::string QuantizationFromFileName(std::string_view file) {
  static const char* kQuants[] = {"Q4_K_M", "Q4_K_S", "Q5_K_M", "Q5_K_S", "Q6_K", "Q8_0", "Q4_0",
                                  "Q4_1",   "Q5_0",   "Q5_1",   "Q2_K",   "Q3_K_M", "Q3_K_S",
                                  "Q3_K_L", "BF16",   "F16",    "F32"};
  std::string upper(file);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper.size() > 5 && upper.ends_with(".GGUF")) upper.resize(upper.size() - 5);
  for (const char* q : kQuants) {
    std::string_view qv(q);
    if (upper.size() > qv.size() && upper.ends_with(qv)) {
      char sep = upper[upper.size() - qv.size() - 1];
      if (sep == '-' || sep == '.' || sep == '_') return q;
    }
  }
  return "";
}

}  // namespace qwenmux::orchestrator
