// qwenmux collection ls|stats|rm [C] [--store DIR] [--json]
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "rag_common.h"

namespace qwenmux::apps {

namespace {

struct Args {
  RagCommon common;
  std::string name;
  bool json = false;
};

nlohmann::json InfoJson(const rag::CollectionInfo& c) {
  return {{"name", c.name}, {"embed_model", c.embed_model}, {"dim", c.dim}, {"created_at", c.created_at}};
}

// ls and stats only read: they open the store read-only and create nothing.
int Ls(const Args& a) {
  auto store = rag::Store::OpenReadOnly(a.common.StoreDir());
  if (!store.ok()) return ReportError(store.status());
  auto list = (*store)->ListCollections();
  if (!list.ok()) return ReportError(list.status());
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& c : *list) {
    auto st = (*store)->Stats(c.name);
    if (!st.ok()) return ReportError(st.status());
    nlohmann::json j = InfoJson(c);
    j["documents"] = st->documents;
    j["chunks"] = st->chunks;
    arr.push_back(j);
    if (!a.json) fmt::print("{:<24} {:>8} docs {:>9} chunks  {} (dim {})\n", c.name, st->documents, st->chunks,
                            c.embed_model, c.dim);
  }
  if (a.json) fmt::print("{}\n", arr.dump(2));
  else if (list->empty()) fmt::print("no collections in {}\n", (*store)->dir());
  return 0;
}

int Stats(const Args& a) {
  auto store = rag::Store::OpenReadOnly(a.common.StoreDir());
  if (!store.ok()) return ReportError(store.status());
  auto st = (*store)->Stats(a.name);
  if (!st.ok()) return ReportError(st.status());
  nlohmann::json j = InfoJson(st->info);
  j["documents"] = st->documents;
  j["chunks"] = st->chunks;
  j["tokens"] = st->tokens;
  j["bytes"] = st->bytes;
  j["indexed_vectors"] = st->indexed_vectors;
  if (a.json) {
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("collection:  {}\nembedding:   {} (dim {})\ndocuments:   {}\nchunks:      {} ({} tokens)\n"
               "vectors:     {}\nsource size: {} bytes\n",
               st->info.name, st->info.embed_model, st->info.dim, st->documents, st->chunks, st->tokens,
               st->indexed_vectors, st->bytes);
  }
  return 0;
}

int Rm(const Args& a) {
  auto store = rag::Store::OpenReadOnly(a.common.StoreDir());  // is there one? (creates nothing)
  if (!store.ok()) return ReportError(store.status());
  store = rag::Store::Open(a.common.StoreDir());
  if (!store.ok()) return ReportError(store.status());
  Status s = (*store)->DeleteCollection(a.name);
  if (!s.ok()) return ReportError(s);
  fmt::print("deleted collection {}\n", a.name);
  return 0;
}

}  // namespace

void RegisterCollection(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("collection", "List, inspect and delete document collections");
  cmd->require_subcommand(1);
  auto a = std::make_shared<Args>();
  auto* ls = cmd->add_subcommand("ls", "List collections");
  ls->add_flag("--json", a->json, "JSON output");
  a->common.AddStoreFlag(ls);
  ls->callback([=] { *exit_code = Ls(*a); });
  auto* stats = cmd->add_subcommand("stats", "Documents, chunks and vectors of a collection");
  stats->add_option("name", a->name, "Collection")->required()->check(CollectionName());
  stats->add_flag("--json", a->json, "JSON output");
  a->common.AddStoreFlag(stats);
  stats->callback([=] { *exit_code = Stats(*a); });
  auto* rm = cmd->add_subcommand("rm", "Delete a collection and its index");
  rm->add_option("name", a->name, "Collection")->required();
  a->common.AddStoreFlag(rm);
  rm->callback([=] { *exit_code = Rm(*a); });
}

}  // namespace qwenmux::apps
