#include "rag/store.h"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <thread>
#include <unordered_set>

#include "rag/cjk.h"
#include "rag/sqlite_util.h"

namespace qwenmux::rag {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  embed_model TEXT NOT NULL,
  dim INTEGER NOT NULL,
  created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS documents(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  collection_id INTEGER NOT NULL REFERENCES collections(id),
  doc_id TEXT NOT NULL,
  source TEXT NOT NULL,
  title TEXT NOT NULL,
  format TEXT NOT NULL,
  content_hash TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  n_chunks INTEGER NOT NULL,
  ingested_at INTEGER NOT NULL,
  UNIQUE(collection_id, doc_id));
CREATE TABLE IF NOT EXISTS chunks(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  collection_id INTEGER NOT NULL,
  document_id INTEGER NOT NULL REFERENCES documents(id),
  chunk_id TEXT NOT NULL,
  ordinal INTEGER NOT NULL,
  heading TEXT NOT NULL,
  text TEXT NOT NULL,
  n_tokens INTEGER NOT NULL,
  embedding BLOB NOT NULL,
  UNIQUE(collection_id, chunk_id));
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks(document_id);
CREATE INDEX IF NOT EXISTS chunks_by_collection ON chunks(collection_id, id);
)sql";

std::string FtsTable(int64_t collection_id) { return fmt::format("fts_{}", collection_id); }
// The `meta` key saying a collection's FTS index holds CJK bigrams (cjk.h).
std::string CjkKey(int64_t collection_id) { return fmt::format("fts_cjk_bigrams:{}", collection_id); }
// The `meta` key of a collection's embedding model file.
std::string EmbedFileKey(int64_t collection_id) { return fmt::format("embed_file:{}", collection_id); }

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace

namespace {

// The words of `text` (runs of ASCII letters/digits and non-ASCII bytes), distinct, in order.
std::vector<std::string> QueryWords(std::string_view text) {
  std::vector<std::string> out;
  std::string word;
  auto flush = [&] {
    if (!word.empty() && std::find(out.begin(), out.end(), word) == out.end()) out.push_back(word);
    word.clear();
  };
  for (unsigned char ch : text) {
    if (std::isalnum(ch) || ch >= 0x80) {
      word += static_cast<char>(ch);
    } else {
      flush();
    }
  }
  flush();
  return out;
}

std::string OrOfQuoted(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) out += (out.empty() ? "\"" : " OR \"") + w + '"';  // nothing to escape
  return out;
}

}  // namespace

std::string Fts5Query(std::string_view text) { return OrOfQuoted(QueryWords(text)); }

Store::~Store() {
  indexes_.clear();
  if (db_) sqlite3_close_v2(db_);
}

Status Store::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    Status s = Error(StatusCode::kIo, "store: {}: {}", dir_, err ? err : "unknown error");
    sqlite3_free(err);
    return s;
  }
  return Status::Ok();
}

std::string Store::IndexPath(int64_t collection_id) const {
  return fmt::format("{}/vectors/{}.hnsw", dir_, collection_id);
}

