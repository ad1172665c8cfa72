// The RAG pipeline: question -> answer with cited sources and a quality score. Stages, each on its
// own model (rag/models.h says which by default):
//
//   1. query understanding   the query model rewrites the question into up to `max_rewrites`
//                            search queries (one per line); the question itself is always kept
//   2. retrieval             BM25 + vector search for every query, reciprocal rank fusion
//   3. rerank                the reranker orders the best fused candidates
//   4. context synthesis     passages, numbered [1]..[n] with their title and heading path, packed
//                            into the generator's context budget (context minus prompt and answer)
//   5. response generation   the generator answers from the passages, citing them as [n]; streamed
//   6. quality scoring       the scoring model judges groundedness: P("yes") against P("no") for
//                            "is every claim of the answer supported by the sources?"
//
// Answer() is the library entry point for `qwenmux ask` and the HTTP endpoint (POST /v1/rag):
// events stream through the callback as each stage ends and as answer text is generated.
//
// Thread-safety: one call at a time per Store and per model (models may be shared between
// stages; calls on them are sequential within Answer).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "engine/engine.h"
#include "rag/backend_model.h"
#include "rag/embedder.h"
#include "rag/retrieval.h"
#include "rag/store.h"

namespace qwenmux::rag {

struct RagModels {
  engine::Model* query = nullptr;      // query understanding; null: no rewriting
  Embedder* embedder = nullptr;        // null: BM25 only
  engine::Model* reranker = nullptr;   // null: fused order
  engine::Model* generator = nullptr;  // required
  engine::Model* scorer = nullptr;     // null: no quality score
  // Backend models ("NAME/MODEL", issue 18) for query understanding and response generation,
  // used instead of `query` / `generator` where not empty, reached through `backend`. The answer
  // comes whole (one text event, not token by token); token counts (passage packing,
  // answer_tokens unless the backend reports usage) are approximate; the context is
  // AnswerOptions::generator_ctx (4096 when 0). Reranking and scoring need logits: local only.
  std::string query_backend, generator_backend;
  BackendAccess backend;
};

struct AnswerOptions {
  RetrievalOptions retrieval;
  int max_rewrites = 2;                // extra queries from query understanding (0: none)
  int32_t max_answer_tokens = 512;
  int32_t context_tokens = 0;          // passage budget; 0: what the generator's context leaves
  // The generator's context to use (`ask -c`); 0: as loaded. A generator file shared with a stage
  // that needs a larger context (the embedder) is loaded larger; this keeps the asked context.
  int32_t generator_ctx = 0;
  engine::SamplerOptions sampler;      // for the answer (rewrites are greedy)
  bool thinking = false;               // let the generator think before answering
  // A LoRA adapter (GGUF file or PEFT directory) for response generation only: loaded into the
  // generator for this answer and unloaded after it ("" none); the server sets it when the
  // response_generation stage names "<model>:<adapter>".
  std::string generator_adapter;
  float generator_adapter_scale = 1.0f;
};

struct Source {
  int n = 0;  // the [n] the answer cites
  int64_t chunk = 0;
  std::string chunk_id, doc_id, source, title, heading, text;
  float rerank = -1;
  double rrf = 0;
};

struct StageTiming {
  std::string stage;  // "query_understanding", "retrieval", "rerank", "context_synthesis",
                      // "response_generation", "quality_scoring"
  double ms = 0;
};

struct AnswerResult {
  std::string question;
  std::vector<std::string> queries;  // question first, then the rewrites
  std::vector<Source> sources;       // passages given to the generator, numbered from 1
  std::string answer;                // without any <think> block
  std::vector<int> cited;            // distinct [n] in the answer that name a source
  std::vector<int> invalid_citations;  // [n] in the answer that name no source
  double score = -1;                 // groundedness P(yes) in [0, 1]; -1 without a scorer
  std::vector<StageTiming> timings;
  double total_ms = 0;
  int32_t context_tokens = 0, answer_tokens = 0;
  std::string finish_reason;

  nlohmann::json ToJson() const;
};

struct AnswerEvent {
  enum class Kind { kStage, kText };
  Kind kind = Kind::kStage;
  std::string stage;     // kStage: the stage that just ended
  double ms = 0;         // kStage: its time
  std::string_view text; // kText: a piece of the answer
};
// Return false to cancel (the pipeline then stops with a kOutOfRange "cancelled" error).
using AnswerCallback = std::function<bool(const AnswerEvent&)>;

Result<AnswerResult> Answer(Store& store, const std::string& collection, std::string_view question,
                            const RagModels& models, const AnswerOptions& options,
                            const AnswerCallback& on_event = nullptr);

// Pieces exposed for tests.
std::vector<std::string> ParseRewrites(std::string_view text, std::string_view question, int max);
std::vector<int> CitationsIn(std::string_view answer);  // [n], [n, m], [n][m], in order, distinct
// The answer's citations split by whether they name one of `n_sources` sources (numbered from 1):
// AnswerResult's cited and invalid_citations.
struct CitationSplit {
  std::vector<int> cited, invalid;
};
CitationSplit SplitCitations(std::string_view answer, size_t n_sources);

}  // namespace qwenmux::rag
