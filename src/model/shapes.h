// The shapes of the real Qwen3 models: ONE table (values from docs/qwen3-reference.md §1, the
// official config.json files and model cards), the GGUF tensor list each shape has, and its
// parameter counts. Used by `qwenmux synth` (random-weight models of the real sizes) and by
// anything that needs to know a model's size without its file (catalogs, memory plans).
//
// Thread-safety: everything here is immutable data and pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "gguf/gguf.h"
#include "model/config.h"

namespace qwenmux::model {

enum class ModelKind {
  kCausalLm,   // chat / base model: output.weight unless tied
  kEmbedding,  // Qwen3-Embedding: pooling LAST, no LM head
  kReranker,   // Qwen3-Reranker: pooling RANK, cls.output.weight [n_embd, 2], no output.weight
};
const char* ModelKindName(ModelKind k);  // "causal-lm", "embedding", "reranker"

struct ModelShape {
  const char* name;          // "qwen3-0.6b" (what `--shape` takes)
  const char* display_name;  // "Qwen3-0.6B" (written as general.name)
  ModelKind kind;
  uint32_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim;
  uint32_t n_expert, n_expert_used, n_ff_exp;  // 0 for dense models
  bool tied;                 // tie_word_embeddings in config.json
  uint32_t n_ctx_train;
  float rope_freq_base;
  float rms_eps;
  uint32_t n_vocab;          // rows of token_embd

  bool is_moe() const { return n_expert > 0; }
  const char* arch_name() const { return is_moe() ? "qwen3moe" : "qwen3"; }
  PoolingType pooling() const {
    return kind == ModelKind::kEmbedding ? PoolingType::kLast
           : kind == ModelKind::kReranker ? PoolingType::kRank : PoolingType::kNone;
  }
  // Whether the GGUF has a separate output.weight (untied causal LMs only; the converter drops
  // the LM head of embedding models and turns a reranker's into cls.output.weight).
  bool has_output() const { return kind == ModelKind::kCausalLm && !tied; }
  bool has_cls_output() const { return kind == ModelKind::kReranker; }
};

// All known shapes, in table order.
std::span<const ModelShape> AllShapes();
// The shape called `name` (case-insensitive); the error lists the known names.
Result<const ModelShape*> FindShape(std::string_view name);

// The GGUF tensors of `shape` with `n_layer` layers (0: the shape's own count), in the order
// written: output_norm, output (if any), token_embd, then each layer's tensors sorted by name,
// then cls.output (if any). Each entry has name, n_dims and ne set, type F32, no offset.
std::vector<gguf::TensorInfo> TensorLayout(const ModelShape& shape, uint32_t n_layer = 0);

struct ParameterCounts {
  uint64_t total = 0;          // every weight in the GGUF (norms included)
  uint64_t embedding = 0;      // token_embd + output.weight (the model cards' "embedding" share)
  uint64_t non_embedding = 0;  // total - embedding
  uint64_t active = 0;         // per token: total minus the experts not routed to (= total if dense)
};
ParameterCounts CountParameters(const ModelShape& shape);

}  // namespace qwenmux::model
