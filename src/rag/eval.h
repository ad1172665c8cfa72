// Retrieval evaluation: questions with the document that answers each, ranked at document level
// (a document's rank is that of its best chunk) by each method: BM25 alone, vector alone, their
// fusion, and the fusion reranked. Reports recall@k and MRR (reciprocal rank; 0 when the
// document is not among the candidates).
//
// Cases file (JSON lines): {"question": "...", "document": "PATH-SUFFIX or doc id"}.
//
// Thread-safety: one call at a time per Store and models.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "rag/retrieval.h"

namespace qwenmux::rag {

struct EvalCase {
  std::string question;
  std::string document;  // a source path suffix ("faq/install.md") or a doc id
};

struct EvalMetrics {
  double recall_at_k = 0, mrr = 0;
  int cases = 0;
  std::vector<int> ranks;  // per case, 1-based document rank (0: not found)
};

struct EvalReport {
  size_t k = 5;
  std::map<std::string, EvalMetrics> methods;  // "bm25", "vector", "hybrid", "hybrid_rerank"
};

Result<std::vector<EvalCase>> ParseEvalCases(std::string_view jsonl, std::string_view name);

// `embedder` and `reranker` may be null (those methods are then left out).
Result<EvalReport> Evaluate(Store& store, const CollectionInfo& coll, const std::vector<EvalCase>& cases,
                            Embedder* embedder, engine::Model* reranker, size_t k,
                            const RetrievalOptions& options = {});

}  // namespace qwenmux::rag
