#include "rag/models.h"

#include <algorithm>

#include "orchestrator/catalog/catalog.h"
#include "orchestrator/store/model_store.h"

namespace qwenmux::rag {

std::map<std::string, std::string> DefaultRagAssignments() {
  return {{"query_understanding", "qwen3-fast"},       {"embedding", "qwen3-embedding:0.6b"},
          {"retrieval_ranking", "qwen3-reranker:0.6b"}, {"context_synthesis", "qwen3-balanced"},
          {"response_generation", "qwen3-balanced"},    {"quality_scoring", "qwen3-fast"}};
}

namespace {

Result<std::string> FromStore(const std::string& models_dir, const std::string& catalog_name, const std::string& stage) {
  QM_ASSIGN_OR_RETURN(const orchestrator::CatalogEntry* e, orchestrator::FindInCatalog(catalog_name));
  QM_ASSIGN_OR_RETURN(orchestrator::ModelStore store, orchestrator::ModelStore::Open(models_dir));
  auto m = store.Find(e->name);
  if (!m.ok())
    return Error(StatusCode::kNotFound,
                 "rag: stage {} uses {} ({}), which is not in the model store {}: run `qwenmux pull {}` or pass a "
                 "GGUF file with the stage's flag",
                 stage, catalog_name, e->name, models_dir, e->name);
  return store.BlobPath(m->sha256);
}

}  // namespace

Result<std::map<std::string, std::string>> RagStageRefs(const orchestrator::Config* config) {
  std::map<std::string, std::string> refs = DefaultRagAssignments();
  if (!config) return refs;
  for (const auto& p : config->pipelines) {
    if (p.name != "rag") continue;
    for (const auto& [stage, model] : p.stages) {
      if (!refs.count(stage))
        return Error(StatusCode::kInvalidArgument, "{}: pipelines.rag.{}: unknown stage (known: query_understanding, "
                     "embedding, retrieval_ranking, context_synthesis, response_generation, quality_scoring)",
                     config->source, stage);
      refs[stage] = model;
    }
  }
  return refs;
}

Result<std::string> ResolveRagModelRef(const orchestrator::Config* config, const std::string& models_dir,
                                       const std::string& ref, const std::string& stage) {
  // A backend's model (issue 18) is no file: its name comes back as it is, and BindRagModels runs
  // the stage on the backend.
  if (config && orchestrator::BackendOfModel(config->backends, ref)) return ref;
  const orchestrator::ModelConfig* mc = config ? config->FindModel(ref) : nullptr;
  if (mc && !mc->file.empty()) return mc->file;
  return FromStore(models_dir, mc ? mc->catalog : ref, stage);
}

Result<std::map<std::string, std::string>> ResolveRagModels(const orchestrator::Config* config,
                                                            const std::string& models_dir,
                                                            const std::map<std::string, std::string>& overrides,
                                                            const std::vector<std::string>& needed) {
  QM_ASSIGN_OR_RETURN(auto refs, RagStageRefs(config));
  std::map<std::string, std::string> out;
  for (const auto& [stage, ref] : refs) {
    auto o = overrides.find(stage);
    if (o != overrides.end() && !o->second.empty()) {
      out[stage] = o->second;
      continue;
    }
    Result<std::string> path = ResolveRagModelRef(config, models_dir, ref, stage);
    if (path.ok()) {
      out[stage] = *path;
    } else if (std::find(needed.begin(), needed.end(), stage) != needed.end()) {
      return path.status();
    }
  }
  return out;
}

}  // namespace qwenmux::rag
