#include "engine/refcheck.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace qwenmux::engine {

namespace {

struct SeqOut {
  std::vector<float> logits;  // [n, V]
  std::vector<int32_t> greedy;
};

double LogSumExp(const float* x, int64_t n) {
  const float mx = *std::max_element(x, x + n);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(x[i] - mx));
  return mx + std::log(s);
}

// Runs sequences (each in its own KV slot) sharing batches: prompt tokens interleaved, chunked
// by n_batch; then greedy decoding of `n_greedy` tokens, all sequences one step at a time.
Status RunSequences(Model& model, const std::vector<std::vector<int32_t>>& seqs, int n_greedy,
                    const runtime::LoraAdapter* lora, float lora_scale, std::vector<SeqOut>* out) {
  const int64_t V = model.config().n_vocab;
  const int32_t n_batch = model.options().n_batch;
  out->assign(seqs.size(), {});
  std::vector<runtime::BatchEntry> all;
  std::vector<std::pair<size_t, size_t>> where;  // entry -> (seq, position)
  size_t longest = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    if (seqs[s].empty()) return Error(StatusCode::kInvalidArgument, "refcheck: empty sequence");
    if (seqs[s].size() + n_greedy > static_cast<size_t>(model.n_ctx())) {
      return Error(StatusCode::kOutOfRange, "refcheck: sequence of {} tokens does not fit the context", seqs[s].size());
    }
    longest = std::max(longest, seqs[s].size());
    model.ResetSequence(static_cast<int32_t>(s));
    (*out)[s].logits.resize(seqs[s].size() * V);
  }
  for (size_t p = 0; p < longest; ++p) {
    for (size_t s = 0; s < seqs.size(); ++s) {
      if (p < seqs[s].size()) {
        all.push_back({seqs[s][p], static_cast<int32_t>(p), static_cast<int32_t>(s), true, lora, lora_scale});
        where.push_back({s, p});
      }
    }
  }
  std::vector<float> logits;
  for (size_t b = 0; b < all.size(); b += n_batch) {
    const size_t e = std::min(all.size(), b + static_cast<size_t>(n_batch));
    logits.resize((e - b) * V);
    QM_RETURN_IF_ERROR(model.Forward(std::span(all).subspan(b, e - b), logits.data(), nullptr));
    for (size_t i = b; i < e; ++i) {
      auto [s, p] = where[i];
      std::copy_n(logits.data() + (i - b) * V, V, (*out)[s].logits.data() + p * V);
    }
  }
  std::vector<int32_t> next(seqs.size());
  std::vector<int32_t> pos(seqs.size());
  for (size_t s = 0; s < seqs.size(); ++s) {
    next[s] = Argmax(std::span<const float>((*out)[s].logits.data() + (seqs[s].size() - 1) * V, V));
    pos[s] = static_cast<int32_t>(seqs[s].size());
  }
  logits.resize(seqs.size() * V);
  for (int g = 0; g < n_greedy; ++g) {
    std::vector<runtime::BatchEntry> step;
    for (size_t s = 0; s < seqs.size(); ++s) {
      (*out)[s].greedy.push_back(next[s]);
      step.push_back({next[s], pos[s]++, static_cast<int32_t>(s), true, lora, lora_scale});
    }
    if (g + 1 == n_greedy) break;
    QM_RETURN_IF_ERROR(model.Forward(step, logits.data(), nullptr));
    for (size_t s = 0; s < seqs.size(); ++s) next[s] = Argmax(std::span<const float>(logits.data() + s * V, V));
  }
  for (size_t s = 0; s < seqs.size(); ++s) model.ResetSequence(static_cast<int32_t>(s));
  return Status::Ok();
}

template <typename T>
Result<std::vector<T>> Vec(const nlohmann::json& j, const char* field) {
  if (!j.contains(field) || !j[field].is_array()) {
    return Error(StatusCode::kInvalidArgument, "refcheck: reference field \"{}\" missing or not an array", field);
  }
  try {
    return j[field].get<std::vector<T>>();
  } catch (const std::exception& e) {
    return Error(StatusCode::kInvalidArgument, "refcheck: reference field \"{}\": {}", field, e.what());
  }
}

}  // namespace

nlohmann::json RefCheckResult::ToJson() const {
  nlohmann::json j = {{"top1", top1},         {"probe_rms", probe_rms},       {"probe_max", probe_max},
                      {"lse_max", lse_max},   {"greedy_match", greedy_match}, {"greedy_total", greedy_total},
                      {"positions", positions}};
  if (embeddings > 0) j["embedding_min_cos"] = embedding_min_cos;
  if (reranks > 0) j["rerank_max_diff"] = rerank_max_diff;
  return j;
}

