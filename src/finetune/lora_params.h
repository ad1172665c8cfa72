// The trainable side of LoRA training: per adapted projection, A [rank, in] and B [out, rank] in
// f32 (the master weights), their gradients, and AdamW's moments. Converts from and to
// engine::LoraTensors, so the engine's GGUF / PEFT readers and GGUF writer do the file work.
//
// Thread-safety: none; one trainer owns it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/lora.h"
#include "finetune/ops.h"
#include "model/config.h"
#include "runtime/lora.h"

namespace qwenmux::finetune {

struct LoraParam {
  int32_t layer = 0;
  runtime::LoraTarget target = runtime::LoraTarget::kAttnQ;
  int32_t rank = 0;
  int64_t in = 0, out = 0;
  std::vector<float> a, b;    // [rank, in], [out, rank]
  std::vector<float> ga, gb;  // gradients, same shapes
  std::vector<float> ma, va, mb, vb;  // AdamW moments

  std::string Name(bool is_a) const;  // "blk.N.attn_q.weight.lora_a" / ".lora_b"
};

struct LoraParams {
  float alpha = 0;  // 0: none (factor 1, as llama.cpp)
  std::vector<LoraParam> pairs;
  // [layer][target] -> index into pairs, or -1.
  std::vector<std::array<int32_t, runtime::kLoraTargets>> index;

  float Factor(const LoraParam& p) const { return alpha > 0 ? alpha / static_cast<float>(p.rank) : 1.0f; }
  LoraParam* Find(int32_t layer, runtime::LoraTarget t) {
    const int32_t i = index[static_cast<size_t>(layer)][static_cast<size_t>(t)];
    return i < 0 ? nullptr : &pairs[static_cast<size_t>(i)];
  }
  LoraRef Ref(const LoraParam& p) const {
    return {p.rank, p.in, p.out, Factor(p), p.a.data(), p.b.data()};
  }
  void ZeroGrad();
  int64_t n_params() const;
  void Reindex(int32_t n_layer);
};

// The shapes every dense Qwen3 projection has (in, out) for `config`.
void ProjectionShape(const model::ModelConfig& c, runtime::LoraTarget t, int64_t* in, int64_t* out);

// Copies an adapter read by the engine (checked against `config`: layers, shapes, one rank).
Result<LoraParams> ParamsFromTensors(const engine::LoraTensors& t, const model::ModelConfig& config);
// A fresh adapter as PEFT initialises one: A uniform in ±1/sqrt(in) (kaiming_uniform with a=√5),
// B = 0, deterministic in `seed`.
LoraParams InitParams(const model::ModelConfig& config, int32_t rank, float alpha,
                      const std::vector<runtime::LoraTarget>& targets, uint64_t seed);
// The adapter as LoraTensors (owning copies), for engine::WriteLoraGguf.
// `architecture`: the base's general.architecture (an adapter loads only on its architecture).
engine::LoraTensors ParamsToTensors(const LoraParams& p, const std::string& architecture = "qwen3");

// The targets training may adapt on `config`: every one on a dense model; on a MoE model the
// attention projections only (its experts are frozen; the FFN targets name dense weights it has
// not): `all` keeps q, k, v, o there, an explicit FFN target is an error naming it.
Result<std::vector<runtime::LoraTarget>> TrainableTargets(const model::ModelConfig& config,
                                                          std::vector<runtime::LoraTarget> targets, bool all);

// Parses "q,k,v,o,gate,up,down" (also the GGUF and PEFT names, or "all").
Result<std::vector<runtime::LoraTarget>> ParseTargets(const std::string& list);

}  // namespace qwenmux::finetune
