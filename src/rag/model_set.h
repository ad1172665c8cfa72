// The models one RAG call runs on, shared by `qwenmux ask` and the server's POST /v1/rag:
// which stages a call uses, the load options each model file needs for its stages (a file may
// serve several; it gets the largest context and sequence count any of them asks for), and the
// binding of loaded models into rag::RagModels (the embedder wrapped for the collection's
// dimension).
//
//   RagStages st{.rewrite = true, .rerank = true, .score = false};
//   paths = ResolveRagModels(config, dir, overrides, NeededRagStages(st));
//   plan = RagLoadPlan(*paths, st, 4096, threads);          // file -> LoadOptions
//   RagModelSet set;
//   BindRagModels(*paths, st, dims, [&](const std::string& file) { return load(file, plan[file]); }, &set);
//   Answer(store, collection, question, set.models, ...);
//
// Thread-safety: functions are pure; a RagModelSet belongs to one call.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/engine.h"
#include "rag/backend_model.h"
#include "rag/embedder.h"
#include "rag/rag.h"

namespace qwenmux::rag {

// $QWENMUX_HOME/rag, else ~/.qwenmux/rag: the document store of `ingest`, `ask` and `serve`.
std::string DefaultRagStoreDir();

// The optional stages a call runs (embedding and response generation always run).
struct RagStages {
  bool rewrite = true;  // query_understanding
  bool rerank = true;   // retrieval_ranking
  bool score = true;    // quality_scoring
};

// The stages whose model must resolve: embedding, response_generation and the enabled ones.
std::vector<std::string> NeededRagStages(const RagStages& stages);

// The distinct files of the used stages of `paths` (stage -> file) with their load options:
// generator, query and scorer models `gen_ctx` tokens, the embedder 512, the reranker 1024 with
// 4 sequences; merged by maximum where one file serves several stages.
// Backend models ("NAME/MODEL" that `backend` owns) are not files: they are left out.
std::map<std::string, engine::LoadOptions> RagLoadPlan(const std::map<std::string, std::string>& paths,
                                                       const RagStages& stages, int32_t gen_ctx, size_t threads,
                                                       const BackendAccess& backend = {});

struct RagModelSet {
  RagModels models;                 // models.embedder points at `embedder`
  std::optional<Embedder> embedder;
  std::map<std::string, std::string> files;  // stage -> file of the used stages
  RagModelSet() = default;
  RagModelSet(const RagModelSet&) = delete;
  RagModelSet& operator=(const RagModelSet&) = delete;
};

// Gives the loaded model of a file (loading it, leasing it, ...).
using RagModelGetter = std::function<Result<engine::Model*>(const std::string& file)>;

// Fills `out` from `paths` (stage -> file, as ResolveRagModels gives): every used stage's model
// from `get`, the embedder for `dims` (0: the model's full dimension; a collection's dim).
// Errors: a used stage with no file, what `get` or Embedder::Create return.
// A stage whose "file" is a backend model that `backend` owns ("NAME/MODEL", issue 18) runs on
// the backend: query understanding and response generation through its chat endpoint, embedding
// through its embeddings endpoint. Reranking and quality scoring read the model's yes/no logits,
// which a backend does not give: naming a backend model for them is an error naming the stage.
Status BindRagModels(const std::map<std::string, std::string>& paths, const RagStages& stages, int32_t dims,
                     const RagModelGetter& get, RagModelSet* out, const BackendAccess& backend = {});

}  // namespace qwenmux::rag
