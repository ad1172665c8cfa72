// Which GGUF file serves each stage of the RAG pipeline. The stages and their default models
// (the seed's assignment; a `rag:` pipeline in qwenmux.yaml overrides any of them, and command
// line flags override both):
//
//   query_understanding  qwen3-fast               rewrite/expand the question
//   embedding            qwen3-embedding:0.6b     query and document vectors
//   retrieval_ranking    qwen3-reranker:0.6b      rerank the fused candidates
//   context_synthesis    qwen3-balanced           whose context budget the passages are packed into
//   response_generation  qwen3-balanced           the cited answer
//   quality_scoring      qwen3-fast               groundedness check -> score
//
// A stage's model is a configured model name or alias (its `file:`, or its catalog name looked up
// in the model store), else a catalog name or tier looked up in the model store.
//
// Thread-safety: pure functions (reads the model store's manifest).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "base/status.h"
#include "orchestrator/config/config.h"

namespace qwenmux::rag {

inline constexpr const char* kRagStages[] = {"query_understanding", "embedding",           "retrieval_ranking",
                                             "context_synthesis",   "response_generation", "quality_scoring"};

// The seed's assignment: stage -> model reference.
std::map<std::string, std::string> DefaultRagAssignments();

// stage -> model reference: the defaults with the config's `rag:` pipeline applied (config may be
// null). Error: a stage the pipeline names that does not exist.
Result<std::map<std::string, std::string>> RagStageRefs(const orchestrator::Config* config);

// One model reference -> GGUF path: a configured model name or alias (its `file:`, or its catalog
// name in the model store), else a catalog name or tier in the model store. `stage` names the
// stage in errors. Never treats `ref` as a path. A model of one of the config's backends
// ("NAME/MODEL", issue 18) comes back as it is (BindRagModels runs the stage on the backend).
Result<std::string> ResolveRagModelRef(const orchestrator::Config* config, const std::string& models_dir,
                                       const std::string& ref, const std::string& stage);

// stage -> GGUF path. `config` may be null; `overrides` (stage -> path, from flags) win; a stage
// whose model cannot be resolved is an error only if it is in `needed`.
Result<std::map<std::string, std::string>> ResolveRagModels(const orchestrator::Config* config,
                                                            const std::string& models_dir,
                                                            const std::map<std::string, std::string>& overrides,
                                                            const std::vector<std::string>& needed);

}  // namespace qwenmux::rag
