#include "rag/eval.h"

#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

namespace qwenmux::rag {

Result<std::vector<EvalCase>> ParseEvalCases(std::string_view jsonl, std::string_view name) {
  std::vector<EvalCase> out;
  size_t line_no = 0, start = 0;
  while (start < jsonl.size()) {
    size_t end = jsonl.find('\n', start);
    if (end == std::string_view::npos) end = jsonl.size();
    const std::string_view line = jsonl.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return Error(StatusCode::kInvalidArgument, "{}:{}: not a JSON object", name, line_no);
    auto q = j.find("question");
    auto d = j.find("document");
    if (q == j.end() || !q->is_string() || d == j.end() || !d->is_string() || q->get<std::string>().empty())
      return Error(StatusCode::kInvalidArgument, "{}:{}: needs string fields \"question\" and \"document\"", name,
                   line_no);
    out.push_back({q->get<std::string>(), d->get<std::string>()});
  }
  if (out.empty()) return Error(StatusCode::kInvalidArgument, "{}: no cases", name);
  return out;
}

namespace {

bool Matches(const EvalCase& c, const std::string& doc_id, const std::string& source) {
  if (c.document == doc_id) return true;
  if (source.size() < c.document.size()) return false;
  if (source.compare(source.size() - c.document.size(), c.document.size(), c.document) != 0) return false;
  // a whole path component: "a.md" must not match "data.md"
  return source.size() == c.document.size() || source[source.size() - c.document.size() - 1] == '/';
}

// 1-based rank of the case's document in a chunk ranking, counted over distinct documents.
Result<int> DocRank(Store& store, const EvalCase& c, const std::vector<int64_t>& chunks,
                    std::unordered_map<int64_t, ChunkRecord>* cache) {
  std::vector<int64_t> need;
  for (int64_t id : chunks)
    if (!cache->count(id)) need.push_back(id);
  QM_ASSIGN_OR_RETURN(auto records, store.GetChunks(need));
  for (ChunkRecord& r : records) cache->emplace(r.id, std::move(r));
  std::unordered_set<std::string> seen;
  for (int64_t id : chunks) {
    auto it = cache->find(id);
    if (it == cache->end()) continue;
    if (!seen.insert(it->second.doc_id).second) continue;
    if (Matches(c, it->second.doc_id, it->second.source)) return static_cast<int>(seen.size());
  }
  return 0;
}

}  // namespace

Result<EvalReport> Evaluate(Store& store, const CollectionInfo& coll, const std::vector<EvalCase>& cases,
                            Embedder* embedder, engine::Model* reranker, size_t k, const RetrievalOptions& options) {
  EvalReport report;
  report.k = k;
  std::unordered_map<int64_t, ChunkRecord> cache;
  auto add = [&](const std::string& method, int rank) {
    EvalMetrics& m = report.methods[method];
    m.ranks.push_back(rank);
  };
  for (const EvalCase& c : cases) {
    QM_ASSIGN_OR_RETURN(auto bm, store.SearchBm25(coll, c.question, options.k_bm25));
    std::vector<int64_t> bm_ids, vec_ids;
    for (const auto& [id, s] : bm) bm_ids.push_back(id);
    QM_ASSIGN_OR_RETURN(int r, DocRank(store, c, bm_ids, &cache));
    add("bm25", r);
    std::vector<std::vector<int64_t>> lists{bm_ids};
    if (embedder) {
      QM_ASSIGN_OR_RETURN(std::vector<float> qv, embedder->EmbedQuery(c.question, options.task));
      QM_ASSIGN_OR_RETURN(auto vec, store.SearchVector(coll, qv, options.k_vector));
      for (const auto& [id, s] : vec) vec_ids.push_back(id);
      QM_ASSIGN_OR_RETURN(r, DocRank(store, c, vec_ids, &cache));
      add("vector", r);
      lists.push_back(vec_ids);
      std::vector<int64_t> fused;
      for (const auto& [id, s] : FuseRrf(lists, options.rrf_k)) fused.push_back(id);
      QM_ASSIGN_OR_RETURN(r, DocRank(store, c, fused, &cache));
      add("hybrid", r);
    }
    if (reranker) {
      RetrievalOptions o = options;
      o.top_n = std::max(options.rerank_top, k);
      QM_ASSIGN_OR_RETURN(auto hits, Retrieve(store, coll, {c.question}, embedder, reranker, o));
      std::vector<int64_t> ids;
      for (const Hit& h : hits) ids.push_back(h.chunk);
      QM_ASSIGN_OR_RETURN(r, DocRank(store, c, ids, &cache));
      add("hybrid_rerank", r);
    }
  }
  for (auto& [name, m] : report.methods) {
    m.cases = static_cast<int>(m.ranks.size());
    double hit = 0, rr = 0;
    for (int r : m.ranks) {
      if (r > 0 && static_cast<size_t>(r) <= k) hit += 1;
      if (r > 0) rr += 1.0 / r;
    }
    m.recall_at_k = m.cases ? hit / m.cases : 0;
    m.mrr = m.cases ? rr / m.cases : 0;
  }
  return report;
}

}  // namespace qwenmux::rag
