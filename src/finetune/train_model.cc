#include "finetune/train_model.h"

#include <algorithm>
#include <array>

#include "finetune/moe_ffn.h"
#include "finetune/rng.h"
#include "runtime/forward.h"

namespace qwenmux::finetune {

using runtime::LoraTarget;

namespace {

template <class V>
void Grow(V& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// The dropout keep-mask of one projection's input, regenerated identically in the backward.
class DropMask {
 public:
  DropMask(const Dropout& d, int32_t layer, LoraTarget t)
      : rng_(MixSeed(d.seed, static_cast<uint64_t>(layer) * 8 + static_cast<uint64_t>(t))), p_(d.p),
        keep_scale_(1.0f / (1.0f - d.p)) {}
  float Next() { return rng_.Uniform() < p_ ? 0.0f : keep_scale_; }

 private:
  SplitMix64 rng_;
  float p_, keep_scale_;
};

}  // namespace

// Saved values of one layer's forward, [n, ...] per token.
struct TrainModel::LayerActs {
  std::vector<float> xin, a, rstd1;          // residual in, attn-normed [n, E], [n]
  std::vector<float> qpre, kpre, v;          // projections [n, qd], [n, kvd], [n, kvd]
  std::vector<float> qr, kr, rq, rk;         // normed + rotated q, k; per-head rstd [n·hq], [n·hkv]
  std::vector<float> lse, o;                 // attention [hq·n], [n, qd]
  std::vector<float> xmid, b, rstd2;         // after attention [n, E], ffn-normed [n, E], [n]
  std::vector<float> g, u, h;                // [n, ff] (dense)
  MoeActs moe;                               // the MoE FFN's routing and expert activations (MoE)
  std::array<std::vector<float>, runtime::kLoraTargets> mid;  // x·Aᵀ [n, r]
  std::array<std::vector<float>, runtime::kLoraTargets> xd;   // dropped-out LoRA input [n, in]

