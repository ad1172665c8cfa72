// The embedded document store: one SQLite database (WAL journal, schema version in `meta`) holding
// collections, documents, chunks (text, heading path, token count, float32 embedding) and one
// FTS5 full-text index per collection (BM25), plus one HNSW vector index per collection
// (vector_index.h) persisted beside the database as `vectors/<collection id>.hnsw`.
//
// SQLite is the source of truth. A document and all its chunks go in with one transaction, so a
// crash (even kill -9) leaves either the whole document or none of it. The HNSW files are
// snapshots saved now and then (Flush); when one lags or is missing or damaged, opening the
// collection's index repairs it from SQLite (adds the chunks it lacks, drops the ones deleted).
//
// A collection records the embedding model (an identity string) and dimension it was built with;
// adding chunks or searching with another model is refused with an error naming both.
//
// Layout of DIR: store.db (+ -wal, -shm), vectors/<id>.hnsw.
//
// Thread-safety: a Store is used by one thread at a time. Several processes may open the same
// DIR (SQLite locking); only one should write at a time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "rag/vector_index.h"

struct sqlite3;

namespace qwenmux::rag {

inline constexpr int kSchemaVersion = 1;

// Collection names: 1 to 64 characters of [A-Za-z0-9._-], starting with a letter or digit, so a
// name never reads as a path ("../x", "/etc", "a/b") or an option. Checked wherever a name is
// taken: the store (OpenCollection, GetCollection), the CLI through it, pipeline definitions and
// the HTTP APIs. kInvalidArgument naming the rule.
inline constexpr size_t kMaxCollectionName = 64;
Status ValidateCollectionName(std::string_view name);

struct CollectionInfo {
  int64_t id = 0;
  std::string name;
  std::string embed_model;  // identity of the embedding model (EmbedModelId)
  int32_t dim = 0;          // embedding dimension
  int64_t created_at = 0;   // unix seconds
};

struct CollectionStats {
  CollectionInfo info;
  int64_t documents = 0, chunks = 0, tokens = 0, bytes = 0;
  int64_t indexed_vectors = 0;  // live vectors in the HNSW index after repair
};

struct DocumentRecord {
  int64_t id = 0;            // SQLite rowid
  std::string doc_id;        // stable id (from the source path)
  std::string source;        // path as given
  std::string title;
  std::string format;        // "txt", "md", "html", "pdf"
  std::string content_hash;  // SHA-256 of the file bytes
  int64_t bytes = 0;
  int64_t n_chunks = 0;
  int64_t ingested_at = 0;
};

struct NewChunk {
  std::string heading;  // heading path ("Install > Debian"), may be empty
  std::string text;
  int32_t n_tokens = 0;
  std::vector<float> embedding;  // [dim]
};

struct ChunkRecord {
  int64_t id = 0;          // SQLite rowid = HNSW label = FTS rowid
  std::string chunk_id;    // stable: "<doc_id>:<ordinal>"
  int64_t document_id = 0;
  int32_t ordinal = 0;
  std::string heading, text;
  int32_t n_tokens = 0;
  std::string doc_id, source, title;  // of its document
};

// What opening a collection's vector index found and fixed.
struct IndexRepair {
  bool loaded = false;      // a saved index file was loaded
  std::string load_error;   // why not (missing file, damaged file), if not loaded
  int64_t added = 0;        // chunks added from SQLite (the index lagged)
  int64_t removed = 0;      // vectors of deleted chunks dropped
};

class Store {
 public:
  // Opens (creating if needed) the store in `dir`.
  static Result<std::unique_ptr<Store>> Open(const std::string& dir);
  // Opens an existing store for reading only (SQLITE_OPEN_READONLY), for the commands that only
  // read (collection ls/stats, ask, eval): nothing is created, not even the directory; no
  // store.db in `dir` is NotFound. Writes fail; Flush does nothing (a vector index repaired on
  // open stays in memory).
  static Result<std::unique_ptr<Store>> OpenReadOnly(const std::string& dir);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& dir() const { return dir_; }

