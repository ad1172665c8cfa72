// Bad adapters get a clear error naming the problem (and the model stays usable): wrong base
// shape, wrong architecture, truncated files, rank mismatches, unknown tensors and target
// modules, corrupt safetensors headers. The bad files are made in a temporary directory from the
// good ones.
#include <gtest/gtest.h>

#include <cstring>
#include <iostream>
#include <random>

#include <nlohmann/json.hpp>

#include "engine/lora.h"
#include "gguf/safetensors.h"
#include "lora/lora_util.h"

namespace qwenmux::engine {
namespace {

using namespace qwenmux::testing;

// Loads `path` as an adapter of the tiny model, expects failure and returns the message.
std::string LoadError(engine::Model& m, const std::string& path) {
  auto id = m.LoadAdapter(path);
  EXPECT_FALSE(id.ok()) << path << " loaded";
  return id.ok() ? "" : id.status().message();
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << (msg)

class LoraErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    m_ = LoadLoraBase();
    ASSERT_NE(m_, nullptr);
  }
  void TearDown() override {
    // The model still takes a good adapter and runs.
    auto id = m_->LoadAdapter(kLoraGguf);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    GenerateOptions o;
    o.max_tokens = 2;
    o.adapter = *id;
    EXPECT_TRUE(m_->Generate(m_->tokenizer().Encode("hi"), o).ok());
  }
  std::unique_ptr<engine::Model> m_;
  LoraTempDir tmp_;
};

TEST_F(LoraErrors, WrongBaseShape) {
  auto t = ReadLoraGguf(kLoraGguf);
  ASSERT_TRUE(t.ok());
  auto& p = t->pairs[0].p;
  p.in /= 2;
  p.a = p.a.first(static_cast<size_t>(p.rank * p.in));
  ASSERT_TRUE(WriteLoraGguf(*t, tmp_ / "shape.gguf").ok());
  const std::string e = LoadError(*m_, tmp_ / "shape.gguf");
  EXPECT_HAS(e, "does not fit the model's tensor");
  EXPECT_HAS(e, fmt::format("blk.{}.{}.weight", t->pairs[0].layer, runtime::LoraTargetGgufName(t->pairs[0].target)));
}

TEST_F(LoraErrors, WrongArchitectureAndLayer) {
  auto t = ReadLoraGguf(kLoraGguf);
  ASSERT_TRUE(t.ok());
  t->architecture = "llama";
  ASSERT_TRUE(WriteLoraGguf(*t, tmp_ / "arch.gguf").ok());
  EXPECT_HAS(LoadError(*m_, tmp_ / "arch.gguf"), "adapter for architecture llama");
  t->architecture = "qwen3";
  t->pairs[0].layer = 99;
  ASSERT_TRUE(WriteLoraGguf(*t, tmp_ / "layer.gguf").ok());
  EXPECT_HAS(LoadError(*m_, tmp_ / "layer.gguf"), "layer 99 but the model has");
  // The tiny MoE model is another architecture.
  auto moe = engine::Model::Load(ModelPath("tiny-moe.q4_k_m.gguf"), [] {
    LoadOptions lo;
    lo.n_ctx = 64;
    lo.n_threads = 1;
    lo.device = runtime::DeviceChoice::kCpu;
    return lo;
  }());
  ASSERT_TRUE(moe.ok());
  EXPECT_HAS(LoadError(**moe, kLoraGguf), "the model");
}

TEST_F(LoraErrors, TruncatedAndNotAnAdapter) {
  const std::string bytes = ReadBytes(kLoraGguf);
  WriteBytes(tmp_ / "trunc.gguf", bytes.substr(0, bytes.size() - 1000));
  const std::string e = LoadError(*m_, tmp_ / "trunc.gguf");
  EXPECT_HAS(e, "trunc.gguf");
  EXPECT_HAS(LoadError(*m_, kLoraBase), "general.type");
  EXPECT_HAS(LoadError(*m_, tmp_ / "missing.gguf"), "missing.gguf");
}

TEST_F(LoraErrors, RankMismatchUnknownTensorAndMissingHalf) {
  RewriteAdapter(kLoraGguf, tmp_ / "rank.gguf", [](std::vector<RawTensor>& ts, gguf::Writer&) {
    for (auto& t : ts) {
      if (t.name == "blk.0.attn_q.weight.lora_b") {  // ne [8, out] -> [4, out]
        std::vector<float> d;
        for (uint64_t o = 0; o < t.ne[1]; ++o) d.insert(d.end(), t.data.begin() + o * 8, t.data.begin() + o * 8 + 4);
        t.ne[0] = 4;
        t.data = d;
      }
    }
  });
  const std::string e = LoadError(*m_, tmp_ / "rank.gguf");
  EXPECT_HAS(e, "rank mismatch");
  EXPECT_HAS(e, "blk.0.attn_q.weight.lora_b");
  RewriteAdapter(kLoraGguf, tmp_ / "unknown.gguf", [](std::vector<RawTensor>& ts, gguf::Writer&) {
    ts.push_back({"blk.0.attn_norm.weight.lora_a", {256, 8}, std::vector<float>(256 * 8)});
  });
  EXPECT_HAS(LoadError(*m_, tmp_ / "unknown.gguf"), "unknown tensor blk.0.attn_norm.weight.lora_a");
  RewriteAdapter(kLoraGguf, tmp_ / "half.gguf", [](std::vector<RawTensor>& ts, gguf::Writer&) {
    std::erase_if(ts, [](const RawTensor& t) { return t.name == "blk.1.ffn_up.weight.lora_b"; });
  });
  EXPECT_HAS(LoadError(*m_, tmp_ / "half.gguf"), "layer 1 ffn_up: lora_a without lora_b");
}

// A copy of the PEFT directory with its config edited and its safetensors bytes replaced.
std::string PeftCopy(const LoraTempDir& tmp, const std::string& name, const std::function<void(nlohmann::json&)>& cfg,
                     const std::function<void(std::string&)>& st) {
  const std::string dir = tmp / name;
  std::filesystem::create_directories(dir);
  auto j = nlohmann::json::parse(ReadBytes(kLoraPeft + "/adapter_config.json"));
  cfg(j);
  WriteBytes(dir + "/adapter_config.json", j.dump());
  std::string bytes = ReadBytes(kLoraPeft + "/adapter_model.safetensors");
  st(bytes);
  WriteBytes(dir + "/adapter_model.safetensors", bytes);
  return dir;
}

uint64_t HeaderLen(const std::string& b) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(b[static_cast<size_t>(i)]);
  return n;
}

