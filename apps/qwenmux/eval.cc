// qwenmux eval --collection C --cases CASES.jsonl [-k 5] [--embed-model F] [--rerank-model F] [--json]
// Retrieval quality: recall@k and MRR of BM25, vector, hybrid (RRF) and hybrid + reranker.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/mapped_file.h"
#include "commands.h"
#include "rag/eval.h"
#include "rag_common.h"

namespace qwenmux::apps {

namespace {

struct Args {
  RagCommon common;
  std::string collection, cases, embed_model, rerank_model;
  size_t k = 5;
  bool no_rerank = false, json = false;
  int32_t dims = 0;
};

int Run(Args a) {
  auto text = ReadFileToString(a.cases);
  if (!text.ok()) return ReportError(text.status());
  auto cases = rag::ParseEvalCases(*text, a.cases);
  if (!cases.ok()) return ReportError(cases.status());
  // Read-only: no store there is an error before any model loads (nothing is created).
  auto store = rag::Store::OpenReadOnly(a.common.StoreDir());
  if (!store.ok()) return ReportError(store.status());
  if (Status e = UseRecordedEmbedModel(**store, a.collection, &a.embed_model); !e.ok()) return ReportError(e);
  std::vector<std::string> needed{"embedding"};
  if (!a.no_rerank) needed.push_back("retrieval_ranking");
  auto models = a.common.Models({{"embedding", a.embed_model}, {"retrieval_ranking", a.rerank_model}}, needed);
  if (!models.ok()) return ReportError(models.status());
  ModelPool pool(&a.common);
  engine::LoadOptions eo;
  eo.n_ctx = 512;
  eo.n_threads = static_cast<size_t>(a.common.threads);
  engine::LoadOptions ro = eo;
  ro.n_ctx = 1024;
  ro.n_seq = 4;
  pool.Want(models->at("embedding"), eo);
  if (!a.no_rerank) pool.Want(models->at("retrieval_ranking"), ro);
  auto em = pool.Get(models->at("embedding"));
  if (!em.ok()) return ReportError(em.status());
  auto embedder = rag::Embedder::Create(*em, models->at("embedding"), a.dims);
  if (!embedder.ok()) return ReportError(embedder.status());
  engine::Model* reranker = nullptr;
  if (!a.no_rerank) {
    auto rm = pool.Get(models->at("retrieval_ranking"));
    if (!rm.ok()) return ReportError(rm.status());
    reranker = *rm;
  }
  auto coll = (*store)->GetCollection(a.collection);
  if (!coll.ok()) return ReportError(coll.status());
  auto report = rag::Evaluate(**store, *coll, *cases, &embedder.value(), reranker, a.k);
  if (!report.ok()) return ReportError(report.status());
  nlohmann::json j{{"collection", a.collection}, {"cases", cases->size()}, {"k", a.k}};
  for (const auto& [name, m] : report->methods) {
    j["methods"][name] = {{fmt::format("recall@{}", a.k), m.recall_at_k}, {"mrr", m.mrr}, {"ranks", m.ranks}};
    if (!a.json) fmt::print("{:<14} recall@{} {:.3f}  MRR {:.3f}\n", name, a.k, m.recall_at_k, m.mrr);
  }
  if (a.json) fmt::print("{}\n", j.dump(2));
  return 0;
}

}  // namespace

void RegisterEval(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("eval", "Retrieval quality on known question -> document pairs (recall@k, MRR)");
  cmd->add_option("-C,--collection", a->collection, "Collection")->required()->check(CollectionName());
  cmd->add_option("--cases", a->cases, "JSON lines: {\"question\": ..., \"document\": PATH-SUFFIX}")->required();
  cmd->add_option("-k", a->k, "Cut-off for recall")->capture_default_str();
  cmd->add_option("--embed-model", a->embed_model, "Embedding GGUF (must be the collection's)");
  cmd->add_option("--rerank-model", a->rerank_model, "Reranker GGUF");
  cmd->add_option("--dims", a->dims, "Embedding dimension the collection was built with (0: full)");
  cmd->add_flag("--no-rerank", a->no_rerank, "Skip the reranker");
  cmd->add_flag("--json", a->json, "JSON output");
  a->common.AddStoreFlag(cmd);
  a->common.AddModelFlags(cmd);
  cmd->callback([=] { *exit_code = Run(*a); });
}

}  // namespace qwenmux::apps