Result<RefCheckResult> RunRefCheck(Model& model, const nlohmann::json& ref, const RefCheckOptions& options) {
  if (!ref.is_object() || !ref.contains("sequences") || !ref["sequences"].is_array()) {
    return Error(StatusCode::kInvalidArgument, "refcheck: reference has no \"sequences\" array");
  }
  const int64_t V = model.config().n_vocab;
  QM_ASSIGN_OR_RETURN(std::vector<int32_t> probe_ids, Vec<int32_t>(ref, "probe_ids"));
  for (int32_t p : probe_ids) {
    if (p < 0 || p >= V) return Error(StatusCode::kInvalidArgument, "refcheck: probe id {} out of range", p);
  }
  const auto& seqs = ref["sequences"];
  const size_t group = options.pair ? 2 : 1;
  if (options.pair && model.n_seq() < 2) {
    return Error(StatusCode::kInvalidArgument, "refcheck: pair mode needs a model loaded with n_seq >= 2");
  }
  const runtime::LoraAdapter* lora = model.adapter(options.adapter);
  if (options.adapter != -1 && lora == nullptr) {
    return Error(StatusCode::kInvalidArgument, "refcheck: adapter {} is not loaded", options.adapter);
  }
  RefCheckResult r;
  r.dump = {{"probe_ids", probe_ids}, {"sequences", nlohmann::json::array()}};
  double probe_sq = 0;
  int64_t probe_n = 0, top1_hits = 0;
  for (size_t s0 = 0; s0 < seqs.size(); s0 += group) {
    std::vector<std::vector<int32_t>> ids;
    for (size_t s = s0; s < std::min(seqs.size(), s0 + group); ++s) {
      QM_ASSIGN_OR_RETURN(std::vector<int32_t> v, Vec<int32_t>(seqs[s], "ids"));
      ids.push_back(std::move(v));
    }
    std::vector<SeqOut> outs;
    QM_RETURN_IF_ERROR(RunSequences(model, ids, 16, lora, options.adapter_scale, &outs));
    for (size_t k = 0; k < ids.size(); ++k) {
      const auto& rs = seqs[s0 + k];
      QM_ASSIGN_OR_RETURN(auto lse_ref, Vec<double>(rs, "logsumexp"));
      QM_ASSIGN_OR_RETURN(auto top_ref, Vec<std::vector<int32_t>>(rs, "top_ids"));
      QM_ASSIGN_OR_RETURN(auto probe_ref, Vec<std::vector<double>>(rs, "probe_logits"));
      QM_ASSIGN_OR_RETURN(auto greedy_ref, Vec<int32_t>(rs, "greedy_16"));
      const size_t n = ids[k].size();
      if (lse_ref.size() != n || top_ref.size() != n || probe_ref.size() != n) {
        return Error(StatusCode::kInvalidArgument, "refcheck: sequence {}: per-position arrays do not match ids", s0 + k);
      }
      nlohmann::json d = {{"ids", ids[k]}};
      for (size_t p = 0; p < n; ++p) {
        const float* row = outs[k].logits.data() + p * V;
        const double lse = LogSumExp(row, V);
        r.lse_max = std::max(r.lse_max, std::abs(lse - lse_ref[p]));
        std::vector<int32_t> order(V);
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + 8, order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
        if (!top_ref[p].empty() && order[0] == top_ref[p][0]) ++top1_hits;
        if (probe_ref[p].size() != probe_ids.size()) {
          return Error(StatusCode::kInvalidArgument, "refcheck: sequence {}: probe_logits width mismatch", s0 + k);
        }
        std::vector<float> probes;
        for (size_t i = 0; i < probe_ids.size(); ++i) {
          const double diff = row[probe_ids[i]] - probe_ref[p][i];
          probe_sq += diff * diff;
          r.probe_max = std::max(r.probe_max, std::abs(diff));
          ++probe_n;
          probes.push_back(row[probe_ids[i]]);
        }
        std::vector<int32_t> top8(order.begin(), order.begin() + 8);
        std::vector<float> top8l;
        for (int32_t t : top8) top8l.push_back(row[t]);
        d["logsumexp"].push_back(lse);
        d["top_ids"].push_back(top8);
        d["top_logits"].push_back(top8l);
        d["probe_logits"].push_back(probes);
        ++r.positions;
      }
      int matched = 0;
      while (matched < static_cast<int>(greedy_ref.size()) && matched < static_cast<int>(outs[k].greedy.size()) &&
             outs[k].greedy[matched] == greedy_ref[matched]) {
        ++matched;
      }
      r.greedy_match += matched;
      r.greedy_total += static_cast<int>(greedy_ref.size());
      d["greedy_16"] = outs[k].greedy;
      if (rs.contains("name")) d["name"] = rs["name"];
      r.dump["sequences"].push_back(std::move(d));
    }
  }
  r.top1 = r.positions ? static_cast<double>(top1_hits) / r.positions : 0;
  r.probe_rms = probe_n ? std::sqrt(probe_sq / static_cast<double>(probe_n)) : 0;

  if (ref.contains("embeddings") && ref["embeddings"].is_array()) {
    for (const auto& e : ref["embeddings"]) {
      QM_ASSIGN_OR_RETURN(auto ids, Vec<int32_t>(e, "ids"));
      QM_ASSIGN_OR_RETURN(auto want, Vec<double>(e, "embedding"));
      QM_ASSIGN_OR_RETURN(auto got, model.Embed({ids}));
      if (got[0].size() != want.size()) {
        return Error(StatusCode::kInvalidArgument, "refcheck: embedding width {} vs reference {}", got[0].size(), want.size());
      }
      double dot = 0, na = 0, nb = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        dot += got[0][i] * want[i];
        na += static_cast<double>(got[0][i]) * got[0][i];
        nb += want[i] * want[i];
      }
      r.embedding_min_cos = std::min(r.embedding_min_cos, dot / std::sqrt(na * nb));
      ++r.embeddings;
      r.dump["embeddings"].push_back({{"ids", ids}, {"embedding", got[0]}});
    }
  }
  if (ref.contains("rerank") && ref["rerank"].is_array()) {
    for (const auto& e : ref["rerank"]) {
      QM_ASSIGN_OR_RETURN(auto ids, Vec<int32_t>(e, "ids"));
      if (!e.contains("score") || !e["score"].is_number()) {
        return Error(StatusCode::kInvalidArgument, "refcheck: rerank entry without a numeric \"score\"");
      }
      QM_ASSIGN_OR_RETURN(auto got, model.RerankScores({ids}));
      r.rerank_max_diff = std::max(r.rerank_max_diff, std::abs(got[0] - e["score"].get<double>()));
      ++r.reranks;
      r.dump["rerank"].push_back({{"ids", ids}, {"score", got[0]}});
    }
  }
  return r;
}

}  // namespace qwenmux::engine
