// The model store: one directory with content-addressed blobs and a JSON manifest.
//
//   <dir>/blobs/sha256-<hex>            verified GGUF files, named by their SHA-256
//   <dir>/blobs/sha256-<hex>.partial    a download in progress (resumable)
//   <dir>/manifest.json                 names and aliases -> blobs (replaced atomically)
//   <dir>/.lock                         flock()ed around every read-modify-write of the manifest
//
// Thread-safety: every method re-reads the manifest under an exclusive flock on <dir>/.lock, so
// several threads and processes (two `qwenmux pull`s) may use one store at once.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace qwenmux::orchestrator {

struct StoredModel {
  std::string name;                  // "qwen3:8b-q8_0" or "hf:REPO/FILE"
  std::vector<std::string> aliases;  // "qwen3-balanced"
  std::string sha256;                // blob id (64 hex digits)
  uint64_t size = 0;
  std::string quantization;          // "Q8_0" ("" if unknown)
  std::string role;                  // "chat", "embedding", "reranker" ("" if unknown)
  std::string source;                // where it came from: "hf:Qwen/Qwen3-8B-GGUF/Qwen3-8B-Q8_0.gguf"
  int64_t added_unix = 0;
};

// Where the store lives when no --models-dir is given: $QWENMUX_HOME/models if that variable is
// set, else $HOME/.qwenmux/models. `why` says which rule applied (for the startup log).
std::string DefaultModelsDir(std::string* why = nullptr);

// Names and aliases: letters, digits and - _ . : / (no "..", no leading '/'), at most 200 bytes.
Status CheckStoreName(std::string_view name);

// Whether the file at `path` is a GGUF file that parses (magic, header, metadata and tensor table
// in bounds). A file that does not start with "GGUF" (an HTML error page saved as x.gguf) gets a
// message that quotes its first bytes. Used by pull before a download enters the store, and by
// `list` / `serve` to skip a bad entry already there.
Status CheckGgufFile(const std::string& path);

class ModelStore {
 public:
  // Opens (creating if needed) the store at `dir`.
  static Result<ModelStore> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::string BlobPath(std::string_view sha256) const;
  std::string PartialPath(std::string_view sha256) const;

  Result<std::vector<StoredModel>> List() const;
  // The model whose name or alias is `name`.
  Result<StoredModel> Find(std::string_view name) const;
  // Adds or replaces the entry called m.name; its blob must already be in blobs/. Aliases of m
  // are taken away from any other model that had them.
  Status Add(const StoredModel& m);
  // `name` a model's name: removes the model and its aliases, and its blob unless another name
  // uses it. `name` an alias: removes just the alias. *what says which happened.
  Status Remove(std::string_view name, std::string* what = nullptr);
  // Gives the model called `name` (name or alias) the alias `alias`. An alias may not be another
  // model's name; if another model has it as an alias, it moves.
  Status Tag(std::string_view name, std::string_view alias);

 private:
  explicit ModelStore(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace qwenmux::orchestrator