  // Activation checkpointing: keep only the layer's input.
  void DropAllButInput() {
    for (auto* p : {&a, &rstd1, &qpre, &kpre, &v, &qr, &kr, &rq, &rk, &lse, &o, &xmid, &b, &rstd2, &g, &u, &h}) {
      std::vector<float>().swap(*p);
    }
    for (auto& m : mid) std::vector<float>().swap(m);
    for (auto& m : xd) std::vector<float>().swap(m);
    moe.Clear();
  }
};

// One sequence's saved forward.
struct TrainModel::SeqState {
  std::vector<LayerActs> layers;
  std::vector<float> x, rstdf;  // final residual stream [n, E], its final-norm rstd [n]
  std::vector<int64_t> rows;    // positions whose next token is a label
  int64_t row0 = 0;             // their first row in the group's head matrix
};

TrainModel::~TrainModel() = default;

Result<std::unique_ptr<TrainModel>> TrainModel::Open(const std::string& path, ThreadPool* pool,
                                                     uint64_t head_cache_bytes) {
  QM_ASSIGN_OR_RETURN(gguf::File f, gguf::File::Open(path));
  std::unique_ptr<TrainModel> m(new TrainModel());
  m->file_ = std::make_shared<gguf::File>(std::move(f));
  QM_ASSIGN_OR_RETURN(m->config_, model::ReadConfig(*m->file_));
  QM_ASSIGN_OR_RETURN(m->weights_, runtime::BindWeights(*m->file_, m->config_));
  m->pool_ = pool;
  m->rope_freq_ = runtime::RopeFrequencies(m->config_, &m->rope_mscale_);
  const kernels::WeightView& out = m->weights_.output;
  const uint64_t elems = static_cast<uint64_t>(out.rows) * static_cast<uint64_t>(out.cols);
  if (2 * elems * sizeof(float) <= head_cache_bytes) {
    m->head_.resize(elems);
    m->head_t_.resize(elems);
    for (int64_t r = 0; r < out.rows; ++r) kernels::DequantizeRowTo(out, r, m->head_.data() + r * out.cols);
    Transpose(m->head_.data(), out.rows, out.cols, m->head_t_.data());
  }
  return m;
}

void TrainModel::Project(int32_t il, LoraTarget t, const kernels::WeightView& w, const float* x, int64_t n, float* y,
                         LayerActs& acts, LoraParams& params, const Dropout& dropout) {
  LinearForward(w, x, n, y, &scratch_, pool_);
  const LoraParam* p = params.Find(il, t);
  if (p == nullptr) return;
  const float* in = x;
  if (dropout.p > 0) {
    auto& xd = acts.xd[static_cast<size_t>(t)];
    Grow(xd, static_cast<size_t>(n * p->in));
    DropMask mask(dropout, il, t);
    for (int64_t i = 0; i < n * p->in; ++i) xd[i] = x[i] * mask.Next();
    in = xd.data();
  }
  auto& mid = acts.mid[static_cast<size_t>(t)];
  Grow(mid, static_cast<size_t>(n * p->rank));
  LoraForward(params.Ref(*p), in, n, y, mid.data(), &scratch_, pool_);
}

void TrainModel::ProjectBack(int32_t il, LoraTarget t, const kernels::WeightView& w, const float* x, int64_t n,
                             const float* dy, float* dx, bool accumulate, LayerActs& acts, LoraParams& params,
                             const Dropout& dropout) {
  if (dx) LinearBackwardInput(w, dy, n, dx, accumulate, &scratch_, pool_);
  LoraParam* p = params.Find(il, t);
  if (p == nullptr) return;
  const float* mid = acts.mid[static_cast<size_t>(t)].data();
  if (dropout.p <= 0) {
    LoraBackward(params.Ref(*p), x, mid, dy, n, p->ga.data(), p->gb.data(), dx, &scratch_, pool_);
    return;
  }
  std::vector<float> dxd(dx ? static_cast<size_t>(n * p->in) : 0, 0.0f);
  LoraBackward(params.Ref(*p), acts.xd[static_cast<size_t>(t)].data(), mid, dy, n, p->ga.data(), p->gb.data(),
               dx ? dxd.data() : nullptr, &scratch_, pool_);
  if (dx) {
    DropMask mask(dropout, il, t);
    for (int64_t i = 0; i < n * p->in; ++i) dx[i] += dxd[i] * mask.Next();
  }
}

Result<SeqResult> TrainModel::Run(const Example& ex, LoraParams& params, float loss_weight, bool backward,
                                  const Dropout& dropout) {
  const Example* one[1] = {&ex};
  const Dropout d[1] = {dropout};
  QM_ASSIGN_OR_RETURN(std::vector<SeqResult> r, RunBatch(one, params, loss_weight, backward, d));
  return r[0];
}

Result<std::vector<SeqResult>> TrainModel::RunBatch(std::span<const Example* const> exs, LoraParams& params,
                                                    float loss_weight, bool backward,
                                                    std::span<const Dropout> dropouts) {
  const model::ModelConfig& c = config_;
  if (params.index.size() != c.n_layer) {
    return Error(StatusCode::kInvalidArgument, "finetune: adapter has {} layers, the model {}", params.index.size(),
                 c.n_layer);
  }
  if (!dropouts.empty() && dropouts.size() != exs.size()) {
    return Error(StatusCode::kInvalidArgument, "finetune: {} dropout settings for {} examples", dropouts.size(), exs.size());
  }
  for (const Example* ex : exs) {
    if (ex->mask.size() != ex->ids.size()) {
      return Error(StatusCode::kInvalidArgument, "finetune: example has {} ids but {} mask entries", ex->ids.size(),
                   ex->mask.size());
    }
    for (int32_t id : ex->ids) {
      if (id < 0 || id >= static_cast<int32_t>(c.n_vocab)) {
        return Error(StatusCode::kInvalidArgument, "finetune: token id {} out of range [0, {})", id, c.n_vocab);
      }
    }
  }
  std::vector<SeqResult> out(exs.size());
  // Groups of sequences whose activations are kept together (at most max_group_tokens_ tokens,
  // at least one sequence): the LM head runs once per group.
  size_t begin = 0;
  while (begin < exs.size()) {
    size_t end = begin;
    int64_t tokens = 0;
    while (end < exs.size() && (end == begin || tokens + static_cast<int64_t>(exs[end]->ids.size()) <= max_group_tokens_)) {
      tokens += static_cast<int64_t>(exs[end]->ids.size());
      ++end;
    }
    RunGroup(exs.subspan(begin, end - begin), params, loss_weight, backward,
             dropouts.empty() ? dropouts : dropouts.subspan(begin, end - begin), std::span(out).subspan(begin, end - begin));
    begin = end;
  }
  return out;
}

void TrainModel::RunGroup(std::span<const Example* const> exs, LoraParams& params, float loss_weight, bool backward,
                          std::span<const Dropout> dropouts, std::span<SeqResult> out) {
  const model::ModelConfig& c = config_;
  const int64_t E = c.n_embd, V = c.n_vocab;
  if (seqs_.size() < exs.size()) seqs_.resize(exs.size());
  int64_t max_n = 0;
  for (const Example* ex : exs) max_n = std::max<int64_t>(max_n, static_cast<int64_t>(ex->ids.size()));
  const std::vector<float> cs = RopeTable(rope_freq_, rope_mscale_, max_n);  // [max_n, hd]

  // Forward of every sequence; the label rows of the final norm gathered into fm [m, E].
  int64_t m = 0;
  std::vector<float> fm;
  std::vector<int32_t> labels;
  for (size_t i = 0; i < exs.size(); ++i) {
    const Example& ex = *exs[i];
    SeqState& S = seqs_[i];
    const int64_t n = static_cast<int64_t>(ex.ids.size());
    S.rows.clear();
    S.row0 = m;
    if (n == 0) continue;
    ForwardBody(ex, S, cs.data(), params, dropouts.empty() ? Dropout{} : dropouts[i]);
    std::vector<float> f(static_cast<size_t>(n * E));
    S.rstdf.resize(static_cast<size_t>(n));
    RmsNormForward(S.x.data(), weights_.output_norm.data(), f.data(), S.rstdf.data(), n, E, c.rms_eps);
    for (int64_t t = 0; t + 1 < n; ++t) {
      if (!ex.mask[t + 1]) continue;
      S.rows.push_back(t);
      labels.push_back(ex.ids[t + 1]);
      fm.insert(fm.end(), f.begin() + t * E, f.begin() + (t + 1) * E);
      ++m;
    }
    out[i].n_labels = static_cast<int64_t>(S.rows.size());
  }
  if (m == 0) return;
  std::vector<float> logits(static_cast<size_t>(m * V));
  if (!head_.empty()) {
    kernels::MatMul(F32View(head_.data(), V, E), fm.data(), E, logits.data(), V, m, pool_);  // [m, V]
  } else {
    LinearForward(weights_.output, fm.data(), m, logits.data(), &scratch_, pool_);  // [m, V]
  }
  std::vector<uint8_t> ok(static_cast<size_t>(m));
  for (size_t i = 0; i < exs.size(); ++i) {
    const SeqState& S = seqs_[i];
    const int64_t k = static_cast<int64_t>(S.rows.size());
    if (k == 0) continue;
    out[i].loss_sum = CrossEntropyForwardBackward(logits.data() + S.row0 * V, labels.data() + S.row0, k, V,
                                                  loss_weight, ok.data() + S.row0, pool_);
    for (int64_t r = 0; r < k; ++r) out[i].n_correct += ok[S.row0 + r];
  }
  if (!backward) return;
  // dfm [m, E] = dlogits · W_head
  if (!head_t_.empty()) {
    kernels::MatMul(F32View(head_t_.data(), E, V), logits.data(), V, fm.data(), E, m, pool_);
  } else {
    LinearBackwardInput(weights_.output, logits.data(), m, fm.data(), false, &scratch_, pool_);
  }
  logits = {};
  for (size_t i = 0; i < exs.size(); ++i) {
    const Example& ex = *exs[i];
    SeqState& S = seqs_[i];
    if (S.rows.empty()) continue;
    BackwardBody(ex, S, fm.data() + S.row0 * E, cs.data(), params, dropouts.empty() ? Dropout{} : dropouts[i]);
  }
}

void TrainModel::ForwardBody(const Example& ex, SeqState& S, const float* cs, LoraParams& params,
                             const Dropout& dropout) {
  const model::ModelConfig& c = config_;
  const int64_t n = static_cast<int64_t>(ex.ids.size());
  const int64_t E = c.n_embd;
  S.layers.resize(c.n_layer);
  std::vector<float>& x = S.x;
  x.resize(static_cast<size_t>(n * E));
  for (int64_t t = 0; t < n; ++t) kernels::DequantizeRowTo(weights_.token_embd, ex.ids[t], x.data() + t * E);
  for (int32_t il = 0; il < static_cast<int32_t>(c.n_layer); ++il) {
    LayerActs& A = S.layers[il];
    A.xin.assign(x.begin(), x.end());
    ForwardLayer(il, n, A, x.data(), cs, params, dropout);
    if (checkpointing_) A.DropAllButInput();  // recomputed from xin in the backward
  }
}

// One layer's forward from A.xin, saving what its backward needs; writes the layer's output to x.
void TrainModel::ForwardLayer(int32_t il, int64_t n, LayerActs& A, float* x, const float* cs, LoraParams& params,
                              const Dropout& dropout) {
  const model::ModelConfig& c = config_;
  const int64_t E = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), ff = c.n_ff, hd = c.head_dim;
  const int64_t hq = c.n_head, hkv = c.n_head_kv;
  const AttnShape shape{n, hq, hkv, hd};
  std::vector<float> tmp(static_cast<size_t>(n * E));
  {
    const runtime::LayerWeights& l = weights_.layers[il];
    for (auto* v : {&A.a, &A.b, &A.xmid}) v->resize(static_cast<size_t>(n * E));
    for (auto* v : {&A.qpre, &A.qr, &A.o}) v->resize(static_cast<size_t>(n * qd));
    for (auto* v : {&A.kpre, &A.kr, &A.v}) v->resize(static_cast<size_t>(n * kvd));
    for (auto* v : {&A.g, &A.u, &A.h}) v->resize(static_cast<size_t>(n * ff));
    A.rstd1.resize(n), A.rstd2.resize(n), A.rq.resize(n * hq), A.rk.resize(n * hkv), A.lse.resize(n * hq);

    RmsNormForward(A.xin.data(), l.attn_norm.data(), A.a.data(), A.rstd1.data(), n, E, c.rms_eps);
    Project(il, LoraTarget::kAttnQ, l.attn_q, A.a.data(), n, A.qpre.data(), A, params, dropout);  // [n, qd]
    Project(il, LoraTarget::kAttnK, l.attn_k, A.a.data(), n, A.kpre.data(), A, params, dropout);  // [n, kvd]
    Project(il, LoraTarget::kAttnV, l.attn_v, A.a.data(), n, A.v.data(), A, params, dropout);     // [n, kvd]
    QkNormRopeForward(A.qpre.data(), l.q_norm.data(), cs, A.qr.data(), A.rq.data(), n, hq, hd, c.rms_eps);
    QkNormRopeForward(A.kpre.data(), l.k_norm.data(), cs, A.kr.data(), A.rk.data(), n, hkv, hd, c.rms_eps);
    AttentionForward(shape, A.qr.data(), A.kr.data(), A.v.data(), A.o.data(), A.lse.data(), pool_);
    Project(il, LoraTarget::kAttnOutput, l.attn_output, A.o.data(), n, tmp.data(), A, params, dropout);  // [n, E]
    for (int64_t i = 0; i < n * E; ++i) A.xmid[i] = A.xin[i] + tmp[i];
    RmsNormForward(A.xmid.data(), l.ffn_norm.data(), A.b.data(), A.rstd2.data(), n, E, c.rms_eps);
    if (c.is_moe()) {  // frozen experts (no LoRA on them: lora_params.h MoE targets)
      MoeFfnForward(l, c, A.b.data(), n, tmp.data(), &A.moe, &scratch_, pool_);  // [n, E]
    } else {
      Project(il, LoraTarget::kFfnGate, l.ffn_gate, A.b.data(), n, A.g.data(), A, params, dropout);  // [n, ff]
      Project(il, LoraTarget::kFfnUp, l.ffn_up, A.b.data(), n, A.u.data(), A, params, dropout);      // [n, ff]
      SwiGluForward(A.g.data(), A.u.data(), A.h.data(), n * ff);
      Project(il, LoraTarget::kFfnDown, l.ffn_down, A.h.data(), n, tmp.data(), A, params, dropout);  // [n, E]
    }
    for (int64_t i = 0; i < n * E; ++i) x[i] = A.xmid[i] + tmp[i];
  }
}

void TrainModel::BackwardBody(const Example& ex, SeqState& S, const float* dfm, const float* cs, LoraParams& params,
                              const Dropout& dropout) {
  const model::ModelConfig& c = config_;
  const int64_t n = static_cast<int64_t>(ex.ids.size());
  const int64_t E = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), ff = c.n_ff, hd = c.head_dim;
  const int64_t hq = c.n_head, hkv = c.n_head_kv;
  const AttnShape shape{n, hq, hkv, hd};
  // df [n, E]: the label rows' gradient, zero elsewhere; dx: the residual stream's gradient.
  std::vector<float> df(static_cast<size_t>(n * E), 0.0f);
  for (size_t i = 0; i < S.rows.size(); ++i) std::copy_n(dfm + static_cast<int64_t>(i) * E, E, df.data() + S.rows[i] * E);
  std::vector<float> dx(static_cast<size_t>(n * E));
  RmsNormBackward(S.x.data(), weights_.output_norm.data(), S.rstdf.data(), df.data(), dx.data(), n, E, false);