Result<std::unique_ptr<Store>> Store::OpenReadOnly(const std::string& dir) {
  const std::string path = dir + "/store.db";
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return Error(StatusCode::kNotFound, "store: there is no document store in {} (no store.db; `qwenmux ingest` "
                 "creates one)", dir);
  }
  std::unique_ptr<Store> s(new Store());
  s->dir_ = dir;
  s->read_only_ = true;
  if (sqlite3_open_v2(path.c_str(), &s->db_, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    return Error(StatusCode::kIo, "store: cannot open {}: {}", path, s->db_ ? sqlite3_errmsg(s->db_) : "out of memory");
  }
  sqlite3_busy_timeout(s->db_, 10000);
  Stmt get(s->db_, "SELECT value FROM meta WHERE key='schema_version'");
  Result<bool> has = get.Step("schema version");
  if (!has.ok()) return Error(StatusCode::kCorrupt, "store: {} is not a qwenmux document store ({})", path, has.status().message());
  if (!*has || get.Text(0) != std::to_string(kSchemaVersion)) {
    return Error(StatusCode::kUnsupported, "store: {} has schema version {}; this qwenmux reads version {}", path,
                 *has ? get.Text(0) : std::string("(none)"), kSchemaVersion);
  }
  return s;
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(fs::path(dir) / "vectors", ec);
  if (ec) return Error(StatusCode::kIo, "store: cannot create {}: {}", dir, ec.message());
  std::unique_ptr<Store> s(new Store());
  s->dir_ = dir;
  const std::string path = dir + "/store.db";
  if (sqlite3_open_v2(path.c_str(), &s->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    return Error(StatusCode::kIo, "store: cannot open {}: {}", path, s->db_ ? sqlite3_errmsg(s->db_) : "out of memory");
  }
  sqlite3_busy_timeout(s->db_, 10000);
  // WAL: readers never block the writer; synchronous=FULL: a commit is on disk when it returns.
  Status st = s->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
  if (!st.ok()) return Error(StatusCode::kCorrupt, "store: {} is not a usable SQLite database ({})", path, st.message());
  QM_RETURN_IF_ERROR(s->Exec(kSchema));
  Stmt get(s->db_, "SELECT value FROM meta WHERE key='schema_version'");
  QM_ASSIGN_OR_RETURN(bool has, get.Step("schema version"));
  if (!has) {
    Stmt put(s->db_, "INSERT INTO meta(key, value) VALUES('schema_version', ?)");
    QM_RETURN_IF_ERROR(put.Bind(1, std::to_string(kSchemaVersion)).Run("schema version"));
  } else if (get.Text(0) != std::to_string(kSchemaVersion)) {
    return Error(StatusCode::kUnsupported, "store: {} has schema version {}; this qwenmux reads version {}", path,
                 get.Text(0), kSchemaVersion);
  }
  return s;
}

namespace {

CollectionInfo ReadCollection(const Stmt& q) {
  return {q.Int(0), q.Text(1), q.Text(2), static_cast<int32_t>(q.Int(3)), q.Int(4)};
}

}  // namespace

Status ValidateCollectionName(std::string_view name) {
  auto bad = [&](const char* why) {
    return Error(StatusCode::kInvalidArgument, "collection name \"{}\": {} (1 to {} characters of A-Z a-z 0-9 . _ -, "
                 "starting with a letter or digit)", std::string(name.substr(0, 80)), why, kMaxCollectionName);
  };
  if (name.empty()) return bad("empty");
  if (name.size() > kMaxCollectionName) return bad("too long");
  if (!std::isalnum(static_cast<unsigned char>(name[0]))) return bad("must start with a letter or digit");
  for (char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (!std::isalnum(c) && c != '.' && c != '_' && c != '-') return bad("character not allowed");
  }
  if (name.find("..") != std::string_view::npos) return bad("'..' not allowed");
  return Status::Ok();
}

Result<CollectionInfo> Store::GetCollection(const std::string& name) {
  QM_RETURN_IF_ERROR(ValidateCollectionName(name));
  Stmt q(db_, "SELECT id, name, embed_model, dim, created_at FROM collections WHERE name=?");
  QM_ASSIGN_OR_RETURN(bool row, q.Bind(1, name).Step("get collection"));
  if (!row) return Error(StatusCode::kNotFound, "store: no collection \"{}\" in {}", name, dir_);
  return ReadCollection(q);
}

Result<CollectionInfo> Store::OpenCollection(const std::string& name, const std::string& embed_model, int32_t dim) {
  QM_RETURN_IF_ERROR(ValidateCollectionName(name));
  if (dim <= 0) return Error(StatusCode::kInvalidArgument, "store: embedding dimension {} for collection {}", dim, name);
  auto existing = GetCollection(name);
  if (existing.ok()) {
    if (existing->embed_model != embed_model || existing->dim != dim) {
      return Error(StatusCode::kInvalidArgument,
                   "store: collection \"{}\" was built with embedding model {} (dimension {}); refusing to mix in {} "
                   "(dimension {}). Use that model, or another collection",
                   name, existing->embed_model, existing->dim, embed_model, dim);
    }
    return existing;
  }
  if (existing.status().code() != StatusCode::kNotFound) return existing.status();
  Transaction tx(db_);
  QM_RETURN_IF_ERROR(tx.Begin());
  Stmt ins(db_, "INSERT INTO collections(name, embed_model, dim, created_at) VALUES(?, ?, ?, ?)");
  QM_RETURN_IF_ERROR(ins.Bind(1, name).Bind(2, embed_model).Bind(3, int64_t{dim}).Bind(4, Now()).Run("create collection"));
  const int64_t id = sqlite3_last_insert_rowid(db_);
  const std::string sql = fmt::format(
      "CREATE VIRTUAL TABLE {} USING fts5(heading, text, content='chunks', content_rowid='id', "
      "tokenize='porter unicode61 remove_diacritics 2')",
      FtsTable(id));
  QM_RETURN_IF_ERROR(Exec(sql.c_str()));
  Stmt cjk(db_, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, '1')");
  QM_RETURN_IF_ERROR(cjk.Bind(1, CjkKey(id)).Run("create collection"));
  QM_RETURN_IF_ERROR(tx.Commit());
  cjk_bigrams_.erase(id);
  std::error_code ec;
  fs::remove(IndexPath(id), ec);  // a stale file of a deleted collection with the same id
  return GetCollection(name);
}

Result<std::vector<CollectionInfo>> Store::ListCollections() {
  Stmt q(db_, "SELECT id, name, embed_model, dim, created_at FROM collections ORDER BY name");
  std::vector<CollectionInfo> out;
  for (;;) {
    QM_ASSIGN_OR_RETURN(bool row, q.Step("list collections"));
    if (!row) break;
    out.push_back(ReadCollection(q));
  }
  return out;
}

Result<CollectionStats> Store::Stats(const std::string& name) {
  CollectionStats st;
  QM_ASSIGN_OR_RETURN(st.info, GetCollection(name));
  Stmt d(db_, "SELECT count(*), coalesce(sum(bytes), 0) FROM documents WHERE collection_id=?");
  QM_ASSIGN_OR_RETURN(bool row, d.Bind(1, st.info.id).Step("stats"));
  if (row) st.documents = d.Int(0), st.bytes = d.Int(1);
  Stmt c(db_, "SELECT count(*), coalesce(sum(n_tokens), 0) FROM chunks WHERE collection_id=?");
  QM_ASSIGN_OR_RETURN(row, c.Bind(1, st.info.id).Step("stats"));
  if (row) st.chunks = c.Int(0), st.tokens = c.Int(1);
  QM_ASSIGN_OR_RETURN(VectorIndex * index, Vectors(st.info));
  st.indexed_vectors = static_cast<int64_t>(index->size());
  return st;
}

Status Store::SetEmbedFile(const CollectionInfo& c, const std::string& path) {
  Stmt put(db_, "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value");
  return put.Bind(1, EmbedFileKey(c.id)).Bind(2, path).Run("record the embedding model file");
}

Result<std::string> Store::EmbedFile(const CollectionInfo& c) {
  Stmt get(db_, "SELECT value FROM meta WHERE key=?");
  QM_ASSIGN_OR_RETURN(bool row, get.Bind(1, EmbedFileKey(c.id)).Step("read the embedding model file"));
  return row ? get.Text(0) : std::string();
}

Result<bool> Store::CjkBigramIndex(int64_t collection_id) {
  auto it = cjk_bigrams_.find(collection_id);
  if (it != cjk_bigrams_.end()) return it->second;
  Stmt get(db_, "SELECT 1 FROM meta WHERE key=?");
  QM_ASSIGN_OR_RETURN(bool row, get.Bind(1, CjkKey(collection_id)).Step("read the index kind"));
  cjk_bigrams_[collection_id] = row;
  return row;
}

Status Store::DeleteCollection(const std::string& name) {
  QM_ASSIGN_OR_RETURN(CollectionInfo c, GetCollection(name));
  Transaction tx(db_);
  QM_RETURN_IF_ERROR(tx.Begin());
  for (const char* sql : {"DELETE FROM chunks WHERE collection_id=?", "DELETE FROM documents WHERE collection_id=?",
                          "DELETE FROM collections WHERE id=?"}) {
    Stmt del(db_, sql);
    QM_RETURN_IF_ERROR(del.Bind(1, c.id).Run("delete collection"));
  }
  QM_RETURN_IF_ERROR(Exec(fmt::format("DROP TABLE IF EXISTS {}", FtsTable(c.id)).c_str()));
  Stmt del_meta(db_, "DELETE FROM meta WHERE key=?");
  QM_RETURN_IF_ERROR(del_meta.Bind(1, EmbedFileKey(c.id)).Run("delete collection"));
  del_meta.Reset();
  QM_RETURN_IF_ERROR(del_meta.Bind(1, CjkKey(c.id)).Run("delete collection"));
  cjk_bigrams_.erase(c.id);
  QM_RETURN_IF_ERROR(tx.Commit());
  indexes_.erase(c.id);
  chunk_counts_.erase(c.id);
  std::error_code ec;
  fs::remove(IndexPath(c.id), ec);
  return Status::Ok();
}

namespace {

constexpr const char* kDocColumns =
    "id, doc_id, source, title, format, content_hash, bytes, n_chunks, ingested_at FROM documents";

DocumentRecord ReadDocument(const Stmt& q) {
  return {q.Int(0), q.Text(1), q.Text(2), q.Text(3), q.Text(4), q.Text(5), q.Int(6), q.Int(7), q.Int(8)};
}

}  // namespace

Result<std::optional<DocumentRecord>> Store::FindDocument(const CollectionInfo& c, const std::string& doc_id) {
  Stmt q(db_, fmt::format("SELECT {} WHERE collection_id=? AND doc_id=?", kDocColumns).c_str());
  QM_ASSIGN_OR_RETURN(bool row, q.Bind(1, c.id).Bind(2, doc_id).Step("find document"));
  if (!row) return std::optional<DocumentRecord>();
  return std::optional<DocumentRecord>(ReadDocument(q));
}

Result<std::vector<DocumentRecord>> Store::ListDocuments(const CollectionInfo& c) {
  Stmt q(db_, fmt::format("SELECT {} WHERE collection_id=? ORDER BY source", kDocColumns).c_str());
  q.Bind(1, c.id);
  std::vector<DocumentRecord> out;
  for (;;) {
    QM_ASSIGN_OR_RETURN(bool row, q.Step("list documents"));
    if (!row) break;
    out.push_back(ReadDocument(q));
  }
  return out;
}

Result<std::vector<int64_t>> Store::ChunkIds(const CollectionInfo& c) {
  Stmt q(db_,
         "SELECT c.id FROM chunks c JOIN documents d ON c.document_id = d.id WHERE c.collection_id=? "
         "ORDER BY d.source, c.ordinal");
  q.Bind(1, c.id);
  std::vector<int64_t> ids;
  for (;;) {
    QM_ASSIGN_OR_RETURN(bool row, q.Step("list chunks"));
    if (!row) break;
    ids.push_back(q.Int(0));
  }
  return ids;
}

namespace {

// Deletes a document's chunks (and their FTS entries) and the document row; returns the chunk ids.
// `cjk`: the collection's index holds CJK bigrams, so the delete passes the same rewritten text.
Result<std::vector<int64_t>> DeleteDocumentRows(sqlite3* db, int64_t collection_id, int64_t document_id, bool cjk) {
  std::vector<int64_t> ids;
  Stmt q(db, "SELECT id, heading, text FROM chunks WHERE document_id=?");
  q.Bind(1, document_id);
  Stmt fts(db, fmt::format("INSERT INTO {0}({0}, rowid, heading, text) VALUES('delete', ?, ?, ?)",
                           FtsTable(collection_id)).c_str());
  for (;;) {
    QM_ASSIGN_OR_RETURN(bool row, q.Step("delete document"));
    if (!row) break;
    ids.push_back(q.Int(0));
    fts.Reset();
    const std::string heading = q.Text(1), text = q.Text(2);
    QM_RETURN_IF_ERROR(fts.Bind(1, q.Int(0))
                           .Bind(2, cjk ? CjkBigrams(heading) : heading)
                           .Bind(3, cjk ? CjkBigrams(text) : text)
                           .Run("delete document text"));
  }
  Stmt dc(db, "DELETE FROM chunks WHERE document_id=?");
  QM_RETURN_IF_ERROR(dc.Bind(1, document_id).Run("delete chunks"));
  Stmt dd(db, "DELETE FROM documents WHERE id=?");
  QM_RETURN_IF_ERROR(dd.Bind(1, document_id).Run("delete document"));
  return ids;
}

}  // namespace

Result<int64_t> Store::PutDocument(const CollectionInfo& c, const DocumentRecord& doc, std::span<const NewChunk> chunks) {
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (chunks[i].embedding.size() != static_cast<size_t>(c.dim))
      return Error(StatusCode::kInvalidArgument, "store: {}: chunk {} has a {}-dimensional embedding; collection {} uses {}",
                   doc.source, i, chunks[i].embedding.size(), c.name, c.dim);
  }
  Transaction tx(db_);
  QM_RETURN_IF_ERROR(tx.Begin());
  std::vector<int64_t> removed;
  QM_ASSIGN_OR_RETURN(const bool cjk, CjkBigramIndex(c.id));
  QM_ASSIGN_OR_RETURN(auto old, FindDocument(c, doc.doc_id));
  if (old) {
    QM_ASSIGN_OR_RETURN(removed, DeleteDocumentRows(db_, c.id, old->id, cjk));
  }
  Stmt ins(db_, "INSERT INTO documents(collection_id, doc_id, source, title, format, content_hash, bytes, n_chunks, "
                "ingested_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)");
  ins.Bind(1, c.id).Bind(2, doc.doc_id).Bind(3, doc.source).Bind(4, doc.title).Bind(5, doc.format);
  ins.Bind(6, doc.content_hash).Bind(7, doc.bytes).Bind(8, static_cast<int64_t>(chunks.size())).Bind(9, Now());
  QM_RETURN_IF_ERROR(ins.Run("insert document"));
  const int64_t document_id = sqlite3_last_insert_rowid(db_);
  Stmt ch(db_, "INSERT INTO chunks(collection_id, document_id, chunk_id, ordinal, heading, text, n_tokens, embedding) "
               "VALUES(?, ?, ?, ?, ?, ?, ?, ?)");
  Stmt fts(db_, fmt::format("INSERT INTO {}(rowid, heading, text) VALUES(?, ?, ?)", FtsTable(c.id)).c_str());
  std::vector<int64_t> added;
  std::vector<float> rows;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const NewChunk& k = chunks[i];
    ch.Reset();
    ch.Bind(1, c.id).Bind(2, document_id).Bind(3, fmt::format("{}:{}", doc.doc_id, i)).Bind(4, static_cast<int64_t>(i));
    ch.Bind(5, k.heading).Bind(6, k.text).Bind(7, int64_t{k.n_tokens});
    ch.BindBlob(8, k.embedding.data(), k.embedding.size() * sizeof(float));
    QM_RETURN_IF_ERROR(ch.Run("insert chunk"));
    const int64_t id = sqlite3_last_insert_rowid(db_);
    fts.Reset();
    QM_RETURN_IF_ERROR(fts.Bind(1, id)
                           .Bind(2, cjk ? CjkBigrams(k.heading) : k.heading)
                           .Bind(3, cjk ? CjkBigrams(k.text) : k.text)
                           .Run("index chunk text"));
    added.push_back(id);
    rows.insert(rows.end(), k.embedding.begin(), k.embedding.end());
  }
  QM_RETURN_IF_ERROR(tx.Commit());
  chunk_counts_.erase(c.id);
  // Committed: SQLite has it. Mirror into an open index (a crash from here on is repaired on open).
  auto it = indexes_.find(c.id);
  if (it != indexes_.end()) {
    for (int64_t id : removed) it->second->Remove(id);
    QM_RETURN_IF_ERROR(it->second->AddBatch(added, rows, 1));
  }
  return document_id;
}