  // Collections.
  Result<CollectionInfo> GetCollection(const std::string& name);  // NotFound if absent
  // Gets `name`, creating it for (embed_model, dim) if absent; refuses a different model or dim.
  Result<CollectionInfo> OpenCollection(const std::string& name, const std::string& embed_model, int32_t dim);
  Result<std::vector<CollectionInfo>> ListCollections();
  Result<CollectionStats> Stats(const std::string& name);
  Status DeleteCollection(const std::string& name);
  // The embedding model file a collection was filled with (ingest records it, so `ask` and `eval`
  // need no --embed-model); "" when none is recorded. Kept in `meta` (no schema change).
  Status SetEmbedFile(const CollectionInfo& c, const std::string& path);
  Result<std::string> EmbedFile(const CollectionInfo& c);

  // Documents. PutDocument inserts `doc` (or replaces the document with the same doc_id, chunks
  // and all) in one transaction and adds the chunks to the vector index if it is open.
  Result<std::optional<DocumentRecord>> FindDocument(const CollectionInfo& c, const std::string& doc_id);
  Result<std::vector<DocumentRecord>> ListDocuments(const CollectionInfo& c);
  Result<int64_t> PutDocument(const CollectionInfo& c, const DocumentRecord& doc, std::span<const NewChunk> chunks);
  Status DeleteDocument(const CollectionInfo& c, const std::string& doc_id);

  // Full-text search (FTS5 BM25) over a collection's chunks: (chunk rowid, bm25 score; higher is
  // better), best first. Words of `query` are OR-ed; FTS5 syntax in it is never interpreted. In
  // collections of more than 2000 chunks, words that occur in over 5% of the chunks are left
  // out (they weigh little and would make the query scan the whole collection).
  Result<std::vector<std::pair<int64_t, double>>> SearchBm25(const CollectionInfo& c, std::string_view query, size_t k);
  // Nearest chunks by cosine similarity (embeddings are L2-normalised): (rowid, similarity).
  Result<std::vector<std::pair<int64_t, float>>> SearchVector(const CollectionInfo& c, std::span<const float> query, size_t k);

  Result<std::vector<ChunkRecord>> GetChunks(std::span<const int64_t> ids);  // in the given order; missing ids skipped
  // Every chunk rowid of a collection, by document source, then ordinal.
  Result<std::vector<int64_t>> ChunkIds(const CollectionInfo& c);

  // The collection's vector index, loaded and repaired from SQLite on first use.
  Result<VectorIndex*> Vectors(const CollectionInfo& c, IndexRepair* repair = nullptr);
  // Saves every open index that changed (atomic file replace).
  Status Flush();

  sqlite3* db() { return db_; }

 private:
  Store() = default;
  Status Exec(const char* sql);
  Result<int64_t> ChunkCount(const CollectionInfo& c);  // cached per collection
  std::string IndexPath(int64_t collection_id) const;

  std::string dir_;
  bool read_only_ = false;
  sqlite3* db_ = nullptr;
  std::map<int64_t, std::unique_ptr<VectorIndex>> indexes_;
  std::map<int64_t, int64_t> chunk_counts_;  // collection id -> chunks (dropped on writes)
  std::map<int64_t, bool> cjk_bigrams_;       // collection id -> its FTS index holds CJK bigrams (cjk.h)
  // Whether the collection's FTS index was built with CJK bigrams (collections made since; older
  // ones keep their raw tokens so that deletes stay consistent with what was indexed).
  Result<bool> CjkBigramIndex(int64_t collection_id);
};

// Escapes arbitrary text into an FTS5 query: its words, each quoted, joined with OR ("" if none).
std::string Fts5Query(std::string_view text);

}  // namespace qwenmux::rag
