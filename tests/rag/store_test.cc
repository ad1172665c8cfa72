// The document store: collections, documents, BM25, vectors, model mixing refused, index repair
// from SQLite (lagging, missing, damaged index files), schema version, hostile FTS queries.
#include <sqlite3.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "rag/store.h"
#include "rag_test_util.h"

namespace qwenmux::rag {
namespace {

using qwenmux::testing::TempDir;

constexpr int kDim = 16;

std::vector<float> UnitVector(uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n;
  std::vector<float> v(kDim);
  double s = 0;
  for (float& x : v) x = n(g), s += x * x;
  for (float& x : v) x = static_cast<float>(x / std::sqrt(s));
  return v;
}

DocumentRecord Doc(const std::string& id, const std::string& hash = "h") {
  DocumentRecord d;
  d.doc_id = id;
  d.source = "/docs/" + id + ".txt";
  d.title = id;
  d.format = "txt";
  d.content_hash = hash;
  d.bytes = 10;
  return d;
}

// Document `id` with chunks whose text holds the given words and embeddings from seeds.
Result<int64_t> Put(Store& s, const CollectionInfo& c, const std::string& id, std::vector<std::string> texts,
                    uint32_t seed, const std::string& hash = "h") {
  std::vector<NewChunk> chunks;
  for (size_t i = 0; i < texts.size(); ++i)
    chunks.push_back({"", texts[i], 5, UnitVector(seed + static_cast<uint32_t>(i))});
  return s.PutDocument(c, Doc(id, hash), chunks);
}

std::vector<std::string> SourcesOf(Store& s, const std::vector<std::pair<int64_t, double>>& hits) {
  std::vector<int64_t> ids;
  for (const auto& h : hits) ids.push_back(h.first);
  std::vector<std::string> out;
  const std::vector<ChunkRecord> records = s.GetChunks(ids).value();
  for (const auto& r : records) out.push_back(r.doc_id);
  return out;
}

TEST(RagStore, CollectionsDocumentsAndSearch) {
  TempDir dir;
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  Store& s = **store;
  auto c = s.OpenCollection("kb", "model-a", kDim);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE(Put(s, *c, "turbines", {"wind turbines convert kinetic energy", "blade pitch control"}, 100).ok());
  ASSERT_TRUE(Put(s, *c, "bread", {"sourdough bread needs a starter culture"}, 200).ok());

  auto bm = s.SearchBm25(*c, "How does a wind turbine work?", 10);  // porter stemming: turbine ~ turbines
  ASSERT_TRUE(bm.ok()) << bm.status().ToString();
  ASSERT_FALSE(bm->empty());
  EXPECT_EQ(SourcesOf(s, *bm).front(), "turbines");
  EXPECT_GT(bm->front().second, 0);  // higher is better

  auto vec = s.SearchVector(*c, UnitVector(200), 2);  // bread's exact embedding
  ASSERT_TRUE(vec.ok()) << vec.status().ToString();
  ASSERT_EQ(vec->size(), 2u);
  EXPECT_NEAR(vec->front().second, 1.0f, 1e-4);
  EXPECT_EQ(s.GetChunks(std::vector<int64_t>{vec->front().first}).value().front().doc_id, "bread");

  auto st = s.Stats("kb");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->documents, 2);
  EXPECT_EQ(st->chunks, 3);
  EXPECT_EQ(st->indexed_vectors, 3);
  const auto chunks = s.GetChunks(std::vector<int64_t>{vec->front().first}).value();
  EXPECT_EQ(chunks.front().chunk_id, chunks.front().doc_id + ":0");
}

TEST(RagStore, CollectionNamesAreChecked) {
  for (const std::string& ok : std::vector<std::string>{"kb", "docs", "a", "Kb_2.v-1", std::string(64, 'x')}) {
    EXPECT_TRUE(ValidateCollectionName(ok).ok()) << ok;
  }
  for (const std::string& bad : std::vector<std::string>{"", "../../x", "..", "a/b", "/etc", ".hidden", "-x", "_x", "a..b",
                                                          "sp ace", "caf\xc3\xa9", "a\nb", std::string(65, 'x')}) {
    Status s = ValidateCollectionName(bad);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
  }
  TempDir dir;
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok());
  EXPECT_FALSE((*store)->OpenCollection("../x", "m", 4).ok());
  EXPECT_EQ((*store)->GetCollection("../x").status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE((*store)->OpenCollection("kb", "m", 4).ok());
}

TEST(RagStore, ReplaceAndDeleteDocuments) {
  TempDir dir;
  auto s = std::move(Store::Open(dir.path())).value();
  auto c = s->OpenCollection("kb", "m", kDim).value();
  ASSERT_TRUE(s->Vectors(c).ok());
  ASSERT_TRUE(Put(*s, c, "doc", {"alpha version text"}, 1, "h1").ok());
  ASSERT_TRUE(Put(*s, c, "doc", {"beta version text", "more beta"}, 50, "h2").ok());  // same doc id: replaced
  EXPECT_TRUE(s->SearchBm25(c, "alpha", 5)->empty());
  EXPECT_EQ(s->SearchBm25(c, "beta", 5)->size(), 2u);
  auto doc = s->FindDocument(c, "doc").value();
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->content_hash, "h2");
  EXPECT_EQ(doc->n_chunks, 2);
  EXPECT_EQ(s->Vectors(c).value()->size(), 2u);
  // The old vector is gone: the nearest to alpha's embedding is not an alpha chunk.
  auto vec = s->SearchVector(c, UnitVector(1), 5).value();
  EXPECT_EQ(vec.size(), 2u);
  ASSERT_TRUE(s->DeleteDocument(c, "doc").ok());
  EXPECT_TRUE(s->SearchBm25(c, "beta", 5)->empty());
  EXPECT_EQ(s->Vectors(c).value()->size(), 0u);
  EXPECT_EQ(s->DeleteDocument(c, "doc").code(), StatusCode::kNotFound);
}

