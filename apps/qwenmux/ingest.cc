// qwenmux ingest PATH... --collection C [--store DIR] [--embed-model FILE.gguf] [--chunk-tokens N]
// Reads txt/md/html/pdf files (directories recursively), chunks, embeds and stores them. One JSON
// line per document on stdout when stdout is not a terminal (or with --events), printed only
// after the document is committed; a progress bar on stderr when it is a terminal; a JSON summary
// last. Unreadable, corrupt and binary files (and paths that do not exist) are reported as failed
// and the exit status is 3; empty files are reported as skipped. Running it again resumes
// (unchanged files are skipped by content hash; failed ones are tried again).
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "rag/ingest.h"
#include "rag_common.h"

namespace qwenmux::apps {

namespace {

struct Args {
  RagCommon common;
  std::vector<std::string> paths;
  std::string collection, embed_model;
  rag::IngestOptions opt;
  int32_t dims = 0;
  int32_t n_seq = 8;
  bool events = false, json = false;
};

nlohmann::json EventJson(const rag::IngestEvent& e) {
  nlohmann::json j{{"status", e.status}, {"path", e.path}};
  if (!e.doc_id.empty()) j["doc_id"] = e.doc_id;
  if (e.status != "failed" && e.status != "skipped") j["chunks"] = e.chunks;
  if (!e.error.empty()) j[e.status == "skipped" ? "reason" : "error"] = e.error;
  return j;
}

int Run(Args& a) {
  auto models = a.common.Models({{"embedding", a.embed_model}}, {"embedding"});
  if (!models.ok()) return ReportError(models.status());
  const std::string embed_path = models->at("embedding");
  engine::LoadOptions lo;
  lo.n_ctx = a.opt.chunk.max_tokens * 2 + 64;  // chunk + heading path + <|endoftext|>
  lo.n_seq = a.n_seq;
  lo.n_batch = 2048;
  lo.n_threads = static_cast<size_t>(a.common.threads);
  if (Status d = a.common.ApplyDevice(&lo); !d.ok()) return ReportError(d);
  auto model = engine::Model::Load(embed_path, lo);
  if (!model.ok()) return ReportError(model.status());
  auto embedder = rag::Embedder::Create(model->get(), embed_path, a.dims);
  if (!embedder.ok()) return ReportError(embedder.status());
  auto store = rag::Store::Open(a.common.StoreDir());
  if (!store.ok()) return ReportError(store.status());
  a.opt.collection = a.collection;
  a.opt.embed_batch = static_cast<size_t>(a.n_seq) * 4;

  const bool lines = a.events || !isatty(STDOUT_FILENO);
  const bool bar = isatty(STDERR_FILENO);
  auto summary = rag::Ingest(**store, *embedder, a.paths, a.opt, [&](const rag::IngestEvent& e) {
    if (lines) {
      fmt::print("{}\n", EventJson(e).dump());
      std::fflush(stdout);
    }
    if (e.status == "failed") fmt::print(stderr, "{}warning: failed: {}\n", bar ? "\r\033[K" : "", e.error);
    if (e.status == "skipped") fmt::print(stderr, "{}note: skipped {}: {}\n", bar ? "\r\033[K" : "", e.path, e.error);
    if (bar) {
      const int width = 30;
      const int filled = e.total ? static_cast<int>(width * e.index / e.total) : width;
      fmt::print(stderr, "\r\033[K[{}{}] {}/{} {}", std::string(filled, '#'), std::string(width - filled, '.'),
                 e.index, e.total, e.path.size() > 40 ? "..." + e.path.substr(e.path.size() - 37) : e.path);
      if (e.index == e.total) fmt::print(stderr, "\n");
    }
  });
  if (!summary.ok()) return ReportError(summary.status());
  const rag::IngestSummary& s = *summary;
  // Record the embedding model file with the collection, so `ask`/`eval` find it without flags.
  if (auto info = (*store)->GetCollection(a.collection); info.ok()) {
    std::error_code ec;
    const std::filesystem::path abs = std::filesystem::absolute(embed_path, ec);
    if (Status r = (*store)->SetEmbedFile(*info, ec ? embed_path : abs.string()); !r.ok())
      fmt::print(stderr, "warning: {}\n", r.ToString());
  }
  nlohmann::json j{{"collection", a.collection},
                   {"store", (*store)->dir()},
                   {"embed_model", embedder->id()},
                   {"dim", embedder->dim()},
                   {"files", s.files},
                   {"added", s.added},
                   {"replaced", s.replaced},
                   {"unchanged", s.unchanged},
                   {"skipped", s.skipped},
                   {"failed", s.failed},
                   {"chunks", s.chunks},
                   {"tokens", s.tokens},
                   {"seconds", s.seconds},
                   {"embed_seconds", s.embed_seconds},
                   {"chunks_per_min", s.embed_seconds > 0 ? s.chunks / s.embed_seconds * 60 : 0.0}};
  nlohmann::json failures = nlohmann::json::array();
  for (const auto& f : s.failures) failures.push_back({{"path", f.path}, {"error", f.error}});
  j["failures"] = failures;
  if (a.json || lines) {
    fmt::print("{}\n", nlohmann::json{{"summary", j}}.dump());
  } else {  // a person at a terminal: a short table
    fmt::print("collection {} in {} ({}, dim {})\n", a.collection, (*store)->dir(), embedder->id(), embedder->dim());
    fmt::print("  {:<10} {:>8}\n  {:<10} {:>8}\n  {:<10} {:>8}\n  {:<10} {:>8}\n  {:<10} {:>8}\n  {:<10} {:>8}\n",
               "files", s.files, "added", s.added, "replaced", s.replaced, "unchanged", s.unchanged, "skipped",
               s.skipped, "failed", s.failed);
    fmt::print("  {:<10} {:>8}\n  {:<10} {:>8}\n  {:<10} {:>8.1f}s\n", "chunks", s.chunks, "tokens", s.tokens,
               "time", s.seconds);
    for (const auto& f : s.failures) fmt::print("  failed: {}: {}\n", f.path, f.error);
  }
  // Exit 3 when any file failed (unreadable, corrupt, binary, or a path that does not exist);
  // the summary above lists them. Skipped empty files are not failures.
  return s.failed > 0 ? 3 : 0;
}

}  // namespace

void RegisterIngest(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("ingest", "Add documents (txt, md, html, pdf; directories recursively) to a collection");
  cmd->add_option("paths", a->paths, "Files and directories")->required();
  cmd->add_option("-C,--collection", a->collection, "Collection name")->required()->check(CollectionName());
  cmd->add_option("--embed-model", a->embed_model, "Embedding GGUF (default: the rag pipeline's embedding stage)");
  cmd->add_option("--dims", a->dims, "Embedding dimension (MRL truncation; 0: the model's)")->capture_default_str();
  cmd->add_option("--chunk-tokens", a->opt.chunk.max_tokens, "Tokens per chunk")->capture_default_str();
  cmd->add_option("--overlap", a->opt.chunk.overlap_tokens, "Tokens shared by consecutive chunks")->capture_default_str();
  cmd->add_option("--parallel", a->n_seq, "Chunks embedded together (KV sequences)")->capture_default_str();
  cmd->add_option("--save-every", a->opt.save_every_seconds, "Seconds between vector index snapshots")->capture_default_str();
  cmd->add_flag("--events", a->events, "One JSON line per document even on a terminal");
  cmd->add_flag("--json", a->json, "The summary as JSON even on a terminal (it is JSON when piped)");
  a->common.AddStoreFlag(cmd);
  a->common.AddModelFlags(cmd);
  cmd->callback([=] { *exit_code = Run(*a); });
}

}  // namespace qwenmux::apps
