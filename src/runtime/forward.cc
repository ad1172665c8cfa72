#include "runtime/forward.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/vec_ops.h"
#include "runtime/cpu_profile.h"
#include "runtime/moe_route.h"

namespace qwenmux::runtime {

namespace {

template <class V>
void Grow(V& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

// Inverse frequencies of NeoX RoPE, with the YaRN blend when the file asks for it
// (qwen3-reference §2.5, §7.2).
std::vector<float> RopeFrequencies(const model::ModelConfig& c, float* mscale) {
  const int d = static_cast<int>(c.head_dim);
  std::vector<float> f(d / 2);
  const double base = c.rope_freq_base;
  for (int i = 0; i < d / 2; ++i) f[i] = static_cast<float>(1.0 / std::pow(base, 2.0 * i / d));
  *mscale = 1.0f;
  if (c.rope_yarn && c.rope_scale_factor > 1.0f) {
    const double s = c.rope_scale_factor;
    const double l0 = c.rope_orig_ctx;
    auto corr_dim = [&](double n_rot) { return d * std::log(l0 / (2 * M_PI * n_rot)) / (2 * std::log(base)); };
    const double low = std::max(0.0, std::floor(corr_dim(32.0)));
    const double high = std::min(d - 1.0, std::ceil(corr_dim(1.0)));
    for (int i = 0; i < d / 2; ++i) {
      const double r = std::clamp((i - low) / std::max(high - low, 0.001), 0.0, 1.0);
      f[i] = static_cast<float>((1 - r) * f[i] + r * f[i] / s);
    }
    *mscale = static_cast<float>(0.1 * std::log(s) + 1.0);
  }
  return f;
}

CpuForward::CpuForward(const model::ModelConfig& config, const ModelWeights& weights, ThreadPool* pool)
    : c_(config), w_(weights), pool_(pool) {
  rope_freq_ = RopeFrequencies(c_, &rope_mscale_);
  scores_.resize(pool_ ? pool_->size() : 1);
}

uint64_t CpuForward::scratch_bytes() const {
  uint64_t n = 0;
  for (const Scratch* s : {&x_, &a_, &q_, &k_, &v_, &attn_, &tmp_, &gate_, &up_, &hid_, &router_, &moe_in_,
                           &moe_gate_, &moe_up_, &moe_out_}) {
    n += s->capacity() * sizeof(float);
  }
  for (const Scratch& s : scores_) n += s.capacity() * sizeof(float);
  for (const auto* v : {&lora_scratch_.in, &lora_scratch_.mid, &lora_scratch_.out}) n += v->capacity() * sizeof(float);
  return n;
}

void CpuForward::MatMul(const WeightView& w, const float* x, float* y, int64_t n) const {
  kernels::MatMul(w, x, w.cols, y, w.rows, n, pool_);
}

void CpuForward::Project(int32_t il, LoraTarget t, const WeightView& w, const float* x, float* y, int64_t n) {
  MatMul(w, x, y, n);
  if (lora_.empty()) return;
  CpuPhaseTimer timer(CpuPhase::kLora, n > 8);
  ApplyLora(lora_, il, t, x, w.cols, y, w.rows, &lora_scratch_, pool_);
}

namespace {
uint64_t Bytes(const WeightView& w) { return static_cast<uint64_t>(w.rows) * w.row_bytes; }
}  // namespace

void CpuForward::ProjectMany(int32_t il, std::span<const Projection> ps, const float* x, int64_t n) {
  kernels::MatMulOut outs[4];
  for (size_t i = 0; i < ps.size(); ++i) outs[i] = {*ps[i].w, ps[i].y, ps[i].w->rows};
  kernels::MatMulMany({outs, ps.size()}, x, ps[0].w->cols, n, pool_);
  if (lora_.empty()) return;
  CpuPhaseTimer timer(CpuPhase::kLora, n > 8);
  for (const Projection& p : ps) ApplyLora(lora_, il, p.target, x, p.w->cols, p.y, p.w->rows, &lora_scratch_, pool_);
}

void CpuForward::RmsNormRows(const float* x, const float* w, float* y, int64_t n, int64_t dim) const {
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * dim;
    float* yr = y + t * dim;
    const float mean = kernels::SumSquares(xr, dim) / static_cast<float>(dim);
    const float r = 1.0f / std::sqrt(mean + c_.rms_eps);
    for (int64_t i = 0; i < dim; ++i) yr[i] = w[i] * (xr[i] * r);
  }
}

// Per-head RMSNorm of q and k (one shared 128-wide weight each), then NeoX RoPE at each token's
// position: element j pairs with j + head_dim/2.
void CpuForward::QkNormRope(std::span<const BatchEntry> batch, float* q, float* k, const LayerWeights& l) const {
  const int64_t hd = c_.head_dim, half = hd / 2;
  const int64_t n = static_cast<int64_t>(batch.size());
  const int64_t heads_q = c_.n_head, heads_kv = c_.n_head_kv;
  std::vector<float> cs(hd);  // [cos(half), sin(half)]
  for (int64_t t = 0; t < n; ++t) {
    const float p = static_cast<float>(batch[t].pos);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = p * rope_freq_[i];
      cs[i] = static_cast<float>(std::cos(static_cast<double>(angle))) * rope_mscale_;
      cs[half + i] = static_cast<float>(std::sin(static_cast<double>(angle))) * rope_mscale_;
    }
    auto norm_rope = [&](float* h, const float* w) {
      RmsNormRows(h, w, h, 1, hd);
      for (int64_t i = 0; i < half; ++i) {
        const float x0 = h[i], x1 = h[i + half];
        h[i] = x0 * cs[i] - x1 * cs[half + i];
        h[i + half] = x1 * cs[i] + x0 * cs[half + i];
      }
    };
    for (int64_t h = 0; h < heads_q; ++h) norm_rope(q + (t * heads_q + h) * hd, l.q_norm.data());
    for (int64_t h = 0; h < heads_kv; ++h) norm_rope(k + (t * heads_kv + h) * hd, l.k_norm.data());
  }
}

void CpuForward::StoreKv(std::span<const BatchEntry> batch, const float* k, const float* v, int32_t layer,
                         KvCache& kv) const {
  const int64_t hd = c_.head_dim, heads_kv = c_.n_head_kv;
  for (size_t t = 0; t < batch.size(); ++t) {
    for (int64_t h = 0; h < heads_kv; ++h) {
      const int64_t off = (static_cast<int64_t>(t) * heads_kv + h) * hd;
      kernels::F32ToF16(k + off, kv.K(layer, batch[t].seq, static_cast<int32_t>(h), batch[t].pos), hd);
      kernels::F32ToF16(v + off, kv.V(layer, batch[t].seq, static_cast<int32_t>(h), batch[t].pos), hd);
    }
  }
}

// Causal grouped-query attention: query head h reads KV head h / (n_head / n_head_kv) over the
// positions [0, pos] of its own sequence; softmax in f32. One work item per (token, KV head) runs
// the KV head's whole group of query heads, so each cached K/V row is read once per group.
void CpuForward::Attention(std::span<const BatchEntry> batch, const float* q, int32_t layer, KvCache& kv,
                           float* out) {
  const int64_t hd = c_.head_dim, heads_q = c_.n_head, heads_kv = c_.n_head_kv;
  const int64_t group = heads_q / heads_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t items = static_cast<int64_t>(batch.size()) * heads_kv;
  for (auto& s : scores_) Grow(s, static_cast<size_t>(kv.n_ctx()) * std::min<int64_t>(group, 4));
  auto work = [&](size_t begin, size_t end, size_t thread) {
    float* scores = scores_[thread].data();
    for (size_t it = begin; it < end; ++it) {
      const int64_t t = static_cast<int64_t>(it) / heads_kv, kvh = static_cast<int64_t>(it) % heads_kv;
      const BatchEntry& e = batch[t];
      const int64_t h0 = kvh * group;  // the group's first query head
      const uint16_t* k0 = kv.K(layer, e.seq, static_cast<int32_t>(kvh), 0);
      const uint16_t* v0 = kv.V(layer, e.seq, static_cast<int32_t>(kvh), 0);
      kernels::AttendF16(k0, v0, static_cast<size_t>(hd), static_cast<size_t>(e.pos) + 1,
                         q + (t * heads_q + h0) * hd, static_cast<size_t>(group), static_cast<size_t>(hd),
                         scale, scores, out + (t * heads_q + h0) * hd);  // [group, head_dim]
    }
  };
  if (pool_) {
    pool_->ParallelFor(static_cast<size_t>(items), 1, work);
  } else {
    work(0, static_cast<size_t>(items), 0);
  }
}

void CpuForward::DenseFfn(int32_t il, const LayerWeights& l, const float* b, float* out, int64_t n) {
  const int64_t ff = c_.n_ff;
  Grow(gate_, n * ff);
  Grow(up_, n * ff);
  Grow(hid_, n * ff);
  const Projection gate_up[] = {{LoraTarget::kFfnGate, &l.ffn_gate, gate_.data()},  // [n, n_ff]
                                {LoraTarget::kFfnUp, &l.ffn_up, up_.data()}};        // [n, n_ff]
  const bool pre = n > 8;
  {
    CpuPhaseTimer timer(CpuPhase::kFfnGateUp, pre, Bytes(l.ffn_gate) + Bytes(l.ffn_up));
    ProjectMany(il, gate_up, b, n);
  }
  {
    CpuPhaseTimer timer(CpuPhase::kSwiGlu, pre);
    kernels::SwiGlu(gate_.data(), up_.data(), hid_.data(), n * ff);
  }
  CpuPhaseTimer timer(CpuPhase::kFfnDown, pre, Bytes(l.ffn_down));
  Project(il, LoraTarget::kFfnDown, l.ffn_down, hid_.data(), out, n);  // [n, n_embd]
}

// Sparse MoE: softmax over all experts, top-k, renormalise; each selected expert runs on the
// tokens routed to it and its output is added with the token's weight.
void CpuForward::MoeFfn(const LayerWeights& l, const float* b, float* out, int64_t n) {
  const int64_t E = c_.n_embd, ne = c_.n_expert, k = c_.n_expert_used, ff = c_.n_ff_exp;
  Grow(router_, n * ne);
  MatMul(l.ffn_gate_inp, b, router_.data(), n);  // [n, n_expert]
  std::vector<std::vector<std::pair<int64_t, float>>> routed(ne);  // expert -> (token, weight)
  std::vector<int64_t> sel(k);
  std::vector<float> w(k);
  for (int64_t t = 0; t < n; ++t) {
    RouteTopK(router_.data() + t * ne, ne, k, sel.data(), w.data());
    for (int64_t j = 0; j < k; ++j) routed[sel[j]].push_back({t, w[j]});
  }
  std::fill(out, out + n * E, 0.0f);
  for (int64_t e = 0; e < ne; ++e) {
    const auto& toks = routed[e];
    if (toks.empty()) continue;
    const int64_t m = static_cast<int64_t>(toks.size());
    Grow(moe_in_, m * E);
    Grow(moe_gate_, m * ff);
    Grow(moe_up_, m * ff);
    Grow(moe_out_, m * E);
    for (int64_t i = 0; i < m; ++i) std::copy_n(b + toks[i].first * E, E, moe_in_.data() + i * E);
    const kernels::MatMulOut gate_up[] = {{l.ffn_gate_exps.Slice(e * ff, ff), moe_gate_.data(), ff},  // [m, ff]
                                          {l.ffn_up_exps.Slice(e * ff, ff), moe_up_.data(), ff}};     // [m, ff]
    kernels::MatMulMany(gate_up, moe_in_.data(), E, m, pool_);
    kernels::SwiGlu(moe_gate_.data(), moe_up_.data(), moe_gate_.data(), m * ff);
    MatMul(l.ffn_down_exps.Slice(e * E, E), moe_gate_.data(), moe_out_.data(), m);
    for (int64_t i = 0; i < m; ++i) {
      kernels::Axpy(toks[i].second, moe_out_.data() + i * E, out + toks[i].first * E, E);
    }
  }
}

Status CpuForward::Run(std::span<const BatchEntry> batch, KvCache& kv, float* out_logits, float* out_hidden) {
  const int64_t n = static_cast<int64_t>(batch.size());
  if (n == 0) return Status::Ok();
  const int64_t E = c_.n_embd, qd = c_.q_dim(), kvd = c_.kv_dim();
  for (const BatchEntry& e : batch) {
    if (e.token < 0 || e.token >= static_cast<int32_t>(c_.n_vocab)) {
      return Error(StatusCode::kInvalidArgument, "forward: token id {} out of range [0, {})", e.token, c_.n_vocab);
    }
    if (e.seq < 0 || e.seq >= kv.n_seq()) {
      return Error(StatusCode::kInvalidArgument, "forward: sequence {} out of range [0, {})", e.seq, kv.n_seq());
    }
    if (e.pos < 0 || e.pos >= kv.n_ctx()) {
      return Error(StatusCode::kOutOfRange, "forward: position {} is past the context size {}", e.pos, kv.n_ctx());
    }
  }
  lora_.Build(batch);
  // Adapters were checked against this model when loaded (engine/lora.h); the layer count guards
  // against one made for another model.
  for (const auto& s : lora_.segments) {
    if (s.adapter->layers.size() != c_.n_layer) {
      return Error(StatusCode::kInvalidArgument, "forward: adapter {} has {} layers, the model {}", s.adapter->name,
                   s.adapter->layers.size(), c_.n_layer);
    }
  }
  Grow(x_, n * E);
  Grow(a_, n * E);
  Grow(q_, n * qd);
  Grow(k_, n * kvd);
  Grow(v_, n * kvd);
  Grow(attn_, n * qd);
  Grow(tmp_, n * E);

  const bool pre = n > 8;  // profile: prefill or decode step
  if (CpuProfileOn()) CpuProfileStep(pre, n);
  // x = embed(tokens)  [n, n_embd]
  {
    CpuPhaseTimer timer(CpuPhase::kEmbed, pre);
    for (int64_t t = 0; t < n; ++t) kernels::DequantizeRowTo(w_.token_embd, batch[t].token, x_.data() + t * E);
  }
  auto residual = [&] {
    CpuPhaseTimer timer(CpuPhase::kResidual, pre);
    for (int64_t i = 0; i < n * E; ++i) x_[i] += tmp_[i];
  };
  for (int32_t il = 0; il < static_cast<int32_t>(c_.n_layer); ++il) {
    const LayerWeights& l = w_.layers[il];
    // Attention block.
    {
      CpuPhaseTimer timer(CpuPhase::kNorm, pre);
      RmsNormRows(x_.data(), l.attn_norm.data(), a_.data(), n, E);  // a = norm(x)  [n, n_embd]
    }
    {
      CpuPhaseTimer timer(CpuPhase::kQkv, pre, Bytes(l.attn_q) + Bytes(l.attn_k) + Bytes(l.attn_v));
      const Projection qkv[] = {{LoraTarget::kAttnQ, &l.attn_q, q_.data()},   // [n, n_head * head_dim]
                                {LoraTarget::kAttnK, &l.attn_k, k_.data()},   // [n, n_head_kv * head_dim]
                                {LoraTarget::kAttnV, &l.attn_v, v_.data()}};  // [n, n_head_kv * head_dim]
      ProjectMany(il, qkv, a_.data(), n);
    }
    {
      CpuPhaseTimer timer(CpuPhase::kQkNormRope, pre);
      QkNormRope(batch, q_.data(), k_.data(), l);
    }
    {
      CpuPhaseTimer timer(CpuPhase::kKvStore, pre);
      StoreKv(batch, k_.data(), v_.data(), il, kv);
    }
    {
      CpuPhaseTimer timer(CpuPhase::kAttention, pre);
      Attention(batch, q_.data(), il, kv, attn_.data());  // [n, n_head * head_dim]
    }
    {
      CpuPhaseTimer timer(CpuPhase::kAttnOut, pre, Bytes(l.attn_output));
      Project(il, LoraTarget::kAttnOutput, l.attn_output, attn_.data(), tmp_.data(), n);  // [n, n_embd]
    }
    residual();
    // Feed-forward block.
    {
      CpuPhaseTimer timer(CpuPhase::kNorm, pre);
      RmsNormRows(x_.data(), l.ffn_norm.data(), a_.data(), n, E);
    }
    if (c_.is_moe()) {
      CpuPhaseTimer timer(CpuPhase::kMoe, pre);
      MoeFfn(l, a_.data(), tmp_.data(), n);
    } else {
      DenseFfn(il, l, a_.data(), tmp_.data(), n);
    }
    residual();
  }

  // Final norm and LM head for the output rows only.
  int64_t n_out = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (!batch[t].output) continue;
    RmsNormRows(x_.data() + t * E, w_.output_norm.data(), a_.data() + n_out * E, 1, E);
    ++n_out;
  }
  if (n_out == 0) return Status::Ok();
  if (out_hidden) std::copy_n(a_.data(), n_out * E, out_hidden);
  if (out_logits) {
    CpuPhaseTimer timer(CpuPhase::kLmHead, pre, Bytes(w_.output));
    MatMul(w_.output, a_.data(), out_logits, n_out);
  }
  return Status::Ok();
}

}  // namespace qwenmux::runtime
