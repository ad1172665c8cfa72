#include "orchestrator/catalog/catalog.h"

#include <set>

#include <gtest/gtest.h>

namespace qwenmux::orchestrator {
namespace {

TEST(OrchestratorCatalog, EveryShapeHasEntriesThatPointIntoTheShapeTable) {
  std::set<const model::ModelShape*> seen;
  std::set<std::string> names;
  for (const CatalogEntry& e : Catalog()) {
    ASSERT_NE(e.shape, nullptr) << e.name;
    // One table of shapes: the catalog points into model/shapes.h, never a copy.
    EXPECT_EQ(*model::FindShape(e.shape->name), e.shape);
    seen.insert(e.shape);
    EXPECT_TRUE(names.insert(e.name).second) << "duplicate " << e.name;
    if (!e.hf_repo.empty()) {
      EXPECT_TRUE(e.hf_file.ends_with(".gguf")) << e.name;
      EXPECT_EQ(QuantizationFromFileName(e.hf_file), e.quantization) << e.hf_file;
    }
  }
  EXPECT_EQ(seen.size(), model::AllShapes().size());
}

TEST(OrchestratorCatalog, OfficialNamesAndFiles) {
  const CatalogEntry* e = *FindInCatalog("qwen3:8b-q8_0");
  EXPECT_EQ(e->hf_repo, "Qwen/Qwen3-8B-GGUF");
  EXPECT_EQ(e->hf_file, "Qwen3-8B-Q8_0.gguf");
  EXPECT_EQ(e->role, ModelRole::kChat);
  e = *FindInCatalog("qwen3:1.7b-q4_k_m");
  EXPECT_EQ(e->hf_file, "Qwen3-1.7B-Q4_K_M.gguf");
  e = *FindInCatalog("QWEN3:30B-A3B-Q8_0");
  EXPECT_EQ(e->hf_repo, "Qwen/Qwen3-30B-A3B-GGUF");
  EXPECT_EQ(e->hf_file, "Qwen3-30B-A3B-Q8_0.gguf");
  e = *FindInCatalog("qwen3-embedding:0.6b-q8_0");
  EXPECT_EQ(e->hf_repo, "Qwen/Qwen3-Embedding-0.6B-GGUF");
  EXPECT_EQ(e->hf_file, "Qwen3-Embedding-0.6B-Q8_0.gguf");
  EXPECT_TRUE(e->file_name_verified);
  EXPECT_EQ(e->role, ModelRole::kEmbedding);
  EXPECT_EQ(e->context_length, 32768u);  // Qwen3-Embedding-0.6B config.json max_position_embeddings
  EXPECT_EQ((*FindInCatalog("qwen3-reranker:4b-q8_0"))->role, ModelRole::kReranker);
  // No such model as Qwen3-7B: the error says so and offers nothing made up.
  Result<const CatalogEntry*> bad = FindInCatalog("qwen3:7b");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kNotFound);
  bad = FindInCatalog("qwen3:8b-q3_k");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("qwen3:8b-q8_0"), std::string::npos) << bad.status().message();
}

TEST(OrchestratorCatalog, TiersAndDefaultQuantization) {
  EXPECT_EQ((*FindInCatalog("qwen3-fast"))->name, "qwen3:1.7b-q4_k_m");
  EXPECT_EQ((*FindInCatalog("qwen3-balanced"))->name, "qwen3:8b-q8_0");
  EXPECT_EQ((*FindInCatalog("qwen3-quality"))->name, "qwen3:14b-q8_0");
  EXPECT_EQ((*FindInCatalog("qwen3-max"))->name, "qwen3:30b-a3b-q8_0");
  EXPECT_EQ((*FindInCatalog("qwen3:8b"))->name, "qwen3:8b-q4_k_m");
  EXPECT_EQ((*FindInCatalog("qwen3-embedding:4b"))->name, "qwen3-embedding:4b-q8_0");
  for (const Tier& t : DefaultTiers()) EXPECT_TRUE(FindInCatalog(t.target).ok()) << t.target;
}

// Parameter counts against the model cards (Qwen3-8B: 8.2B; Qwen3-30B-A3B: 30.5B total, 3.3B
// activated; Qwen3-0.6B: 0.6B with 0.44B non-embedding).
TEST(OrchestratorCatalog, ParameterCountsMatchModelCards) {
  auto p8 = (*FindInCatalog("qwen3:8b-q8_0"))->params();
  EXPECT_NEAR(p8.total / 1e9, 8.2, 0.05);
  auto moe = (*FindInCatalog("qwen3-max"))->params();
  EXPECT_NEAR(moe.total / 1e9, 30.5, 0.1);
  EXPECT_NEAR(moe.active / 1e9, 3.3, 0.1);
  auto p06 = (*FindInCatalog("qwen3:0.6b-q8_0"))->params();
  EXPECT_NEAR(p06.non_embedding / 1e9, 0.44, 0.01);
  // Chat models: 40960 in the GGUF, 131072 with YaRN per the cards.
  const CatalogEntry* e = *FindInCatalog("qwen3:14b-q8_0");
  EXPECT_EQ(e->context_length, 40960u);
  EXPECT_EQ(e->yarn_context_length, 131072u);
}

TEST(OrchestratorCatalog, QuantizationFromFileName) {
  EXPECT_EQ(QuantizationFromFileName("Qwen3-8B-Q4_K_M.gguf"), "Q4_K_M");
  EXPECT_EQ(QuantizationFromFileName("qwen3-reranker-0.6b-q8_0.gguf"), "Q8_0");
  EXPECT_EQ(QuantizationFromFileName("Qwen3-Embedding-0.6B-f16.gguf"), "F16");
  EXPECT_EQ(QuantizationFromFileName("model-bf16.gguf"), "BF16");
  EXPECT_EQ(QuantizationFromFileName("model.gguf"), "");
  EXPECT_EQ(QuantizationFromFileName("XQ8_0.gguf"), "");
}

}  // namespace
}  // namespace qwenmux::orchestrator
