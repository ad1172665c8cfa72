#include "rag/retrieval.h"

#include <algorithm>
#include <chrono>
#include <unordered_map>

#include "base/stopwatch.h"
#include "rag/chunker.h"

namespace qwenmux::rag {

namespace {

using qwenmux::Stopwatch;

}  // namespace

std::vector<std::pair<int64_t, double>> FuseRrf(const std::vector<std::vector<int64_t>>& lists, int rrf_k) {
  std::unordered_map<int64_t, size_t> at;
  std::vector<std::pair<int64_t, double>> out;
  for (const auto& list : lists) {
    for (size_t r = 0; r < list.size(); ++r) {
      auto [it, fresh] = at.try_emplace(list[r], out.size());
      if (fresh) out.emplace_back(list[r], 0.0);
      out[it->second].second += 1.0 / (rrf_k + static_cast<double>(r + 1));
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return out;
}

Result<std::vector<float>> RerankTexts(engine::Model& reranker, std::string_view task, std::string_view query,
                                       const std::vector<std::string>& documents) {
  const size_t room = static_cast<size_t>(std::max(16, reranker.n_ctx() - 1));
  std::vector<std::vector<int32_t>> prompts;
  for (const std::string& d : documents) {
    std::string_view doc = d;
    std::vector<int32_t> ids = reranker.RerankPrompt(task, query, doc);
    // Too long for the context: cut the document (by bytes, in proportion) until it fits.
    for (int tries = 0; ids.size() > room && tries < 8 && !doc.empty(); ++tries) {
      const double keep = static_cast<double>(room) / static_cast<double>(ids.size()) * 0.95;
      size_t n = static_cast<size_t>(static_cast<double>(doc.size()) * keep);
      while (n > 0 && (static_cast<unsigned char>(doc[n]) & 0xC0) == 0x80) --n;
      doc = doc.substr(0, n);
      ids = reranker.RerankPrompt(task, query, doc);
    }
    if (ids.size() > room)
      return Error(StatusCode::kOutOfRange, "rerank: the query alone ({} tokens) does not fit the reranker's context",
                   ids.size());
    prompts.push_back(std::move(ids));
  }
  if (prompts.empty()) return std::vector<float>();
  return reranker.RerankScores(prompts);
}

Result<std::vector<Hit>> Retrieve(Store& store, const CollectionInfo& coll, const std::vector<std::string>& queries,
                                  Embedder* embedder, engine::Model* reranker, const RetrievalOptions& options,
                                  RetrievalTimings* timings) {
  RetrievalTimings local;
  RetrievalTimings& t = timings ? *timings : local;
  t = {};
  if (queries.empty()) return Error(StatusCode::kInvalidArgument, "retrieve: no query");
  if (embedder && (embedder->id() != coll.embed_model || embedder->dim() != coll.dim)) {
    return Error(StatusCode::kInvalidArgument,
                 "retrieve: collection \"{}\" was built with embedding model {} (dimension {}); the query model is "
                 "{} (dimension {})",
                 coll.name, coll.embed_model, coll.dim, embedder->id(), embedder->dim());
  }
  std::vector<std::vector<int64_t>> lists;
  std::unordered_map<int64_t, std::pair<int, int>> ranks;  // chunk -> (bm25, vector) best ranks
  auto note = [&](int64_t id, int rank, bool vector) {
    auto& r = ranks[id];
    int& slot = vector ? r.second : r.first;
    if (slot == 0 || rank < slot) slot = rank;
  };
  for (const std::string& q : queries) {
    Stopwatch sw;
    QM_ASSIGN_OR_RETURN(auto bm, store.SearchBm25(coll, q, options.k_bm25));
    t.bm25_ms += sw.Ms();
    std::vector<int64_t> ids;
    for (size_t i = 0; i < bm.size(); ++i) ids.push_back(bm[i].first), note(bm[i].first, static_cast<int>(i + 1), false);
    lists.push_back(std::move(ids));
    if (embedder && options.k_vector > 0) {
      Stopwatch se;
      QM_ASSIGN_OR_RETURN(std::vector<float> qv, embedder->EmbedQuery(q, options.task));
      t.embed_ms += se.Ms();
      Stopwatch sv;
      QM_ASSIGN_OR_RETURN(auto vec, store.SearchVector(coll, qv, options.k_vector));
      t.vector_ms += sv.Ms();
      std::vector<int64_t> vids;
      for (size_t i = 0; i < vec.size(); ++i) vids.push_back(vec[i].first), note(vec[i].first, static_cast<int>(i + 1), true);
      lists.push_back(std::move(vids));
    }
  }
  const auto fused = FuseRrf(lists, options.rrf_k);
  const size_t keep = std::max(options.top_n, reranker ? options.rerank_top : 0);
  std::vector<int64_t> ids;
  for (size_t i = 0; i < fused.size() && i < keep; ++i) ids.push_back(fused[i].first);
  QM_ASSIGN_OR_RETURN(std::vector<ChunkRecord> records, store.GetChunks(ids));
  std::unordered_map<int64_t, ChunkRecord*> by_id;
  for (ChunkRecord& r : records) by_id[r.id] = &r;
  std::vector<Hit> hits;
  for (size_t i = 0; i < fused.size() && i < keep; ++i) {
    auto it = by_id.find(fused[i].first);
    if (it == by_id.end()) continue;  // deleted since the index was written
    Hit h;
    h.chunk = fused[i].first;
    h.rrf = fused[i].second;
    h.bm25_rank = ranks[h.chunk].first;
    h.vector_rank = ranks[h.chunk].second;
    h.record = std::move(*it->second);
    hits.push_back(std::move(h));
  }
  if (reranker && options.rerank_top > 0 && !hits.empty()) {
    Stopwatch sr;
    const size_t n = std::min(options.rerank_top, hits.size());
    std::vector<std::string> docs;
    for (size_t i = 0; i < n; ++i) docs.push_back(ChunkEmbedText(hits[i].record.heading, hits[i].record.text));
    QM_ASSIGN_OR_RETURN(std::vector<float> scores, RerankTexts(*reranker, options.task, queries.front(), docs));
    for (size_t i = 0; i < n; ++i) hits[i].rerank = scores[i];
    std::stable_sort(hits.begin(), hits.begin() + static_cast<long>(n),
                     [](const Hit& a, const Hit& b) { return a.rerank > b.rerank; });
    t.rerank_ms = sr.Ms();
  }
  if (hits.size() > options.top_n) hits.resize(options.top_n);
  return hits;
}

}  // namespace qwenmux::rag