TEST(RagStore, MixingEmbeddingModelsIsRefused) {
  TempDir dir;
  auto s = std::move(Store::Open(dir.path())).value();
  ASSERT_TRUE(s->OpenCollection("kb", "qwen3-embedding-0.6b:L28-E1024", kDim).ok());
  auto other = s->OpenCollection("kb", "tiny-dense:L2-E256", kDim);
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("qwen3-embedding-0.6b:L28-E1024"), std::string::npos);
  EXPECT_NE(other.status().message().find("tiny-dense:L2-E256"), std::string::npos);
  EXPECT_FALSE(s->OpenCollection("kb", "qwen3-embedding-0.6b:L28-E1024", kDim / 2).ok());
  auto c = s->GetCollection("kb").value();
  EXPECT_FALSE(s->SearchVector(c, std::vector<float>(kDim + 1, 0.1f), 3).ok());
  std::vector<NewChunk> wrong{{"", "x", 1, std::vector<float>(kDim / 2, 0.1f)}};
  EXPECT_EQ(s->PutDocument(c, Doc("d"), wrong).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(s->FindDocument(c, "d").value().has_value());  // nothing half-written
}

TEST(RagStore, LaggingIndexIsRepairedFromSqlite) {
  TempDir dir;
  {
    auto s = std::move(Store::Open(dir.path())).value();
    auto c = s->OpenCollection("kb", "m", kDim).value();
    ASSERT_TRUE(s->Vectors(c).ok());
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(Put(*s, c, fmt::format("d{}", i), {"text"}, 10 * i).ok());
    ASSERT_TRUE(s->Flush().ok());  // snapshot holds d0..d4
  }
  {
    // Another process adds and deletes documents but never saves the index (killed, say).
    auto s = std::move(Store::Open(dir.path())).value();
    auto c = s->GetCollection("kb").value();
    for (int i = 5; i < 9; ++i) ASSERT_TRUE(Put(*s, c, fmt::format("d{}", i), {"text", "more"}, 10 * i).ok());
    ASSERT_TRUE(s->DeleteDocument(c, "d1").ok());
  }
  auto s = std::move(Store::Open(dir.path())).value();
  auto c = s->GetCollection("kb").value();
  IndexRepair r;
  auto index = s->Vectors(c, &r);
  ASSERT_TRUE(index.ok());
  EXPECT_TRUE(r.loaded) << r.load_error;
  EXPECT_EQ(r.added, 8);
  EXPECT_EQ(r.removed, 1);
  EXPECT_EQ((*index)->size(), 12u);
  auto vec = s->SearchVector(c, UnitVector(80), 1).value();  // d8's first chunk
  EXPECT_EQ(s->GetChunks(std::vector<int64_t>{vec.front().first}).value().front().doc_id, "d8");
  // Repaired index was saved: the next open needs no repair.
  auto s2 = std::move(Store::Open(dir.path())).value();
  IndexRepair r2;
  ASSERT_TRUE(s2->Vectors(c, &r2).ok());
  EXPECT_TRUE(r2.loaded);
  EXPECT_EQ(r2.added + r2.removed, 0);
}

TEST(RagStore, DamagedOrMissingIndexIsRebuilt) {
  TempDir dir;
  int64_t id = 0;
  {
    auto s = std::move(Store::Open(dir.path())).value();
    auto c = s->OpenCollection("kb", "m", kDim).value();
    id = c.id;
    ASSERT_TRUE(s->Vectors(c).ok());
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(Put(*s, c, fmt::format("d{}", i), {"text"}, 7 * i).ok());
    ASSERT_TRUE(s->Flush().ok());
  }
  const std::string path = dir / fmt::format("vectors/{}.hnsw", id);
  const auto size = std::filesystem::file_size(path);
  for (int variant = 0; variant < 3; ++variant) {
    if (variant == 0) std::filesystem::resize_file(path, size / 2);  // torn
    if (variant == 1) qwenmux::testing::WriteFile(path, std::string(size, '\xff'));  // garbage header
    if (variant == 2) std::filesystem::remove(path);
    auto s = std::move(Store::Open(dir.path())).value();
    auto c = s->GetCollection("kb").value();
    IndexRepair r;
    ASSERT_TRUE(s->Vectors(c, &r).ok());
    EXPECT_FALSE(r.loaded) << variant;
    EXPECT_FALSE(r.load_error.empty());
    EXPECT_EQ(r.added, 20);
    auto vec = s->SearchVector(c, UnitVector(7 * 13), 1).value();
    EXPECT_EQ(s->GetChunks(std::vector<int64_t>{vec.front().first}).value().front().doc_id, "d13");
  }
}

