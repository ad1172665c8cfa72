// Hybrid retrieval over one collection: BM25 (SQLite FTS5) and vector search (HNSW over the
// Qwen3-Embedding vectors), merged by reciprocal rank fusion (score = sum over lists of
// 1 / (rrf_k + rank)), then the Qwen3-Reranker scores the best candidates
// (engine::Model::RerankPrompt / RerankScores) and reorders them.
//
// Several queries (the original and its rewrites from query understanding) are all fused into
// one ranking. Without an embedder the vector side is skipped; without a reranker, the fused
// order stands.
//
// Thread-safety: one call at a time per Store, Embedder and reranker Model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/engine.h"
#include "rag/embedder.h"
#include "rag/store.h"

namespace qwenmux::rag {

struct RetrievalOptions {
  size_t k_bm25 = 50;       // candidates from full-text search, per query
  size_t k_vector = 50;     // candidates from vector search, per query
  int rrf_k = 60;           // reciprocal rank fusion constant
  size_t rerank_top = 20;   // fused candidates the reranker scores (0: no rerank)
  size_t top_n = 8;         // hits returned
  std::string task = std::string(kDefaultRetrievalTask);  // embedding and reranker instruction
};

struct Hit {
  int64_t chunk = 0;      // chunk rowid
  int bm25_rank = 0;      // best 1-based rank in any BM25 list (0: absent)
  int vector_rank = 0;    // best 1-based rank in any vector list (0: absent)
  double rrf = 0;         // fused score
  float rerank = -1;      // reranker P(yes), -1 if not reranked
  ChunkRecord record;     // filled for returned hits
};

struct RetrievalTimings {
  double embed_ms = 0, bm25_ms = 0, vector_ms = 0, rerank_ms = 0;
};

// Reciprocal rank fusion of ranked lists of ids (best first); ties keep first-seen order.
std::vector<std::pair<int64_t, double>> FuseRrf(const std::vector<std::vector<int64_t>>& lists, int rrf_k);

// `queries[0]` is the user's question (the one the reranker judges against); the rest are
// rewrites. `embedder` and `reranker` may be null.
Result<std::vector<Hit>> Retrieve(Store& store, const CollectionInfo& coll, const std::vector<std::string>& queries,
                                  Embedder* embedder, engine::Model* reranker, const RetrievalOptions& options,
                                  RetrievalTimings* timings = nullptr);

// Reranker scores P(yes) for (query, document text) pairs, batched; documents are cut to fit the
// reranker's context.
Result<std::vector<float>> RerankTexts(engine::Model& reranker, std::string_view task, std::string_view query,
                                       const std::vector<std::string>& documents);

}  // namespace qwenmux::rag
