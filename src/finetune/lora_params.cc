#include "finetune/lora_params.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "finetune/rng.h"

namespace qwenmux::finetune {

using runtime::kLoraTargets;
using runtime::LoraTarget;

std::string LoraParam::Name(bool is_a) const {
  return fmt::format("blk.{}.{}.weight.lora_{}", layer, runtime::LoraTargetGgufName(target), is_a ? "a" : "b");
}

void LoraParams::ZeroGrad() {
  for (LoraParam& p : pairs) {
    std::fill(p.ga.begin(), p.ga.end(), 0.0f);
    std::fill(p.gb.begin(), p.gb.end(), 0.0f);
  }
}

int64_t LoraParams::n_params() const {
  int64_t n = 0;
  for (const LoraParam& p : pairs) n += static_cast<int64_t>(p.a.size() + p.b.size());
  return n;
}

void LoraParams::Reindex(int32_t n_layer) {
  std::sort(pairs.begin(), pairs.end(), [](const LoraParam& x, const LoraParam& y) {
    return std::pair(x.layer, static_cast<int>(x.target)) < std::pair(y.layer, static_cast<int>(y.target));
  });
  index.assign(static_cast<size_t>(n_layer), {});
  for (auto& l : index) l.fill(-1);
  for (size_t i = 0; i < pairs.size(); ++i) {
    LoraParam& p = pairs[i];
    index[static_cast<size_t>(p.layer)][static_cast<size_t>(p.target)] = static_cast<int32_t>(i);
    p.ga.assign(p.a.size(), 0.0f);
    p.gb.assign(p.b.size(), 0.0f);
    p.ma.assign(p.a.size(), 0.0f);
    p.va.assign(p.a.size(), 0.0f);
    p.mb.assign(p.b.size(), 0.0f);
    p.vb.assign(p.b.size(), 0.0f);
  }
}

void ProjectionShape(const model::ModelConfig& c, LoraTarget t, int64_t* in, int64_t* out) {
  const int64_t E = c.n_embd, q = c.q_dim(), kv = c.kv_dim(), ff = c.n_ff;
  switch (t) {
    case LoraTarget::kAttnQ: *in = E, *out = q; break;
    case LoraTarget::kAttnK: *in = E, *out = kv; break;
    case LoraTarget::kAttnV: *in = E, *out = kv; break;
    case LoraTarget::kAttnOutput: *in = q, *out = E; break;
    case LoraTarget::kFfnGate: *in = E, *out = ff; break;
    case LoraTarget::kFfnUp: *in = E, *out = ff; break;
    case LoraTarget::kFfnDown: *in = ff, *out = E; break;
  }
}

Result<LoraParams> ParamsFromTensors(const engine::LoraTensors& t, const model::ModelConfig& config) {
  LoraParams p;
  p.alpha = t.alpha;
  for (const auto& pr : t.pairs) {
    const std::string what = fmt::format("finetune: adapter {}: layer {} {}", t.source, pr.layer,
                                         runtime::LoraTargetGgufName(pr.target));
    if (pr.layer < 0 || pr.layer >= static_cast<int32_t>(config.n_layer)) {
      return Error(StatusCode::kInvalidArgument, "{}: the model has {} layers", what, config.n_layer);
    }
    int64_t in = 0, out = 0;
    ProjectionShape(config, pr.target, &in, &out);
    if (pr.p.in != in || pr.p.out != out) {
      return Error(StatusCode::kInvalidArgument, "{}: shape in {} out {}, the model's projection is in {} out {}", what,
                   pr.p.in, pr.p.out, in, out);
    }
    LoraParam q;
    q.layer = pr.layer;
    q.target = pr.target;
    q.rank = pr.p.rank;
    q.in = in;
    q.out = out;
    q.a.assign(pr.p.a.begin(), pr.p.a.end());
    q.b.assign(pr.p.b.begin(), pr.p.b.end());
    p.pairs.push_back(std::move(q));
  }
  p.Reindex(static_cast<int32_t>(config.n_layer));
  return p;
}

LoraParams InitParams(const model::ModelConfig& config, int32_t rank, float alpha,
                      const std::vector<LoraTarget>& targets, uint64_t seed) {
  LoraParams p;
  p.alpha = alpha;
  for (int32_t l = 0; l < static_cast<int32_t>(config.n_layer); ++l) {
    for (LoraTarget t : targets) {
      LoraParam q;
      q.layer = l;
      q.target = t;
      q.rank = rank;
      ProjectionShape(config, t, &q.in, &q.out);
      q.a.resize(static_cast<size_t>(rank * q.in));
      SplitMix64 rng(seed ^ (static_cast<uint64_t>(l) << 32) ^ (static_cast<uint64_t>(t) << 48));
      const float bound = 1.0f / std::sqrt(static_cast<float>(q.in));
      for (float& v : q.a) v = bound * (2.0f * rng.Uniform() - 1.0f);
      q.b.assign(static_cast<size_t>(q.out * rank), 0.0f);
      p.pairs.push_back(std::move(q));
    }
  }
  p.Reindex(static_cast<int32_t>(config.n_layer));
  return p;
}

engine::LoraTensors ParamsToTensors(const LoraParams& p, const std::string& architecture) {
  engine::LoraTensors t;
  t.architecture = architecture;
  t.alpha = p.alpha;
  for (const LoraParam& q : p.pairs) {
    engine::LoraTensors::Pair pr;
    pr.layer = q.layer;
    pr.target = q.target;
    pr.p.rank = q.rank;
    pr.p.in = q.in;
    pr.p.out = q.out;
    pr.p.a = t.storage.Own(q.a);
    pr.p.b = t.storage.Own(q.b);
    t.pairs.push_back(pr);
  }
  return t;
}

Result<std::vector<LoraTarget>> TrainableTargets(const model::ModelConfig& config, std::vector<LoraTarget> targets,
                                                 bool all) {
  if (!config.is_moe()) return targets;
  std::vector<LoraTarget> out;
  for (LoraTarget t : targets) {
    const bool ffn = t == LoraTarget::kFfnGate || t == LoraTarget::kFfnUp || t == LoraTarget::kFfnDown;
    if (!ffn) {
      out.push_back(t);
    } else if (!all) {
      return Error(StatusCode::kInvalidArgument,
                   "finetune: target {}: this is a Mixture-of-Experts model; LoRA adapts its attention projections "
                   "(q, k, v, o) only, its experts stay frozen",
                   runtime::LoraTargetGgufName(t));
    }
  }
  return out;
}

Result<std::vector<LoraTarget>> ParseTargets(const std::string& list) {
  std::vector<LoraTarget> out;
  std::stringstream ss(list);
  std::string item;
  static const char* kShort[kLoraTargets] = {"q", "k", "v", "o", "gate", "up", "down"};
  static const char* kPeft[kLoraTargets] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    if (item == "all") {
      for (int k = 0; k < kLoraTargets; ++k) out.push_back(static_cast<LoraTarget>(k));
      continue;
    }
    int found = -1;
    for (int k = 0; k < kLoraTargets; ++k) {
      if (item == kShort[k] || item == kPeft[k] || item == runtime::LoraTargetGgufName(static_cast<LoraTarget>(k))) {
        found = k;
      }
    }
    if (found < 0) {
      return Error(StatusCode::kInvalidArgument,
                   "finetune: unknown LoRA target \"{}\" (q, k, v, o, gate, up, down, or all)", item);
    }
    if (std::find(out.begin(), out.end(), static_cast<LoraTarget>(found)) == out.end()) {
      out.push_back(static_cast<LoraTarget>(found));
    }
  }
  if (out.empty()) return Error(StatusCode::kInvalidArgument, "finetune: no LoRA targets in \"{}\"", list);
  return out;
}

}  // namespace qwenmux::finetune