Status Store::DeleteDocument(const CollectionInfo& c, const std::string& doc_id) {
  Transaction tx(db_);
  QM_RETURN_IF_ERROR(tx.Begin());
  QM_ASSIGN_OR_RETURN(auto old, FindDocument(c, doc_id));
  if (!old) return Error(StatusCode::kNotFound, "store: no document {} in collection {}", doc_id, c.name);
  QM_ASSIGN_OR_RETURN(const bool cjk, CjkBigramIndex(c.id));
  QM_ASSIGN_OR_RETURN(auto removed, DeleteDocumentRows(db_, c.id, old->id, cjk));
  QM_RETURN_IF_ERROR(tx.Commit());
  chunk_counts_.erase(c.id);
  auto it = indexes_.find(c.id);
  if (it != indexes_.end())
    for (int64_t id : removed) it->second->Remove(id);
  return Status::Ok();
}

Result<int64_t> Store::ChunkCount(const CollectionInfo& c) {
  auto it = chunk_counts_.find(c.id);
  if (it != chunk_counts_.end()) return it->second;
  Stmt q(db_, "SELECT count(*) FROM chunks WHERE collection_id=?");
  QM_ASSIGN_OR_RETURN(bool row, q.Bind(1, c.id).Step("count chunks"));
  const int64_t n = row ? q.Int(0) : 0;
  chunk_counts_[c.id] = n;
  return n;
}