  std::vector<float> dh(static_cast<size_t>(n * ff)), dg(static_cast<size_t>(n * ff)), du(static_cast<size_t>(n * ff));
  std::vector<float>& db = df;  // [n, E], reused
  std::vector<float> dq(static_cast<size_t>(n * qd)), dqr(static_cast<size_t>(n * qd));
  std::vector<float> dk(static_cast<size_t>(n * kvd)), dkr(static_cast<size_t>(n * kvd)), dv(static_cast<size_t>(n * kvd));
  for (int32_t il = static_cast<int32_t>(c.n_layer) - 1; il >= 0; --il) {
    const runtime::LayerWeights& l = weights_.layers[il];
    LayerActs& A = S.layers[il];
    if (checkpointing_) {
      std::vector<float> out(static_cast<size_t>(n * E));
      ForwardLayer(il, n, A, out.data(), cs, params, dropout);  // same masks: they depend on (seed, layer)
    }
    // Feed-forward block: x = xmid + down(silu(gate(b)) ⊙ up(b)), b = norm(xmid).
    if (c.is_moe()) {
      MoeFfnBackward(l, c, A.moe, dx.data(), n, db.data(), &scratch_, pool_);
    } else {
      ProjectBack(il, LoraTarget::kFfnDown, l.ffn_down, A.h.data(), n, dx.data(), dh.data(), false, A, params, dropout);
      SwiGluBackward(A.g.data(), A.u.data(), dh.data(), dg.data(), du.data(), n * ff);
      ProjectBack(il, LoraTarget::kFfnGate, l.ffn_gate, A.b.data(), n, dg.data(), db.data(), false, A, params, dropout);
      ProjectBack(il, LoraTarget::kFfnUp, l.ffn_up, A.b.data(), n, du.data(), db.data(), true, A, params, dropout);
    }
    RmsNormBackward(A.xmid.data(), l.ffn_norm.data(), A.rstd2.data(), db.data(), dx.data(), n, E, true);
    // Attention block: xmid = xin + o_proj(attention(rope(norm(q)), rope(norm(k)), v)), a = norm(xin).
    ProjectBack(il, LoraTarget::kAttnOutput, l.attn_output, A.o.data(), n, dx.data(), dq.data(), false, A, params,
                dropout);  // dq holds d(o) here
    AttentionBackward(shape, A.qr.data(), A.kr.data(), A.v.data(), A.o.data(), A.lse.data(), dq.data(), dqr.data(),
                      dkr.data(), dv.data(), pool_);
    QkNormRopeBackward(A.qpre.data(), l.q_norm.data(), cs, A.rq.data(), dqr.data(), dq.data(), n, hq, hd);
    QkNormRopeBackward(A.kpre.data(), l.k_norm.data(), cs, A.rk.data(), dkr.data(), dk.data(), n, hkv, hd);
    float* da = il > 0 ? db.data() : nullptr;  // the embedding is frozen: layer 0 needs no input gradient
    ProjectBack(il, LoraTarget::kAttnQ, l.attn_q, A.a.data(), n, dq.data(), da, false, A, params, dropout);
    ProjectBack(il, LoraTarget::kAttnK, l.attn_k, A.a.data(), n, dk.data(), da, true, A, params, dropout);
    ProjectBack(il, LoraTarget::kAttnV, l.attn_v, A.a.data(), n, dv.data(), da, true, A, params, dropout);
    if (da) RmsNormBackward(A.xin.data(), l.attn_norm.data(), A.rstd1.data(), da, dx.data(), n, E, true);
    if (checkpointing_) A.DropAllButInput();
  }
}

}  // namespace qwenmux::finetune