TEST(RagStore, HostileFtsQueriesAreJustWords) {
  TempDir dir;
  auto s = std::move(Store::Open(dir.path())).value();
  auto c = s->OpenCollection("kb", "m", kDim).value();
  ASSERT_TRUE(Put(*s, c, "d", {"NEAR and OR columns"}, 3).ok());
  for (const char* q : {"\"", "NEAR(a b", "text:*", "a AND OR NOT", "^x", "", "  ", "\xff\xfe", "col : - + ( )"}) {
    auto r = s->SearchBm25(c, q, 5);
    EXPECT_TRUE(r.ok()) << q << ": " << r.status().ToString();
  }
  EXPECT_EQ(Fts5Query("what's \"up\" NEAR(x)"), "\"what\" OR \"s\" OR \"up\" OR \"NEAR\" OR \"x\"");
  EXPECT_EQ(s->SearchBm25(c, "near", 5)->size(), 1u);
}

TEST(RagStore, CollectionsListAndDelete) {
  TempDir dir;
  auto s = std::move(Store::Open(dir.path())).value();
  auto a = s->OpenCollection("a", "m", kDim).value();
  ASSERT_TRUE(s->OpenCollection("b", "m", kDim).ok());
  ASSERT_TRUE(s->Vectors(a).ok());
  ASSERT_TRUE(Put(*s, a, "d", {"apple"}, 1).ok());
  ASSERT_TRUE(s->Flush().ok());
  EXPECT_EQ(s->ListCollections()->size(), 2u);
  ASSERT_TRUE(s->DeleteCollection("a").ok());
  EXPECT_EQ(s->ListCollections()->size(), 1u);
  EXPECT_EQ(s->GetCollection("a").status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir / fmt::format("vectors/{}.hnsw", a.id)));
  EXPECT_EQ(s->DeleteCollection("a").code(), StatusCode::kNotFound);
  // A new collection with the old name starts empty.
  auto a2 = s->OpenCollection("a", "m2", kDim).value();
  EXPECT_NE(a2.id, a.id);
  EXPECT_EQ(s->Stats("a")->chunks, 0);
}

TEST(RagStore, RefusesForeignFilesAndNewerSchemas) {
  TempDir dir;
  qwenmux::testing::WriteFile(dir / "store.db", std::string(4096, 'x'));
  auto bad = Store::Open(dir.path());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("store.db"), std::string::npos);

  TempDir dir2;
  { ASSERT_TRUE(Store::Open(dir2.path()).ok()); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir2 / "store.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET value='99' WHERE key='schema_version'", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto newer = Store::Open(dir2.path());
  ASSERT_FALSE(newer.ok());
  EXPECT_EQ(newer.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(newer.status().message().find("99"), std::string::npos);
}

}  // namespace
}  // namespace qwenmux::rag

namespace qwenmux::rag {
namespace {

TEST(RagStore, CommonWordsAreDroppedFromLargeCollections) {
  TempDir dir;
  auto s = std::move(Store::Open(dir.path())).value();
  auto c = s->OpenCollection("kb", "m", kDim).value();
  for (int d = 0; d < 22; ++d) {
    std::vector<std::string> texts;
    for (int i = 0; i < 100; ++i)
      texts.push_back(fmt::format("the common words and the {} filler{}", (d * 100 + i) % 2 ? "odd" : "even", d * 100 + i));
    if (d == 7) texts[3] = "the zebra crossing";
    ASSERT_TRUE(Put(*s, c, fmt::format("d{}", d), texts, static_cast<uint32_t>(d * 1000)).ok());
  }
  // 2200 chunks: words in more than 2000 of them ("the", "and", "common") are dropped.
  auto hits = s->SearchBm25(c, "the zebra and the common", 5);
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  ASSERT_EQ(hits->size(), 1u);  // only "zebra" was searched
  EXPECT_EQ(s->GetChunks(std::vector<int64_t>{hits->front().first}).value()[0].text, "the zebra crossing");
  // Every word common: the rarest ("and": not in the zebra chunk) is kept.
  auto common = s->SearchBm25(c, "the and", 5);
  ASSERT_TRUE(common.ok());
  EXPECT_EQ(common->size(), 5u);
  std::vector<int64_t> ids;
  for (const auto& [id, score] : *common) ids.push_back(id);
  const std::vector<ChunkRecord> records = s->GetChunks(ids).value();
  for (const auto& r : records) EXPECT_NE(r.text.find(" and "), std::string::npos) << r.text;
  EXPECT_EQ(s->SearchBm25(c, "the", 3)->size(), 3u);  // a single word is never dropped
}

}  // namespace
}  // namespace qwenmux::rag
