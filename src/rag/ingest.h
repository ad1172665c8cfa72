// Ingest: files and directories -> read -> chunk -> embed (batched) -> one SQLite transaction per
// document -> vector index. Each document is reported through the event callback only after its
// transaction committed. A file whose content hash matches the stored one is skipped (this is
// what makes an interrupted ingest resumable: run it again); a changed file replaces the old
// version; an unreadable, corrupt or binary file (or a path that does not exist) is reported as
// "failed" and never stops the batch; a file with no text (empty) is reported as "skipped" and
// stored nowhere.
//
// Thread-safety: one call at a time per Store and Embedder.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "rag/chunker.h"
#include "rag/embedder.h"
#include "rag/store.h"

namespace qwenmux::rag {

struct IngestOptions {
  std::string collection;
  ChunkOptions chunk;
  size_t embed_batch = 32;          // chunks per Model::Embed call
  double save_every_seconds = 10;   // vector index snapshot interval (always saved at the end)
};

struct IngestEvent {
  std::string status;  // "added", "replaced", "unchanged", "skipped" (no text), "failed"
  std::string path, doc_id, error;
  int64_t chunks = 0;
  size_t index = 0, total = 0;  // file position in the batch, for progress
};

struct IngestSummary {
  int64_t files = 0, added = 0, replaced = 0, unchanged = 0, skipped = 0, failed = 0, chunks = 0, tokens = 0;
  double seconds = 0, embed_seconds = 0;
  std::vector<IngestEvent> failures;
};

// The stable id of a document: SHA-256 of its absolute, normalised path (16 hex digits).
std::string DocumentId(const std::string& path);

// Expands directories (recursively, sorted, only files with a known format) and keeps files as
// given; paths that do not exist are returned in *missing.
std::vector<std::string> ExpandPaths(std::span<const std::string> paths, std::vector<std::string>* missing);

using IngestCallback = std::function<void(const IngestEvent&)>;

Result<IngestSummary> Ingest(Store& store, Embedder& embedder, std::span<const std::string> paths,
                             const IngestOptions& options, const IngestCallback& on_event = nullptr);

}  // namespace qwenmux::rag
