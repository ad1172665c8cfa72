#include "model/shapes.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

#include <fmt/format.h>

namespace qwenmux::model {

namespace {

constexpr uint32_t kCtx = 40960;     // max_position_embeddings of the 2504 release (§1.1)
constexpr float kRopeBase = 1e6f;    // rope_theta
constexpr float kEps = 1e-6f;        // rms_norm_eps
constexpr uint32_t kVocab = 151936;  // embedding rows (the tokenizer itself has 151669 entries)
constexpr uint32_t kHd = 128;        // head_dim, fixed for every Qwen3 model

constexpr ModelKind kLm = ModelKind::kCausalLm;
constexpr ModelKind kEmb = ModelKind::kEmbedding;
constexpr ModelKind kRr = ModelKind::kReranker;

// qwen3-reference.md §1.2 (dense), §1.3 (MoE), §1.5 (embedding / reranker: dims as the base
// model; Qwen3-Embedding-0.6B's max_position_embeddings is 32768 there).
// clang-format off
constexpr std::array<ModelShape, 13> kShapes = {{
  // name                  display                 kind  layer embd   ff     head kv  hd   exp used ffexp tied   ctx    rope       eps   vocab
  {"qwen3-0.6b",           "Qwen3-0.6B",           kLm,  28,  1024,  3072,  16,  8,  kHd, 0,   0,   0,    true,  kCtx,  kRopeBase, kEps, kVocab},
  {"qwen3-1.7b",           "Qwen3-1.7B",           kLm,  28,  2048,  6144,  16,  8,  kHd, 0,   0,   0,    true,  kCtx,  kRopeBase, kEps, kVocab},
  {"qwen3-4b",             "Qwen3-4B",             kLm,  36,  2560,  9728,  32,  8,  kHd, 0,   0,   0,    true,  kCtx,  kRopeBase, kEps, kVocab},
  {"qwen3-8b",             "Qwen3-8B",             kLm,  36,  4096,  12288, 32,  8,  kHd, 0,   0,   0,    false, kCtx,  kRopeBase, kEps, kVocab},
  {"qwen3-14b",            "Qwen3-14B",            kLm,  40,  5120,  17408, 40,  8,  kHd, 0,   0,   0,    false, kCtx,  kRopeBase, kEps, kVocab},
  {"qwen3-32b",            "Qwen3-32B",            kLm,  64,  5120,  25600, 64,  8,  kHd, 0,   0,   0,    false, kCtx,  kRopeBase, kEps, kVocab},
  {"qwen3-30b-a3b",        "Qwen3-30B-A3B",        kLm,  48,  2048,  6144,  32,  4,  kHd, 128, 8,   768,  false, kCtx,  kRopeBase, kEps, kVocab},
  {"qwen3-embedding-0.6b", "Qwen3-Embedding-0.6B", kEmb, 28,  1024,  3072,  16,  8,  kHd, 0,   0,   0,    true,  32768, kRopeBase, kEps, kVocab},
  {"qwen3-embedding-4b",   "Qwen3-Embedding-4B",   kEmb, 36,  2560,  9728,  32,  8,  kHd, 0,   0,   0,    true,  kCtx,  kRopeBase, kEps, kVocab},
  {"qwen3-embedding-8b",   "Qwen3-Embedding-8B",   kEmb, 36,  4096,  12288, 32,  8,  kHd, 0,   0,   0,    false, kCtx,  kRopeBase, kEps, kVocab},
  {"qwen3-reranker-0.6b",  "Qwen3-Reranker-0.6B",  kRr,  28,  1024,  3072,  16,  8,  kHd, 0,   0,   0,    true,  kCtx,  kRopeBase, kEps, kVocab},
  {"qwen3-reranker-4b",    "Qwen3-Reranker-4B",    kRr,  36,  2560,  9728,  32,  8,  kHd, 0,   0,   0,    true,  kCtx,  kRopeBase, kEps, kVocab},
  {"qwen3-reranker-8b",    "Qwen3-Reranker-8B",    kRr,  36,  4096,  12288, 32,  8,  kHd, 0,   0,   0,    false, kCtx,  kRopeBase, kEps, kVocab},
}};
// clang-format on

gguf::TensorInfo Tensor(std::string name, std::initializer_list<uint64_t> ne) {
  gguf::TensorInfo t;
  t.name = std::move(name);
  t.n_dims = static_cast<uint32_t>(ne.size());
  size_t i = 0;
  for (uint64_t d : ne) t.ne[i++] = d;
  return t;
}

}  // namespace

const char* ModelKindName(ModelKind k) {
  switch (k) {
    case ModelKind::kCausalLm: return "causal-lm";
    case ModelKind::kEmbedding: return "embedding";
    case ModelKind::kReranker: return "reranker";
  }
  return "?";
}

std::span<const ModelShape> AllShapes() { return kShapes; }

Result<const ModelShape*> FindShape(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  std::string names;
  for (const ModelShape& s : kShapes) {
    if (lower == s.name) return &s;
    names += names.empty() ? "" : ", ";
    names += s.name;
  }
  return Error(StatusCode::kInvalidArgument, "unknown model shape '{}' (known: {})", name, names);
}

std::vector<gguf::TensorInfo> TensorLayout(const ModelShape& s, uint32_t n_layer) {
  if (n_layer == 0) n_layer = s.n_layer;
  const uint64_t e = s.n_embd, q = uint64_t{s.n_head} * s.head_dim, kv = uint64_t{s.n_head_kv} * s.head_dim;
  std::vector<gguf::TensorInfo> t;
  t.push_back(Tensor("output_norm.weight", {e}));
  if (s.has_output()) t.push_back(Tensor("output.weight", {e, s.n_vocab}));
  t.push_back(Tensor("token_embd.weight", {e, s.n_vocab}));
  for (uint32_t i = 0; i < n_layer; ++i) {
    const std::string b = fmt::format("blk.{}.", i);
    // Sorted by name, as in the reference files.
    t.push_back(Tensor(b + "attn_k.weight", {e, kv}));
    t.push_back(Tensor(b + "attn_k_norm.weight", {s.head_dim}));
    t.push_back(Tensor(b + "attn_norm.weight", {e}));
    t.push_back(Tensor(b + "attn_output.weight", {q, e}));
    t.push_back(Tensor(b + "attn_q.weight", {e, q}));
    t.push_back(Tensor(b + "attn_q_norm.weight", {s.head_dim}));
    t.push_back(Tensor(b + "attn_v.weight", {e, kv}));
    if (s.is_moe()) {
      t.push_back(Tensor(b + "ffn_down_exps.weight", {s.n_ff_exp, e, s.n_expert}));
      t.push_back(Tensor(b + "ffn_gate_exps.weight", {e, s.n_ff_exp, s.n_expert}));
      t.push_back(Tensor(b + "ffn_gate_inp.weight", {e, s.n_expert}));
      t.push_back(Tensor(b + "ffn_norm.weight", {e}));
      t.push_back(Tensor(b + "ffn_up_exps.weight", {e, s.n_ff_exp, s.n_expert}));
    } else {
      t.push_back(Tensor(b + "ffn_down.weight", {s.n_ff, e}));
      t.push_back(Tensor(b + "ffn_gate.weight", {e, s.n_ff}));
      t.push_back(Tensor(b + "ffn_norm.weight", {e}));
      t.push_back(Tensor(b + "ffn_up.weight", {e, s.n_ff}));
    }
  }
  if (s.has_cls_output()) t.push_back(Tensor("cls.output.weight", {e, 2}));
  return t;
}

ParameterCounts CountParameters(const ModelShape& s) {
  ParameterCounts c;
  for (const gguf::TensorInfo& t : TensorLayout(s)) {
    const uint64_t n = t.n_elements();
    c.total += n;
    if (t.name == "token_embd.weight" || t.name == "output.weight") c.embedding += n;
  }
  c.non_embedding = c.total - c.embedding;
  c.active = c.total;
  if (s.is_moe()) {
    const uint64_t per_expert = 3ull * s.n_embd * s.n_ff_exp;
    c.active -= uint64_t{s.n_layer} * (s.n_expert - s.n_expert_used) * per_expert;
  }
  return c;
}

}  // namespace qwenmux::model
