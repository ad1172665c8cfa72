// HNSW vector index (hnswlib) over L2-normalised embeddings, inner-product distance (= cosine).
// Labels are chunk rowids of the store (AUTOINCREMENT: never reused), so the highest label in a
// saved file is its watermark: every chunk with a larger rowid was added after the save.
//
// Files are written to a temporary name, fsynced and renamed, so a crash leaves the previous
// snapshot or the new one, never a torn file. Load checks the header against the expected
// dimension and the file size before handing it to hnswlib (whose own loader trusts its input).
//
// Thread-safety: one thread at a time (Search sets the query-time ef).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace qwenmux::rag {

struct HnswParams {
  size_t m = 16;                 // links per node
  size_t ef_construction = 100;  // build-time beam
  size_t ef_search = 64;         // query-time beam (at least k)
};

class VectorIndex {
 public:
  // A new, empty index.
  static std::unique_ptr<VectorIndex> Create(int32_t dim, const HnswParams& params = {});
  // Loads a saved index; Corrupt/NotFound errors say why (the caller rebuilds from SQLite).
  static Result<std::unique_ptr<VectorIndex>> Load(const std::string& path, int32_t dim, const HnswParams& params = {});
  ~VectorIndex();

  int32_t dim() const { return dim_; }
  size_t size() const;          // live (not deleted) vectors
  int64_t watermark() const;    // highest label ever added (0 if none)
  bool dirty() const { return dirty_; }
  bool Contains(int64_t label) const;
  std::vector<int64_t> Labels() const;  // live labels

  Status Add(int64_t label, std::span<const float> v);
  // Adds many vectors ([n, dim] row-major) on `threads` threads (hnswlib inserts concurrently).
  Status AddBatch(std::span<const int64_t> labels, std::span<const float> rows, size_t threads);
  void Remove(int64_t label);  // no-op if absent
  // The k nearest live vectors: (label, cosine similarity), best first.
  Result<std::vector<std::pair<int64_t, float>>> Search(std::span<const float> q, size_t k) const;
  Status Save(const std::string& path);

 private:
  struct Impl;
  VectorIndex(int32_t dim, const HnswParams& params);
  Status Reserve(size_t n);
  int32_t dim_;
  HnswParams params_;
  std::unique_ptr<Impl> impl_;
  int64_t watermark_ = 0;
  bool dirty_ = false;
};

}  // namespace qwenmux::rag