Result<std::vector<std::pair<int64_t, double>>> Store::SearchBm25(const CollectionInfo& c, std::string_view query, size_t k) {
  std::vector<std::pair<int64_t, double>> out;
  QM_ASSIGN_OR_RETURN(const bool cjk, CjkBigramIndex(c.id));
  std::vector<std::string> words = QueryWords(cjk ? CjkBigrams(query) : std::string(query));
  if (words.empty() || k == 0) return out;
  const std::string fts = FtsTable(c.id);
  // FTS5 scores every row that matches any word, so a stop-word-like term ("the", "what") makes
  // a query cost O(collection). Words found in more than `cap` chunks (5%, at least 2000) weigh
  // little in BM25 (idf < 3) and are dropped, unless every word is that common (then the
  // rarest one is kept). Document frequencies are probed with a capped count.
  QM_ASSIGN_OR_RETURN(const int64_t n, ChunkCount(c));
  const int64_t cap = std::max<int64_t>(2000, n / 20);
  if (n > cap && words.size() > 1) {
    Stmt probe(db_, fmt::format("SELECT count(*) FROM (SELECT 1 FROM {0} WHERE {0} MATCH ? LIMIT ?)", fts).c_str());
    std::vector<std::string> keep;
    std::string rarest;
    int64_t rarest_df = INT64_MAX;
    for (const std::string& w : words) {
      probe.Reset();
      QM_ASSIGN_OR_RETURN(bool row, probe.Bind(1, OrOfQuoted({w})).Bind(2, cap + 1).Step("term frequency"));
      const int64_t df = row ? probe.Int(0) : 0;
      if (df == 0) continue;
      if (df <= cap) keep.push_back(w);
      if (df < rarest_df) rarest_df = df, rarest = w;
    }
    if (keep.empty() && !rarest.empty()) keep.push_back(rarest);
    if (keep.empty()) return out;
    words = std::move(keep);
  }
  // bm25() is lower-is-better; negated so that higher is better.
  Stmt q(db_, fmt::format("SELECT rowid, bm25({0}) AS s FROM {0} WHERE {0} MATCH ? ORDER BY s LIMIT ?", fts).c_str());
  q.Bind(1, OrOfQuoted(words)).Bind(2, static_cast<int64_t>(k));
  for (;;) {
    QM_ASSIGN_OR_RETURN(bool row, q.Step("full-text search"));
    if (!row) break;
    out.emplace_back(q.Int(0), -q.Double(1));
  }
  return out;
}

