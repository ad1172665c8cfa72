// Helpers of the LoRA tests: the tiny model and its adapters, temporary copies with edits.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/testdata.h"
#include "engine/engine.h"
#include "gguf/gguf.h"

namespace qwenmux::testing {

inline const std::string kLoraBase = ModelPath("tiny-dense.q8_0.gguf");
inline const std::string kLoraGguf = ModelPath("tiny-dense.lora.gguf");
inline const std::string kLoraPeft = ModelPath("tiny-dense.lora-peft");

class LoraTempDir {
 public:
  LoraTempDir() {
    std::string tmpl = ::testing::TempDir() + "qwenmux-lora-XXXXXX";
    EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~LoraTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// One tensor of an adapter GGUF (all of the test adapter's tensors are F32).
struct RawTensor {
  std::string name;
  std::vector<uint64_t> ne;
  std::vector<float> data;
};

// Rewrites the GGUF adapter `src` into `dst` after `edit` changed its tensors (and metadata
// through the writer).
inline void RewriteAdapter(const std::string& src, const std::string& dst,
                           const std::function<void(std::vector<RawTensor>&, gguf::Writer&)>& edit) {
  auto f = gguf::File::Open(src);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  gguf::Writer w;
  for (const auto& kv : f->metadata()) w.AddKeyValue(kv.key, kv.value);
  std::vector<RawTensor> ts;
  for (const auto& t : f->tensors()) {
    ASSERT_EQ(t.type, gguf::TensorType::kF32);
    RawTensor r{t.name, {t.ne, t.ne + t.n_dims}, std::vector<float>(t.n_elements())};
    std::memcpy(r.data.data(), f->TensorData(t).data(), t.n_bytes);
    ts.push_back(std::move(r));
  }
  edit(ts, w);
  for (const auto& t : ts) ASSERT_TRUE(w.AddTensor(t.name, gguf::TensorType::kF32, t.ne).ok());
  ASSERT_TRUE(w.Open(dst).ok());
  for (size_t i = 0; i < ts.size(); ++i) {
    ASSERT_TRUE(w.WriteTensorData(i, {reinterpret_cast<const uint8_t*>(ts[i].data.data()), ts[i].data.size() * 4}).ok());
  }
  ASSERT_TRUE(w.Finish().ok());
}

inline std::unique_ptr<engine::Model> LoadLoraBase(int32_t n_seq = 1) {
  engine::LoadOptions lo;
  lo.n_ctx = 512;
  lo.n_seq = n_seq;
  lo.n_threads = 2;
  lo.device = runtime::DeviceChoice::kCpu;
  auto m = engine::Model::Load(kLoraBase, lo);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(*m) : nullptr;
}

}  // namespace qwenmux::testing
