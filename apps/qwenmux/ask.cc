// qwenmux ask "question" --collection C [--model F] [--embed-model F] [--rerank-model F] [--json]
// The RAG pipeline: streams the answer, then its sources, score and stage timings (or one JSON).
#include <cstdio>

#include <fmt/format.h>

#include "backend_flags.h"
#include "commands.h"
#include "rag/model_set.h"
#include "rag/rag.h"
#include "rag_common.h"

namespace qwenmux::apps {

namespace {

struct Args {
  RagCommon common;
  std::string question, collection;
  std::string model, query_model, embed_model, rerank_model, score_model;
  int32_t ctx = 4096, dims = 0;
  bool json = false, no_rewrite = false, no_rerank = false, no_score = false, thinking = false;
  rag::AnswerOptions opt;
  BackendFlags backends;  // with --config's `backends:`: stages may name NAME/MODEL
};

int Run(Args& a) {
  // Read-only, and first: no store there is an error before any model loads (nothing is created).
  auto store = rag::Store::OpenReadOnly(a.common.StoreDir());
  if (!store.ok()) return ReportError(store.status());
  // No --embed-model: the file the collection was ingested with (recorded by ingest), if it is
  // still there; else the configured/default embedding model.
  if (Status e = UseRecordedEmbedModel(**store, a.collection, &a.embed_model); !e.ok()) return ReportError(e);
  {
    std::unique_ptr<orchestrator::Config> cfg;
    if (!a.common.config_path.empty()) {
      auto c = orchestrator::LoadConfig(a.common.config_path);
      if (!c.ok()) return ReportError(c.status());
      cfg = std::make_unique<orchestrator::Config>(std::move(*c));
    }
    if (Status b = a.backends.Open(cfg.get()); !b.ok()) return ReportError(b);
  }
  const rag::BackendAccess& backend = a.backends.access;
  // --model serves every LLM stage unless a stage has its own flag.
  const std::string q = a.query_model.empty() ? a.model : a.query_model;
  const std::string s = a.score_model.empty() ? a.model : a.score_model;
  const rag::RagStages stages{.rewrite = !a.no_rewrite, .rerank = !a.no_rerank, .score = !a.no_score};
  auto paths = a.common.Models({{"query_understanding", q},
                                {"embedding", a.embed_model},
                                {"retrieval_ranking", a.rerank_model},
                                {"context_synthesis", a.model},
                                {"response_generation", a.model},
                                {"quality_scoring", s}},
                               rag::NeededRagStages(stages), backend);
  if (!paths.ok()) return ReportError(paths.status());
  ModelPool pool(&a.common);
  for (const auto& [file, o] : rag::RagLoadPlan(*paths, stages, a.ctx, static_cast<size_t>(a.common.threads), backend))
    pool.Want(file, o);
  rag::RagModelSet set;
  if (Status b = rag::BindRagModels(*paths, stages, a.dims, [&](const std::string& f) { return pool.Get(f); }, &set, backend);
      !b.ok())
    return ReportError(b);
  const rag::RagModels& models = set.models;
  a.opt.thinking = a.thinking;
  a.opt.generator_ctx = a.ctx;  // -c holds even when the generator file also embeds (loaded larger)
  if (a.no_rewrite) a.opt.max_rewrites = 0;
  auto res = rag::Answer(**store, a.collection, a.question, models, a.opt, [&](const rag::AnswerEvent& ev) {
    if (!a.json && ev.kind == rag::AnswerEvent::Kind::kText) {
      std::fwrite(ev.text.data(), 1, ev.text.size(), stdout);
      std::fflush(stdout);
    }
    return true;
  });
  if (!res.ok()) return ReportError(res.status());
  if (a.json) {
    fmt::print("{}\n", res->ToJson().dump(2));
    return 0;
  }
  fmt::print("\n\nSources:\n");
  for (const rag::Source& src : res->sources) {
    const bool cited = std::find(res->cited.begin(), res->cited.end(), src.n) != res->cited.end();
    fmt::print("  [{}]{} {} ({}, chunk {})\n", src.n, cited ? "*" : " ", src.title, src.source, src.chunk_id);
  }
  std::string t;
  for (const auto& st : res->timings) t += fmt::format("{} {:.0f} ms, ", st.stage, st.ms);
  fmt::print(stderr, "[score {} | {}total {:.0f} ms]\n", res->score >= 0 ? fmt::format("{:.2f}", res->score) : "n/a",
             t, res->total_ms);
  return 0;
}

}  // namespace

void RegisterAsk(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("ask", "Answer a question from a collection (RAG), citing sources as [n]");
  cmd->add_option("question", a->question, "The question")->required();
  cmd->add_option("-C,--collection", a->collection, "Collection")->required()->check(CollectionName());
  cmd->add_option("-m,--model", a->model, "GGUF for the answer (and query rewriting and scoring, unless given); NAME/MODEL: a backend's (--backend)");
  cmd->add_option("--query-model", a->query_model, "GGUF for query understanding");
  cmd->add_option("--embed-model", a->embed_model, "Embedding model (default: the one the collection was ingested with)");
  cmd->add_option("--rerank-model", a->rerank_model, "Reranker GGUF");
  cmd->add_option("--score-model", a->score_model, "GGUF for the groundedness score");
  cmd->add_option("--dims", a->dims, "Embedding dimension the collection was built with (0: full)");
  cmd->add_option("-c,--ctx", a->ctx, "Generator context (passages are packed into what it leaves)")->capture_default_str();
  cmd->add_option("-n,--max-tokens", a->opt.max_answer_tokens, "Answer tokens at most")->capture_default_str();
  cmd->add_option("-k,--top", a->opt.retrieval.top_n, "Passages given to the generator at most")->capture_default_str();
  cmd->add_option("--rewrites", a->opt.max_rewrites, "Extra search queries from query understanding")->capture_default_str();
  cmd->add_option("--temp", a->opt.sampler.temperature, "Temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--seed", a->opt.sampler.seed, "Random seed")->capture_default_str();
  cmd->add_flag("--no-rewrite", a->no_rewrite, "Skip query understanding");
  cmd->add_flag("--no-rerank", a->no_rerank, "Skip the reranker");
  cmd->add_flag("--no-score", a->no_score, "Skip the quality score");
  cmd->add_flag("--think", a->thinking, "Let the generator think first (the thinking is dropped from the answer)");
  cmd->add_flag("--json", a->json, "Print the answer, citations, stage timings and score as JSON");
  a->common.AddStoreFlag(cmd);
  a->common.AddModelFlags(cmd);
  a->backends.Add(cmd);
  cmd->callback([=] { *exit_code = Run(*a); });
}

}  // namespace qwenmux::apps