Result<std::vector<std::pair<int64_t, float>>> Store::SearchVector(const CollectionInfo& c, std::span<const float> query, size_t k) {
  if (query.size() != static_cast<size_t>(c.dim))
    return Error(StatusCode::kInvalidArgument, "store: query embedding has {} dimensions; collection {} uses {} ({})",
                 query.size(), c.name, c.dim, c.embed_model);
  QM_ASSIGN_OR_RETURN(VectorIndex * index, Vectors(c));
  return index->Search(query, k);
}

Result<std::vector<ChunkRecord>> Store::GetChunks(std::span<const int64_t> ids) {
  Stmt q(db_, "SELECT c.id, c.chunk_id, c.document_id, c.ordinal, c.heading, c.text, c.n_tokens, d.doc_id, d.source, "
              "d.title FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id=?");
  std::vector<ChunkRecord> out;
  for (int64_t id : ids) {
    q.Reset();
    QM_ASSIGN_OR_RETURN(bool row, q.Bind(1, id).Step("get chunk"));
    if (!row) continue;
    out.push_back({q.Int(0), q.Text(1), q.Int(2), static_cast<int32_t>(q.Int(3)), q.Text(4), q.Text(5),
                   static_cast<int32_t>(q.Int(6)), q.Text(7), q.Text(8), q.Text(9)});
  }
  return out;
}

