#include "model/config.h"

#include <cmath>

namespace qwenmux::model {

namespace {

Result<uint32_t> GetU32(const gguf::File& f, const std::string& key) {
  QM_ASSIGN_OR_RETURN(uint64_t v, f.GetUInt(key));
  if (v == 0 || v > (uint64_t{1} << 31)) {
    return Error(StatusCode::kInvalidArgument, "model: {}: key {} has absurd value {}", f.name(), key, v);
  }
  return static_cast<uint32_t>(v);
}

// A float hyper-parameter that must be finite and inside (lo, hi]: a NaN rope base or epsilon
// would make every logit NaN, so such a file is refused at load rather than served.
Result<float> GetFiniteFloat(const gguf::File& f, const std::string& key, double lo, double hi) {
  QM_ASSIGN_OR_RETURN(double v, f.GetFloat(key));
  const float x = static_cast<float>(v);
  if (!std::isfinite(v) || !std::isfinite(x) || !(v > lo) || v > hi) {
    return Error(StatusCode::kInvalidArgument, "model: {}: key {} has value {}, expected a finite number in ({:g}, {:g}]",
                 f.name(), key, v, lo, hi);
  }
  return x;
}

}  // namespace

Result<ModelConfig> ReadConfig(const gguf::File& f) {
  ModelConfig c;
  QM_ASSIGN_OR_RETURN(c.arch_name, f.Get<std::string>("general.architecture"));
  if (c.arch_name == "qwen3") {
    c.arch = Arch::kQwen3;
  } else if (c.arch_name == "qwen3moe") {
    c.arch = Arch::kQwen3Moe;
  } else {
    return Error(StatusCode::kUnsupported, "model: {}: unsupported architecture \"{}\" (supported: qwen3, qwen3moe)",
                 f.name(), c.arch_name);
  }
  if (auto n = f.GetOptional<std::string>("general.name"); n.ok() && n->has_value()) c.name = **n;
  const std::string a = c.arch_name + ".";
  QM_ASSIGN_OR_RETURN(c.n_layer, GetU32(f, a + "block_count"));
  QM_ASSIGN_OR_RETURN(c.n_embd, GetU32(f, a + "embedding_length"));
  QM_ASSIGN_OR_RETURN(c.n_head, GetU32(f, a + "attention.head_count"));
  QM_ASSIGN_OR_RETURN(c.n_head_kv, GetU32(f, a + "attention.head_count_kv"));
  QM_ASSIGN_OR_RETURN(c.n_ctx_train, GetU32(f, a + "context_length"));
  if (f.Find(a + "attention.key_length")) {
    QM_ASSIGN_OR_RETURN(c.head_dim, GetU32(f, a + "attention.key_length"));
  } else {
    c.head_dim = c.n_embd / c.n_head;
  }
  if (c.n_head % c.n_head_kv != 0) {
    return Error(StatusCode::kInvalidArgument, "model: {}: head_count {} is not a multiple of head_count_kv {}",
                 f.name(), c.n_head, c.n_head_kv);
  }
  if (c.head_dim % 2 != 0) {
    return Error(StatusCode::kInvalidArgument, "model: {}: key_length {} is odd", f.name(), c.head_dim);
  }
  QM_ASSIGN_OR_RETURN(c.rms_eps, GetFiniteFloat(f, a + "attention.layer_norm_rms_epsilon", 0.0, 1.0));
  if (f.Find(a + "rope.freq_base")) {
    QM_ASSIGN_OR_RETURN(c.rope_freq_base, GetFiniteFloat(f, a + "rope.freq_base", 0.0, 1e12));
  }
  if (auto t = f.GetOptional<std::string>(a + "rope.scaling.type"); t.ok() && t->has_value() && **t == "yarn") {
    c.rope_yarn = true;
    QM_ASSIGN_OR_RETURN(c.rope_scale_factor, GetFiniteFloat(f, a + "rope.scaling.factor", 0.0, 1024.0));
    QM_ASSIGN_OR_RETURN(c.rope_orig_ctx, GetU32(f, a + "rope.scaling.original_context_length"));
  }
  if (c.is_moe()) {
    QM_ASSIGN_OR_RETURN(c.n_expert, GetU32(f, a + "expert_count"));
    QM_ASSIGN_OR_RETURN(c.n_expert_used, GetU32(f, a + "expert_used_count"));
    QM_ASSIGN_OR_RETURN(c.n_ff_exp, GetU32(f, a + "expert_feed_forward_length"));
    if (c.n_expert_used > c.n_expert) {
      return Error(StatusCode::kInvalidArgument, "model: {}: expert_used_count {} > expert_count {}", f.name(),
                   c.n_expert_used, c.n_expert);
    }
    if (f.Find(a + "feed_forward_length")) {
      QM_ASSIGN_OR_RETURN(c.n_ff, GetU32(f, a + "feed_forward_length"));
    }
  } else {
    QM_ASSIGN_OR_RETURN(c.n_ff, GetU32(f, a + "feed_forward_length"));
  }
  if (f.Find(a + "pooling_type")) {
    QM_ASSIGN_OR_RETURN(uint64_t p, f.GetUInt(a + "pooling_type"));
    if (p > 4) return Error(StatusCode::kInvalidArgument, "model: {}: unknown pooling_type {}", f.name(), p);
    c.pooling = static_cast<PoolingType>(p);
  }
  const gguf::TensorInfo* embd = f.FindTensor("token_embd.weight");
  if (embd == nullptr) return Error(StatusCode::kNotFound, "model: {}: missing tensor token_embd.weight", f.name());
  if (embd->n_dims != 2 || embd->ne[0] != c.n_embd) {
    return Error(StatusCode::kInvalidArgument, "model: {}: tensor token_embd.weight has shape {}, expected [{}, n_vocab]",
                 f.name(), embd->ShapeString(), c.n_embd);
  }
  c.n_vocab = static_cast<uint32_t>(embd->ne[1]);
  c.tied_embeddings = f.FindTensor("output.weight") == nullptr;
  return c;
}

uint64_t WeightBytes(const gguf::File& f) {
  uint64_t total = 0;
  for (const auto& t : f.tensors()) total += t.n_bytes;
  return total;
}

uint64_t KvBytesPerToken(const ModelConfig& c, uint32_t kv_bytes_per_value) {
  return uint64_t{2} * c.n_layer * c.kv_dim() * kv_bytes_per_value;
}

}  // namespace qwenmux::model
