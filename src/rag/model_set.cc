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
                                                       const RagStages& stages, int32_t gen_ctx, size_t threads) {
  std::map<std::string, engine::LoadOptions> plan;
  for (const auto& [stage, o] : StageLoads(stages, gen_ctx, threads)) {
    auto p = paths.find(stage);
    if (p == paths.end() || p->second.empty()) continue;
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
                     const RagModelGetter& get, RagModelSet* out) {
  out->models = {};
  out->embedder.reset();
  out->files.clear();
  auto model = [&](const char* stage) -> Result<engine::Model*> {
    auto p = paths.find(stage);
    if (p == paths.end() || p->second.empty())
      return Error(StatusCode::kInvalidArgument, "rag: no model for stage {}", stage);
    out->files[stage] = p->second;
    auto m = get(p->second);
    if (!m.ok()) return m.status().WithContext(fmt::format("rag: stage {}", stage));
    return *m;
  };
  QM_ASSIGN_OR_RETURN(out->models.generator, model("response_generation"));
  QM_ASSIGN_OR_RETURN(engine::Model * em, model("embedding"));
  QM_ASSIGN_OR_RETURN(Embedder e, Embedder::Create(em, paths.at("embedding"), dims));
  out->embedder.emplace(std::move(e));
  out->models.embedder = &*out->embedder;
  for (auto [on, stage, slot] : {std::tuple{stages.rewrite, "query_understanding", &out->models.query},
                                 std::tuple{stages.rerank, "retrieval_ranking", &out->models.reranker},
                                 std::tuple{stages.score, "quality_scoring", &out->models.scorer}}) {
    if (!on) continue;
    QM_ASSIGN_OR_RETURN(*slot, model(stage));
  }
  return Status::Ok();
}

}  // namespace qwenmux::rag
