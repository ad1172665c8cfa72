// Embedder (the RAG pipeline's text -> vector path) against the reference embeddings of
// tiny-dense.hf-q8_0.json (transformers, float32): the query goes through EmbedQuery (instruction
// prefix), the documents through EmbedDocuments; each cosine with the reference must be at least
// 0.999, the golden test's bar for embeddings (measured: >= 0.99985).
#include <cmath>
#include <cstdio>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/mapped_file.h"
#include "common/testdata.h"
#include "rag/embedder.h"
#include "rag_test_util.h"

namespace qwenmux::rag {
namespace {

double Cosine(const std::vector<float>& a, const std::vector<double>& b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    dot += a[i] * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += b[i] * b[i];
  }
  return dot / std::sqrt(na * nb);
}

TEST(EmbedderReference, QueryAndDocumentsMatchTransformers) {
  auto text = ReadFileToString(qwenmux::testing::RefPath("tiny-dense.hf-q8_0.json"));
  ASSERT_TRUE(text.ok());
  const auto ref = nlohmann::json::parse(*text);
  const auto& e = ref["embeddings"];
  ASSERT_EQ(e.size(), 3u);
  const std::string prefix = "Instruct: " + std::string(kDefaultRetrievalTask) + "\nQuery:";
  const std::string query_text = e[0]["text"].get<std::string>();
  ASSERT_TRUE(query_text.starts_with(prefix)) << query_text;
  auto emb = Embedder::Create(&qwenmux::testing::TinyModel(), qwenmux::testing::kTinyDense);
  ASSERT_TRUE(emb.ok()) << emb.status().ToString();
  ASSERT_EQ(emb->dim(), 256);

  auto q = emb->EmbedQuery(query_text.substr(prefix.size()));
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  const double qc = Cosine(*q, e[0]["embedding"].get<std::vector<double>>());
  std::printf("query cosine %.6f\n", qc);
  EXPECT_GE(qc, 0.999);

  const std::vector<std::string> docs = {e[1]["text"].get<std::string>(), e[2]["text"].get<std::string>()};
  int64_t tokens = 0;
  auto d = emb->EmbedDocuments(docs, 32, &tokens);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ(d->size(), 2u);
  EXPECT_EQ(tokens, static_cast<int64_t>(e[1]["ids"].size() + e[2]["ids"].size()));  // ids incl. <|endoftext|>
  for (size_t i = 0; i < 2; ++i) {
    const double c = Cosine((*d)[i], e[i + 1]["embedding"].get<std::vector<double>>());
    std::printf("document %zu cosine %.6f\n", i, c);
    EXPECT_GE(c, 0.999) << docs[i];
  }
  // The two documents are told apart (not one vector for everything).
  EXPECT_LT(Cosine((*d)[0], e[2]["embedding"].get<std::vector<double>>()), 0.99);
}

}  // namespace
}  // namespace qwenmux::rag
