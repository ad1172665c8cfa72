// Reading LoRA adapters and checking them against a base model.
//
// Formats:
//  - GGUF as llama.cpp's convert_lora_to_gguf.py writes it: general.type = "adapter",
//    adapter.type = "lora", adapter.lora.alpha (f32, optional: without it the factor is 1),
//    tensors blk.N.<attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down>.weight.lora_a
//    (ne = [in, r]) and .lora_b (ne = [r, out]) in f32, f16, bf16 or q8_0 (converted to f32).
//  - A PEFT directory: adapter_config.json (r, lora_alpha, target_modules) and
//    adapter_model.safetensors with base_model.model.model.layers.N.<self_attn.q_proj|...>
//    .lora_A.weight ([r, in]) / .lora_B.weight ([out, r]).
// Both read into LoraTensors (file-independent); BindLora checks them against the base model
// (architecture, layer range, every base tensor's shape, rank of A against B) and makes the
// runtime's LoraAdapter; WriteLoraGguf writes the GGUF form (`qwenmux lora convert`).
//
// Thread-safety: free functions over their arguments.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "gguf/gguf.h"
#include "model/config.h"
#include "runtime/lora.h"

namespace qwenmux::engine {

struct LoraTensors {
  std::string source;        // path, for messages
  std::string architecture;  // general.architecture ("" when the format has none: PEFT)
  float alpha = 0;           // 0: none given (factor 1, as llama.cpp)
  runtime::LoraStorage storage;  // what the pairs' spans point into (f32 GGUF data stays mapped)
  struct Pair {
    int32_t layer = 0;
    runtime::LoraTarget target = runtime::LoraTarget::kAttnQ;
    runtime::LoraPair p;  // rank, in, out, a, b (factor set by BindLora); a and b point into storage
  };
  std::vector<Pair> pairs;
};

Result<LoraTensors> ReadLoraGguf(const std::string& path);
Result<LoraTensors> ReadLoraPeft(const std::string& dir);
// A directory is read as PEFT, a file as GGUF.
Result<LoraTensors> ReadLora(const std::string& path_or_dir);

Result<std::unique_ptr<runtime::LoraAdapter>> BindLora(LoraTensors t, const gguf::File& base,
                                                       const model::ModelConfig& config);

// A random adapter of rank `rank` on every projection of `base` that exists (the seven of a dense
// model; attention only on MoE), deterministic in `seed`: for benchmarks and tests.
Result<LoraTensors> SynthLora(const gguf::File& base, const model::ModelConfig& config, int32_t rank, float alpha,
                              uint64_t seed);

// Writes `t` as a GGUF adapter (f32 tensors; architecture "qwen3" when `t` has none).
Status WriteLoraGguf(const LoraTensors& t, const std::string& path);

}  // namespace qwenmux::engine
