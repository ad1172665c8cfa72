// Qwen3 hyper-parameters read from GGUF metadata: one place for the GGUF key names.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "gguf/gguf.h"

namespace qwenmux::model {

enum class Arch { kQwen3, kQwen3Moe };
enum class PoolingType { kNone = 0, kMean = 1, kCls = 2, kLast = 3, kRank = 4 };

struct ModelConfig {
  Arch arch = Arch::kQwen3;
  std::string arch_name;  // "qwen3" / "qwen3moe"
  std::string name;       // general.name, if present
  uint32_t n_layer = 0;
  uint32_t n_embd = 0;
  uint32_t n_ff = 0;  // dense FFN width (unused for MoE)
  uint32_t n_head = 0;
  uint32_t n_head_kv = 0;
  uint32_t head_dim = 0;  // key_length; never derived from n_embd / n_head
  uint32_t n_ctx_train = 0;
  uint32_t n_vocab = 0;  // rows of token_embd
  float rms_eps = 1e-6f;
  float rope_freq_base = 1e6f;
  // YaRN (only when the file says so).
  bool rope_yarn = false;
  float rope_scale_factor = 1.0f;
  uint32_t rope_orig_ctx = 0;
  // MoE.
  uint32_t n_expert = 0;
  uint32_t n_expert_used = 0;
  uint32_t n_ff_exp = 0;
  bool tied_embeddings = true;  // no output.weight
  PoolingType pooling = PoolingType::kNone;

  bool is_moe() const { return arch == Arch::kQwen3Moe; }
  uint32_t q_dim() const { return n_head * head_dim; }
  uint32_t kv_dim() const { return n_head_kv * head_dim; }
};

// Reads and validates the hyper-parameters (unsupported architecture, missing or absurd keys are
// errors naming the key).
Result<ModelConfig> ReadConfig(const gguf::File& f);

// Bytes of all tensor data (weights as stored) and KV cache bytes per token at `kv_bytes` per value.
uint64_t WeightBytes(const gguf::File& f);
uint64_t KvBytesPerToken(const ModelConfig& c, uint32_t kv_bytes_per_value = 2);

}  // namespace qwenmux::model
