// The CPU forward pass's phase profile (bench --profile): every phase of a prefill and of a decode
// step is counted once per layer with the weight bytes it read, and nothing is counted when off.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "engine/engine.h"
#include "runtime/cpu_profile.h"

namespace qwenmux::runtime {
namespace {

uint64_t TensorBytes(const engine::Model& m, const std::string& name) {
  const auto* t = m.file().FindTensor(name);
  EXPECT_NE(t, nullptr) << name;
  return t ? t->n_bytes : 0;
}

TEST(CpuProfile, CountsEveryPhaseOncePerLayerWithItsWeightBytes) {
  engine::LoadOptions lo;
  lo.n_ctx = 64;
  lo.n_threads = 2;
  lo.device = DeviceChoice::kCpu;
  auto loaded = engine::Model::Load(qwenmux::testing::ModelPath("tiny-dense.q8_0.gguf"), lo);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  engine::Model& m = **loaded;
  const auto& c = m.config();
  const int64_t layers = c.n_layer;

  std::vector<BatchEntry> prompt;
  for (int32_t i = 0; i < 12; ++i) prompt.push_back({/*token=*/100 + i, /*pos=*/i, /*seq=*/0, /*output=*/i == 11});
  const BatchEntry next{/*token=*/7, /*pos=*/12, /*seq=*/0, /*output=*/true};
  std::vector<float> logits(c.n_vocab);

  SetCpuProfile(true);
  CpuProfileReset();
  ASSERT_TRUE(m.Forward(prompt, logits.data(), nullptr).ok());
  ASSERT_TRUE(m.Forward({&next, 1}, logits.data(), nullptr).ok());
  SetCpuProfile(false);
  const auto j = nlohmann::json::parse(CpuProfileJson());

  uint64_t qkv = 0, gate_up = 0, down = 0, out = 0;
  for (int64_t l = 0; l < layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    qkv += TensorBytes(m, b + "attn_q.weight") + TensorBytes(m, b + "attn_k.weight") + TensorBytes(m, b + "attn_v.weight");
    gate_up += TensorBytes(m, b + "ffn_gate.weight") + TensorBytes(m, b + "ffn_up.weight");
    down += TensorBytes(m, b + "ffn_down.weight");
    out += TensorBytes(m, b + "attn_output.weight");
  }
  const auto* head = m.file().FindTensor("output.weight");
  const uint64_t head_bytes = head ? head->n_bytes : TensorBytes(m, "token_embd.weight");  // tied
  for (const char* part : {"prefill", "decode"}) {
    SCOPED_TRACE(part);
    const auto& p = j.at(part);
    EXPECT_EQ(p.at("steps"), 1);
    EXPECT_EQ(p.at("tokens"), std::string(part) == "prefill" ? 12 : 1);
    const auto& ph = p.at("phases");
    for (const char* name : {"qkv", "qk_norm_rope", "kv_store", "attention", "attn_out", "ffn_gate_up", "swiglu",
                             "ffn_down"}) {
      EXPECT_EQ(ph.at(name).at("calls"), layers) << name;
    }
    EXPECT_EQ(ph.at("norm").at("calls"), 2 * layers);
    EXPECT_EQ(ph.at("residual").at("calls"), 2 * layers);
    EXPECT_EQ(ph.at("embed").at("calls"), 1);
    EXPECT_EQ(ph.at("lm_head").at("calls"), 1);
    EXPECT_EQ(ph.at("qkv").at("bytes"), qkv);
    EXPECT_EQ(ph.at("ffn_gate_up").at("bytes"), gate_up);
    EXPECT_EQ(ph.at("ffn_down").at("bytes"), down);
    EXPECT_EQ(ph.at("attn_out").at("bytes"), out);
    EXPECT_EQ(ph.at("lm_head").at("bytes"), head_bytes);
    EXPECT_FALSE(ph.contains("moe"));
    EXPECT_FALSE(ph.contains("lora"));
    EXPECT_GT(ph.at("qkv").at("ms"), 0.0);
  }

  // Off: a forward pass adds nothing.
  const std::string before = CpuProfileJson();
  ASSERT_TRUE(m.Forward({&next, 1}, logits.data(), nullptr).ok());
  EXPECT_EQ(CpuProfileJson(), before);
}

}  // namespace
}  // namespace qwenmux::runtime
