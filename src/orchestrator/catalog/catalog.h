// The built-in catalog of the Qwen3 family: Ollama-style names ("qwen3:8b-q8_0"), the official
// GGUF repository and file per quantization, the model's shape (from model/shapes.h, the one
// table of dimensions) and the default tiers ("qwen3-fast" ...).
//
// Thread-safety: immutable data and pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "model/shapes.h"

namespace qwenmux::orchestrator {

enum class ModelRole { kChat, kEmbedding, kReranker };
const char* ModelRoleName(ModelRole r);                 // "chat", "embedding", "reranker"
Result<ModelRole> ParseModelRole(std::string_view s);

struct CatalogEntry {
  std::string name;          // "qwen3:8b-q8_0"
  std::string family;        // "qwen3", "qwen3-embedding", "qwen3-reranker"
  std::string size_tag;      // "8b", "30b-a3b"
  std::string quantization;  // "Q8_0", "Q4_K_M", "F16"
  ModelRole role = ModelRole::kChat;
  const model::ModelShape* shape = nullptr;
  std::string hf_repo;       // "Qwen/Qwen3-8B-GGUF"
  std::string hf_file;       // "Qwen3-8B-Q8_0.gguf"
  bool file_name_verified = false;  // the repo/file pair was seen in a public source (catalog.cc)
  uint32_t context_length = 0;      // native context (max_position_embeddings of the GGUF)
  uint32_t yarn_context_length = 0; // with YaRN x4 per the model card; 0 if not offered

  std::string hf_ref() const { return "hf:" + hf_repo + "/" + hf_file; }
  model::ParameterCounts params() const { return model::CountParameters(*shape); }
};

// Every catalog entry, in table order (family, then size, then quantization).
std::span<const CatalogEntry> Catalog();

struct Tier {
  const char* name;     // "qwen3-fast"
  const char* target;   // "qwen3:1.7b-q4_k_m"
  const char* summary;
};
std::span<const Tier> DefaultTiers();

// Looks `name` up: a full catalog name ("qwen3:8b-q8_0", case-insensitive), a name without
// the quantization ("qwen3:8b" -> its default, Q4_K_M like Ollama's tags, Q8_0 for embedding
// and reranker models), or a tier ("qwen3-balanced"). NotFound lists close names.
Result<const CatalogEntry*> FindInCatalog(std::string_view name);

// The quantization spelled in a GGUF file name ("Qwen3-8B-Q4_K_M.gguf" -> "Q4_K_M"), or "".
std::string QuantizationFromFileName(std::string_view file);

}  // namespace qwenmux::orchestrator