TEST_F(LoraErrors, PeftConfigProblems) {
  auto keep = [](std::string&) {};
  EXPECT_HAS(LoadError(*m_, PeftCopy(tmp_, "lm", [](auto& j) { j["target_modules"].push_back("lm_head"); }, keep)),
             "target module \"lm_head\" is not supported");
  EXPECT_HAS(LoadError(*m_, PeftCopy(tmp_, "r4", [](auto& j) { j["r"] = 4; }, keep)), "rank mismatch");
  EXPECT_HAS(LoadError(*m_, PeftCopy(tmp_, "dora", [](auto& j) { j["use_dora"] = true; }, keep)), "use_dora");
  EXPECT_HAS(LoadError(*m_, PeftCopy(tmp_, "noalpha", [](auto& j) { j.erase("lora_alpha"); }, keep)), "lora_alpha");
}

TEST_F(LoraErrors, CorruptSafetensors) {
  auto same = [](nlohmann::json&) {};
  // Header length past the end of the file.
  EXPECT_HAS(LoadError(*m_, PeftCopy(tmp_, "hl", same, [](std::string& b) { b[2] = 0x10; })), "ends past the end of the file");
  // Not JSON.
  EXPECT_HAS(LoadError(*m_, PeftCopy(tmp_, "json", same, [](std::string& b) { b[8] = '['; b[9] = '}'; })), "not valid JSON");
  // Truncated data section.
  EXPECT_HAS(LoadError(*m_, PeftCopy(tmp_, "trunc", same, [](std::string& b) { b.resize(b.size() - 100); })),
             "ends past the end of the data section");
  // A tensor's offsets that do not match its shape.
  EXPECT_HAS(LoadError(*m_, PeftCopy(tmp_, "off", same, [](std::string& b) {
               const size_t at = b.find("\"data_offsets\":[0,24576]");
               ASSERT_NE(at, std::string::npos);
               b.replace(at, 24, "\"data_offsets\":[0,24572]");
             })),
             "bytes of data for");
  // An unknown tensor name.
  EXPECT_HAS(LoadError(*m_, PeftCopy(tmp_, "name", same, [](std::string& b) {
               const size_t at = b.find("layers.0.mlp.down_proj.lora_A");
               ASSERT_NE(at, std::string::npos);
               b.replace(at, 29, "layers.0.mlp.down_proj.lora_X");
             })),
             "unknown tensor base_model.model.model.layers.0.mlp.down_proj.lora_X.weight");
}

// Random corruption of the header (a small in-test fuzz; fuzz/safetensors_fuzz.cc is the real one):
// every mutation parses or fails with a Status, never crashes.
TEST(Safetensors, MutatedHeadersNeverCrash) {
  const std::string good = ReadBytes(kLoraPeft + "/adapter_model.safetensors");
  ASSERT_GT(good.size(), 8u);
  const size_t header_end = 8 + HeaderLen(good);
  auto ok = gguf::SafetensorsFile::Parse({reinterpret_cast<const uint8_t*>(good.data()), good.size()});
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->tensors().size(), 28u);  // 2 layers x 7 projections x (A, B)
  std::mt19937 rng(7);
  int parsed = 0;
  for (int it = 0; it < 3000; ++it) {
    std::string b = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % header_end;
      switch (rng() % 3) {
        case 0: b[at] = static_cast<char>(rng()); break;                       // any byte
        case 1: b[at] = "0123456789[]{},:\"-e."[rng() % 19]; break;           // JSON-ish
        case 2: b.resize(std::max<size_t>(1, rng() % b.size())); break;       // truncation
      }
      if (b.size() <= at) break;
    }
    auto f = gguf::SafetensorsFile::Parse({reinterpret_cast<const uint8_t*>(b.data()), b.size()});
    if (!f.ok()) {
      EXPECT_FALSE(f.status().message().empty());
      continue;
    }
    ++parsed;
    for (const auto& t : f->tensors()) {
      ASSERT_LE(t.end, b.size());
      (void)f->ToF32(t);
    }
  }
  std::cout << parsed << " of 3000 mutations still parsed\n";
}

}  // namespace
}  // namespace qwenmux::engine
