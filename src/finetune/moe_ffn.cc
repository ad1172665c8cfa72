#include "finetune/moe_ffn.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "runtime/moe_route.h"

namespace qwenmux::finetune {

namespace {

// expert -> its (token, slot) pairs.
std::vector<std::vector<std::pair<int64_t, int64_t>>> Routed(const MoeActs& a, int64_t n, int64_t ne, int64_t k) {
  std::vector<std::vector<std::pair<int64_t, int64_t>>> routed(static_cast<size_t>(ne));
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < k; ++j) routed[static_cast<size_t>(a.sel[static_cast<size_t>(t * k + j)])].push_back({t, j});
  }
  return routed;
}

}  // namespace

void MoeFfnForward(const runtime::LayerWeights& l, const model::ModelConfig& c, const float* b, int64_t n, float* out,
                   MoeActs* a, OpScratch* s, ThreadPool* pool) {
  const int64_t E = c.n_embd, ne = c.n_expert, k = c.n_expert_used, ff = c.n_ff_exp;
  a->p.resize(static_cast<size_t>(n * ne));
  a->sel.resize(static_cast<size_t>(n * k));
  a->w.resize(static_cast<size_t>(n * k));
  a->g.resize(static_cast<size_t>(n * k * ff));
  a->u.resize(static_cast<size_t>(n * k * ff));
  a->y.resize(static_cast<size_t>(n * k * E));
  LinearForward(l.ffn_gate_inp, b, n, a->p.data(), s, pool);  // logits [n, ne]
  std::vector<int64_t> sel(static_cast<size_t>(k));
  for (int64_t t = 0; t < n; ++t) {
    runtime::RouteTopK(a->p.data() + t * ne, ne, k, sel.data(), a->w.data() + t * k);  // the engine's routing
    for (int64_t j = 0; j < k; ++j) a->sel[static_cast<size_t>(t * k + j)] = static_cast<int32_t>(sel[static_cast<size_t>(j)]);
  }
  std::fill(out, out + n * E, 0.0f);
  const auto routed = Routed(*a, n, ne, k);
  std::vector<float> in, g, u, h, y;
  for (int64_t e = 0; e < ne; ++e) {
    const auto& toks = routed[static_cast<size_t>(e)];
    if (toks.empty()) continue;
    const int64_t m = static_cast<int64_t>(toks.size());
    in.resize(static_cast<size_t>(m * E)), g.resize(static_cast<size_t>(m * ff)), u.resize(g.size()), h.resize(g.size());
    y.resize(in.size());
    for (int64_t i = 0; i < m; ++i) std::copy_n(b + toks[i].first * E, E, in.data() + i * E);
    LinearForward(l.ffn_gate_exps.Slice(e * ff, ff), in.data(), m, g.data(), s, pool);  // [m, ff]
    LinearForward(l.ffn_up_exps.Slice(e * ff, ff), in.data(), m, u.data(), s, pool);    // [m, ff]
    SwiGluForward(g.data(), u.data(), h.data(), m * ff);
    LinearForward(l.ffn_down_exps.Slice(e * E, E), h.data(), m, y.data(), s, pool);     // [m, E]
    for (int64_t i = 0; i < m; ++i) {
      const auto [t, j] = toks[i];
      const int64_t slot = t * k + j;
      std::copy_n(g.data() + i * ff, ff, a->g.data() + slot * ff);
      std::copy_n(u.data() + i * ff, ff, a->u.data() + slot * ff);
      std::copy_n(y.data() + i * E, E, a->y.data() + slot * E);
      const float w = a->w[static_cast<size_t>(slot)];
      for (int64_t d = 0; d < E; ++d) out[t * E + d] += w * y[static_cast<size_t>(i * E + d)];
    }
  }
}

void MoeFfnBackward(const runtime::LayerWeights& l, const model::ModelConfig& c, const MoeActs& a, const float* dout,
                    int64_t n, float* db, OpScratch* s, ThreadPool* pool) {
  const int64_t E = c.n_embd, ne = c.n_expert, k = c.n_expert_used, ff = c.n_ff_exp;
  std::fill(db, db + n * E, 0.0f);
  // Through the experts.
  const auto routed = Routed(a, n, ne, k);
  std::vector<float> dy, dh, g, u, dg, du, dx;
  for (int64_t e = 0; e < ne; ++e) {
    const auto& toks = routed[static_cast<size_t>(e)];
    if (toks.empty()) continue;
    const int64_t m = static_cast<int64_t>(toks.size());
    dy.resize(static_cast<size_t>(m * E)), dx.resize(dy.size());
    for (auto* v : {&dh, &g, &u, &dg, &du}) v->resize(static_cast<size_t>(m * ff));
    for (int64_t i = 0; i < m; ++i) {
      const auto [t, j] = toks[i];
      const int64_t slot = t * k + j;
      const float w = a.w[static_cast<size_t>(slot)];
      for (int64_t d = 0; d < E; ++d) dy[static_cast<size_t>(i * E + d)] = w * dout[t * E + d];
      std::copy_n(a.g.data() + slot * ff, ff, g.data() + i * ff);
      std::copy_n(a.u.data() + slot * ff, ff, u.data() + i * ff);
    }
    LinearBackwardInput(l.ffn_down_exps.Slice(e * E, E), dy.data(), m, dh.data(), false, s, pool);  // [m, ff]
    SwiGluBackward(g.data(), u.data(), dh.data(), dg.data(), du.data(), m * ff);
    LinearBackwardInput(l.ffn_gate_exps.Slice(e * ff, ff), dg.data(), m, dx.data(), false, s, pool);  // [m, E]
    LinearBackwardInput(l.ffn_up_exps.Slice(e * ff, ff), du.data(), m, dx.data(), true, s, pool);
    for (int64_t i = 0; i < m; ++i) {
      const int64_t t = toks[i].first;
      for (int64_t d = 0; d < E; ++d) db[t * E + d] += dx[static_cast<size_t>(i * E + d)];
    }
  }
  // Through the routing weights and the router's softmax.
  std::vector<float> dlogit(static_cast<size_t>(n * ne), 0.0f), dw(static_cast<size_t>(k));
  std::vector<double> dp(static_cast<size_t>(ne));
  for (int64_t t = 0; t < n; ++t) {
    const float* p = a.p.data() + t * ne;
    double sel = 0, wdw = 0;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t slot = t * k + j;
      double acc = 0;
      for (int64_t d = 0; d < E; ++d) acc += static_cast<double>(dout[t * E + d]) * a.y[static_cast<size_t>(slot * E + d)];
      dw[static_cast<size_t>(j)] = static_cast<float>(acc);
      sel += p[a.sel[static_cast<size_t>(slot)]];
      wdw += static_cast<double>(a.w[static_cast<size_t>(slot)]) * acc;
    }
    std::fill(dp.begin(), dp.end(), 0.0);
    for (int64_t j = 0; j < k; ++j) dp[static_cast<size_t>(a.sel[static_cast<size_t>(t * k + j)])] = (dw[static_cast<size_t>(j)] - wdw) / sel;
    double pdp = 0;
    for (int64_t e = 0; e < ne; ++e) pdp += p[e] * dp[static_cast<size_t>(e)];
    for (int64_t e = 0; e < ne; ++e) dlogit[static_cast<size_t>(t * ne + e)] = static_cast<float>(p[e] * (dp[static_cast<size_t>(e)] - pdp));
  }
  LinearBackwardInput(l.ffn_gate_inp, dlogit.data(), n, db, true, s, pool);
}

}  // namespace qwenmux::finetune
