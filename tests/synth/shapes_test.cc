// The model shape table against docs/qwen3-reference.md §1 and the Qwen3 model cards' parameter
// counts; tensor layouts and the type plan made from them.
#include <cmath>
#include <map>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "model/shapes.h"
#include "quant/quantize_model.h"

namespace qwenmux::model {
namespace {

struct Ref {
  uint32_t hidden, layers, heads, kv_heads, ff;
  bool tied;
};

// qwen3-reference.md §1.2, §1.3, §1.5 (embedding/reranker dims are those of the base model).
const std::map<std::string, Ref> kRefs = {
    {"qwen3-0.6b", {1024, 28, 16, 8, 3072, true}},   {"qwen3-1.7b", {2048, 28, 16, 8, 6144, true}},
    {"qwen3-4b", {2560, 36, 32, 8, 9728, true}},     {"qwen3-8b", {4096, 36, 32, 8, 12288, false}},
    {"qwen3-14b", {5120, 40, 40, 8, 17408, false}},  {"qwen3-32b", {5120, 64, 64, 8, 25600, false}},
    {"qwen3-30b-a3b", {2048, 48, 32, 4, 6144, false}},
    {"qwen3-embedding-0.6b", {1024, 28, 16, 8, 3072, true}},
    {"qwen3-embedding-4b", {2560, 36, 32, 8, 9728, true}},
    {"qwen3-embedding-8b", {4096, 36, 32, 8, 12288, false}},
    {"qwen3-reranker-0.6b", {1024, 28, 16, 8, 3072, true}},
    {"qwen3-reranker-4b", {2560, 36, 32, 8, 9728, true}},
    {"qwen3-reranker-8b", {4096, 36, 32, 8, 12288, false}},
};

TEST(ModelShapes, TableMatchesReference) {
  ASSERT_EQ(AllShapes().size(), kRefs.size());
  for (const ModelShape& s : AllShapes()) {
    SCOPED_TRACE(s.name);
    auto it = kRefs.find(s.name);
    ASSERT_NE(it, kRefs.end());
    const Ref& r = it->second;
    EXPECT_EQ(s.n_embd, r.hidden);
    EXPECT_EQ(s.n_layer, r.layers);
    EXPECT_EQ(s.n_head, r.heads);
    EXPECT_EQ(s.n_head_kv, r.kv_heads);
    EXPECT_EQ(s.n_ff, r.ff);
    EXPECT_EQ(s.tied, r.tied);
    EXPECT_EQ(s.head_dim, 128u);
    EXPECT_EQ(s.n_vocab, 151936u);
    EXPECT_EQ(s.rope_freq_base, 1e6f);
    EXPECT_EQ(s.rms_eps, 1e-6f);
    EXPECT_EQ(s.n_ctx_train, std::string(s.name) == "qwen3-embedding-0.6b" ? 32768u : 40960u);
    const bool moe = std::string(s.name) == "qwen3-30b-a3b";
    EXPECT_EQ(s.is_moe(), moe);
    EXPECT_STREQ(s.arch_name(), moe ? "qwen3moe" : "qwen3");
    if (moe) {
      EXPECT_EQ(s.n_expert, 128u);
      EXPECT_EQ(s.n_expert_used, 8u);
      EXPECT_EQ(s.n_ff_exp, 768u);
    }
    auto found = FindShape(s.name);
    ASSERT_TRUE(found.ok());
    EXPECT_EQ(*found, &s);
  }
  auto upper = FindShape("Qwen3-8B");
  ASSERT_TRUE(upper.ok());
  EXPECT_STREQ((*upper)->name, "qwen3-8b");
}

TEST(ModelShapes, ParameterCountsMatchModelCards) {
  // Model cards: "Number of Parameters" and "(Non-Embedding)", in billions (rounded there, so 2.5%).
  struct Card {
    const char* name;
    double total, non_embedding, active;
  };
  const Card cards[] = {
      {"qwen3-0.6b", 0.6, 0.44, 0.6},   {"qwen3-1.7b", 1.7, 1.4, 1.7},   {"qwen3-4b", 4.0, 3.6, 4.0},
      {"qwen3-8b", 8.2, 6.95, 8.2},     {"qwen3-14b", 14.8, 13.2, 14.8}, {"qwen3-32b", 32.8, 31.2, 32.8},
      {"qwen3-30b-a3b", 30.5, 29.9, 3.3},
  };
  for (const Card& c : cards) {
    SCOPED_TRACE(c.name);
    auto s = FindShape(c.name);
    ASSERT_TRUE(s.ok());
    const ParameterCounts p = CountParameters(**s);
    EXPECT_NEAR(p.total / 1e9, c.total, 0.025 * c.total);
    EXPECT_NEAR(p.non_embedding / 1e9, c.non_embedding, 0.025 * c.non_embedding);
    EXPECT_NEAR(p.active / 1e9, c.active, 0.025 * c.active);
    EXPECT_EQ(p.total, p.embedding + p.non_embedding);
  }
  // Tied 1.7B counts its 311M-row embedding once; an untied one would be ~2.03B.
  const ParameterCounts p17 = CountParameters(**FindShape("qwen3-1.7b"));
  EXPECT_EQ(p17.embedding, 151936ull * 2048);
}

TEST(ModelShapes, TensorLayouts) {
  auto names = [](const std::vector<gguf::TensorInfo>& t) {
    std::set<std::string> n;
    for (const auto& x : t) n.insert(x.name);
    return n;
  };
  const ModelShape& s8 = **FindShape("qwen3-8b");
  auto t8 = TensorLayout(s8);
  EXPECT_EQ(t8.size(), 3u + 36u * 11u);
  EXPECT_TRUE(names(t8).count("output.weight"));
  for (const auto& t : t8) {
    if (t.name == "blk.35.attn_q.weight") {
      EXPECT_EQ(t.ne[0], 4096u);
      EXPECT_EQ(t.ne[1], 4096u);
    }
    if (t.name == "blk.0.attn_k.weight") {
      EXPECT_EQ(t.ne[1], 1024u);
    }
    if (t.name == "blk.0.ffn_down.weight") {
      EXPECT_EQ(t.ne[0], 12288u);
      EXPECT_EQ(t.ne[1], 4096u);
    }
  }
  // 0.6B: q width 16·128 = 2048 ≠ hidden 1024.
  for (const auto& t : TensorLayout(**FindShape("qwen3-0.6b"), 2)) {
    if (t.name == "blk.1.attn_output.weight") {
      EXPECT_EQ(t.ne[0], 2048u);
      EXPECT_EQ(t.ne[1], 1024u);
    }
    EXPECT_EQ(t.name.find("blk.2."), std::string::npos);
  }
  const auto moe = TensorLayout(**FindShape("qwen3-30b-a3b"), 1);
  for (const auto& t : moe) {
    if (t.name == "blk.0.ffn_gate_exps.weight") {
      EXPECT_EQ(t.n_dims, 3u);
      EXPECT_EQ(t.ne[0], 2048u);
      EXPECT_EQ(t.ne[1], 768u);
      EXPECT_EQ(t.ne[2], 128u);
    }
    if (t.name == "blk.0.ffn_down_exps.weight") {
      EXPECT_EQ(t.ne[0], 768u);
    }
    if (t.name == "blk.0.ffn_gate_inp.weight") {
      EXPECT_EQ(t.ne[1], 128u);
    }
    if (t.name == "blk.0.attn_v.weight") {
      EXPECT_EQ(t.ne[1], 512u);
    }
  }
  const auto emb = names(TensorLayout(**FindShape("qwen3-embedding-8b"), 1));
  EXPECT_FALSE(emb.count("output.weight"));
  EXPECT_FALSE(emb.count("cls.output.weight"));
  const auto rr = TensorLayout(**FindShape("qwen3-reranker-8b"), 1);
  EXPECT_FALSE(names(rr).count("output.weight"));
  EXPECT_EQ(rr.back().name, "cls.output.weight");
  EXPECT_EQ(rr.back().ne[0], 4096u);
  EXPECT_EQ(rr.back().ne[1], 2u);
}

TEST(ModelShapes, TypePlanFromLayout) {
  using gguf::TensorType;
  const ModelShape& s = **FindShape("qwen3-0.6b");
  const auto layout = TensorLayout(s);
  const auto plan = quant::PlanQuantization(layout, 0, quant::FileType::kQ4_K_M);
  ASSERT_EQ(plan.size(), layout.size());
  int q6_attn_v = 0;
  for (const auto& p : plan) {
    if (p.name.find("norm") != std::string::npos) {
      EXPECT_EQ(p.to, TensorType::kF32) << p.name;
    }
    if (p.name == "token_embd.weight") {
      EXPECT_EQ(p.to, TensorType::kQ6_K);  // tied: acts as output
    }
    if (p.name == "blk.5.attn_q.weight") {
      EXPECT_EQ(p.to, TensorType::kQ4_K);
    // llama.cpp's use_more_bits for 28 layers: 0..2, 24..27 and every third from 5.
    }
    if (p.name == "blk.0.ffn_down.weight" || p.name == "blk.5.ffn_down.weight" ||
        p.name == "blk.27.ffn_down.weight") {
      EXPECT_EQ(p.to, TensorType::kQ6_K) << p.name;
    }
    if (p.name == "blk.4.ffn_down.weight") {
      EXPECT_EQ(p.to, TensorType::kQ4_K);
    }
    if (p.name.find("attn_v") != std::string::npos && p.to == TensorType::kQ6_K) ++q6_attn_v;
  }
  EXPECT_EQ(q6_attn_v, 14);  // layers 0-2, 5, 8, ..., 23, 24-27
  const auto moe = quant::PlanQuantization(TensorLayout(**FindShape("qwen3-30b-a3b"), 2), 128,
                                           quant::FileType::kQ4_K_M);
  for (const auto& p : moe) {
    if (p.name.find("ffn_gate_inp") != std::string::npos) {
      EXPECT_EQ(p.to, TensorType::kF32);
    }
    if (p.name == "output.weight") {
      EXPECT_EQ(p.to, TensorType::kQ6_K);
    }
    if (p.name == "token_embd.weight") {
      EXPECT_EQ(p.to, TensorType::kQ4_K);
    // ffn_down_exps rows are 768 = 3·256 wide: K-quants fit.
    }
    if (p.name == "blk.0.ffn_gate_exps.weight") {
      EXPECT_EQ(p.to, TensorType::kQ4_K);
    }
  }
}

}  // namespace
}  // namespace qwenmux::model