Result<VectorIndex*> Store::Vectors(const CollectionInfo& c, IndexRepair* repair) {
  IndexRepair local;
  IndexRepair& r = repair ? *repair : local;
  r = {};
  auto it = indexes_.find(c.id);
  if (it != indexes_.end()) {
    r.loaded = true;
    return it->second.get();
  }
  std::unique_ptr<VectorIndex> index;
  auto loaded = VectorIndex::Load(IndexPath(c.id), c.dim);
  if (loaded.ok()) {
    index = std::move(loaded).value();
    r.loaded = true;
  } else {
    r.load_error = loaded.status().message();
    index = VectorIndex::Create(c.dim);
  }
  // Repair against SQLite, the source of truth: drop vectors of deleted chunks, add missing ones
  // (normally exactly the chunks above the watermark, committed after the last save).
  std::unordered_set<int64_t> live;
  {
    Stmt q(db_, "SELECT id FROM chunks WHERE collection_id=?");
    q.Bind(1, c.id);
    for (;;) {
      QM_ASSIGN_OR_RETURN(bool row, q.Step("index repair"));
      if (!row) break;
      live.insert(q.Int(0));
    }
  }
  for (int64_t label : index->Labels()) {
    if (!live.count(label)) {
      index->Remove(label);
      ++r.removed;
    }
  }
  std::vector<int64_t> missing;
  for (int64_t id : live)
    if (!index->Contains(id)) missing.push_back(id);
  std::sort(missing.begin(), missing.end());
  const size_t threads = std::max(1u, std::thread::hardware_concurrency());
  Stmt emb(db_, "SELECT embedding FROM chunks WHERE id=?");
  constexpr size_t kBatch = 4096;
  for (size_t b = 0; b < missing.size(); b += kBatch) {
    const size_t e = std::min(missing.size(), b + kBatch);
    std::vector<float> rows;
    rows.reserve((e - b) * static_cast<size_t>(c.dim));
    for (size_t i = b; i < e; ++i) {
      emb.Reset();
      QM_ASSIGN_OR_RETURN(bool row, emb.Bind(1, missing[i]).Step("index repair"));
      const auto blob = row ? emb.Blob(0) : std::span<const uint8_t>();
      if (blob.size() != static_cast<size_t>(c.dim) * sizeof(float))
        return Error(StatusCode::kCorrupt, "store: chunk {} of collection {} has a {}-byte embedding, expected {}",
                     missing[i], c.name, blob.size(), c.dim * sizeof(float));
      const size_t at = rows.size();
      rows.resize(at + static_cast<size_t>(c.dim));
      std::memcpy(rows.data() + at, blob.data(), blob.size());
    }
    QM_RETURN_IF_ERROR(index->AddBatch(std::span(missing).subspan(b, e - b), rows, threads));
  }
  r.added = static_cast<int64_t>(missing.size());
  VectorIndex* raw = index.get();
  indexes_[c.id] = std::move(index);
  // A read-only store keeps the repaired index in memory (it writes nothing).
  if ((r.added > 0 || r.removed > 0) && !read_only_) QM_RETURN_IF_ERROR(raw->Save(IndexPath(c.id)));
  return raw;
}

Status Store::Flush() {
  if (read_only_) return Status::Ok();  // a repaired index stays in memory
  for (auto& [id, index] : indexes_)
    if (index->dirty()) QM_RETURN_IF_ERROR(index->Save(IndexPath(id)));
  return Status::Ok();
}

}  // namespace qwenmux::rag
