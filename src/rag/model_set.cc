#include "rag/model_set.h"

#include <algorithm>
#include <cstdlib>
#include <tuple>

namespace qwenmux::rag {

std::string DefaultRagStoreDir() {
  if (const char* h = std::getenv("QWENMUX_HOME"); h && *h) return std::string(h) + "/rag";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.qwenmux/rag";
}

std::vector<std::string> NeededRagStages(const RagStages& stages) {
  std::vector<std::string> needed{"embedding", "response_generation"};
  if (stages.rewrite) needed.push_back("query_understanding");
  if (stages.rerank) needed.push_back("retrieval_ranking");
  if (stages.score) needed.push_back("quality_scoring");
  return needed;
}

namespace {

// Used stage -> its load options.
std::vector<std::pair<std::string, engine::LoadOptions>> StageLoads(const RagStages& stages, int32_t gen_ctx,
                                                                     size_t threads) {
  engine::LoadOptions gen, emb, rer;
  gen.n_threads = emb.n_threads = rer.n_threads = threads;
  gen.n_ctx = gen_ctx;
  emb.n_ctx = 512;
  rer.n_ctx = 1024;
  rer.n_seq = 4;
  std::vector<std::pair<std::string, engine::LoadOptions>> out{{"response_generation", gen}, {"embedding", emb}};
  if (stages.rewrite) out.push_back({"query_understanding", gen});
  if (stages.rerank) out.push_back({"retrieval_ranking", rer});
  if (stages.score) out.push_back({"quality_scoring", gen});
  return out;
}

}  // namespace

std::map<std::string, engine::LoadOptions> RagLoadPlan(const std::map<std::string, std::string>& paths,
                                                       const RagStages& stages, int32_t gen_ctx, size_t threads,
                                                       const BackendAccess& backend) {
  std::map<std::string, engine::LoadOptions> plan;
  for (const auto& [stage, o] : StageLoads(stages, gen_ctx, threads)) {
    auto p = paths.find(stage);
    if (p == paths.end() || p->second.empty() || backend.Owns(p->second)) continue;
    auto [it, fresh] = plan.try_emplace(p->second, o);
    if (fresh) continue;
    engine::LoadOptions& w = it->second;
    w.n_ctx = std::max(w.n_ctx, o.n_ctx);
    w.n_seq = std::max(w.n_seq, o.n_seq);
    w.n_batch = std::max(w.n_batch, o.n_batch);
  }
  return plan;
}

Status BindRagModels(const std::map<std::string, std::string>& paths, const RagStages& stages, int32_t dims,
                     const RagModelGetter& get, RagModelSet* out, const BackendAccess& backend) {
  out->models = {};
  out->embedder.reset();
  out->files.clear();
  auto ref_of = [&](const char* stage) -> Result<std::string> {
    auto p = paths.find(stage);
    if (p == paths.end() || p->second.empty())
      return Error(StatusCode::kInvalidArgument, "rag: no model for stage {}", stage);
    out->files[stage] = p->second;
    return p->second;
  };
  auto model = [&](const char* stage) -> Result<engine::Model*> {
    QM_ASSIGN_OR_RETURN(std::string file, ref_of(stage));
    auto m = get(file);
    if (!m.ok()) return m.status().WithContext(fmt::format("rag: stage {}", stage));
    return *m;
  };
  // Chat stages: the backend model's name, or the local model.
  auto chat = [&](const char* stage, engine::Model** local, std::string* remote) -> Status {
    QM_ASSIGN_OR_RETURN(std::string ref, ref_of(stage));
    if (backend.Owns(ref)) {
      *remote = ref;
      return Status::Ok();
    }
    QM_ASSIGN_OR_RETURN(*local, model(stage));
    return Status::Ok();
  };
  out->models.backend = backend;
  QM_RETURN_IF_ERROR(chat("response_generation", &out->models.generator, &out->models.generator_backend));
  QM_ASSIGN_OR_RETURN(std::string emb_ref, ref_of("embedding"));
  if (backend.Owns(emb_ref)) {
    Result<Embedder> e = Embedder::CreateBackend(backend, emb_ref, dims);
    if (!e.ok()) return e.status().WithContext("rag: stage embedding");
    out->embedder.emplace(std::move(*e));
  } else {
    QM_ASSIGN_OR_RETURN(engine::Model * em, model("embedding"));
    QM_ASSIGN_OR_RETURN(Embedder e, Embedder::Create(em, emb_ref, dims));
    out->embedder.emplace(std::move(e));
  }
  out->models.embedder = &*out->embedder;
  if (stages.rewrite) QM_RETURN_IF_ERROR(chat("query_understanding", &out->models.query, &out->models.query_backend));
  for (auto [on, stage, slot, what] :
       {std::tuple{stages.rerank, "retrieval_ranking", &out->models.reranker, "reranking reads the model's yes/no logits"},
        std::tuple{stages.score, "quality_scoring", &out->models.scorer, "scoring reads the model's yes/no logits"}}) {
    if (!on) continue;
    QM_ASSIGN_OR_RETURN(std::string ref, ref_of(stage));
    if (backend.Owns(ref))
      return Error(StatusCode::kUnsupported,
                   "rag: stage {} names backend model {}: {}, which a backend does not give; name a local model for "
                   "it (or turn the stage off)",
                   stage, ref, what);
    QM_ASSIGN_OR_RETURN(*slot, model(stage));
  }
  return Status::Ok();
}

}  // namespace qwenmux::rag
