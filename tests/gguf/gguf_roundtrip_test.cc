#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "base/mapped_file.h"
#include "common/testdata.h"
#include "gguf/gguf.h"

namespace qwenmux::gguf {
namespace {

using qwenmux::testing::ModelPath;

class GgufModelFiles : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufModelFiles, ReadsAndWritesBackByteIdentical) {
  const std::string in_path = ModelPath(GetParam());
  auto f = File::Open(in_path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  Writer w;
  ASSERT_TRUE(CopyLayout(*f, w).ok());
  const std::string out_path = ::testing::TempDir() + "/roundtrip.gguf";
  ASSERT_TRUE(w.Open(out_path).ok());
  for (size_t i = 0; i < f->tensors().size(); ++i) {
    ASSERT_TRUE(w.WriteTensorData(i, f->TensorData(f->tensors()[i])).ok());
  }
  ASSERT_TRUE(w.Finish().ok());
  auto a = MappedFile::Open(in_path);
  auto b = MappedFile::Open(out_path);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->size(), b->size());
  EXPECT_EQ(0, std::memcmp(a->data(), b->data(), a->size()));
  std::remove(out_path.c_str());
}

INSTANTIATE_TEST_SUITE_P(All, GgufModelFiles,
                         ::testing::Values("qwen3-vocab.gguf", "tiny-dense.q8_0.gguf",
                                           "tiny-moe.q4_k_m.gguf"));

TEST(GgufReader, TinyDenseMetadataAndTensors) {
  auto f = File::Open(ModelPath("tiny-dense.q8_0.gguf"));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->version(), 3u);
  auto arch = f->Get<std::string>("general.architecture");
  ASSERT_TRUE(arch.ok());
  EXPECT_EQ(*arch, "qwen3");
  auto blocks = f->Get<uint32_t>("qwen3.block_count");
  ASSERT_TRUE(blocks.ok()) << blocks.status().ToString();
  EXPECT_EQ(*blocks, 2u);
  EXPECT_EQ(*f->GetUInt("qwen3.embedding_length"), 256u);
  EXPECT_EQ(*f->GetUInt("qwen3.attention.key_length"), 128u);
  EXPECT_NEAR(*f->GetFloat("qwen3.rope.freq_base"), 1e6, 1);
  auto tokens = f->GetArray("tokenizer.ggml.tokens", ValueType::kString);
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ((*tokens)->items.size(), 151936u);
  const TensorInfo* q = f->FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type, TensorType::kQ8_0);
  EXPECT_EQ(q->ne[0], 256u);
  EXPECT_EQ(q->ne[1], 4u * 128u);
  EXPECT_EQ(q->n_bytes, 256u / 32 * 34 * 512);
  EXPECT_EQ(f->data_offset() % f->alignment(), 0u);
}

TEST(GgufReader, TypedLookupErrorsNameTheKey) {
  auto f = File::Open(ModelPath("tiny-dense.q8_0.gguf"));
  ASSERT_TRUE(f.ok());
  auto missing = f->Get<uint32_t>("qwen3.no_such_key");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("qwen3.no_such_key"), std::string::npos);
  auto wrong = f->Get<std::string>("qwen3.block_count");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("qwen3.block_count"), std::string::npos);
  EXPECT_NE(wrong.status().message().find("u32"), std::string::npos);
  auto opt = f->GetOptional<uint32_t>("qwen3.absent");
  ASSERT_TRUE(opt.ok());
  EXPECT_FALSE(opt->has_value());
  auto arr = f->GetArray("tokenizer.ggml.tokens", ValueType::kI32);
  EXPECT_FALSE(arr.ok());
}

TEST(GgufReader, MissingFileIsNotFound) {
  auto f = File::Open("/nonexistent/model.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kNotFound);
  EXPECT_NE(f.status().message().find("/nonexistent/model.gguf"), std::string::npos);
}

}  // namespace
}  // namespace qwenmux::gguf
