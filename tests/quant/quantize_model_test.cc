// Whole-model quantization: the type mix against the reference quantizer's own Q4_K_M file,
// byte-identity where nothing changes, and value fidelity where tensors are re-encoded.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/mapped_file.h"
#include "common/run_command.h"
#include "common/testdata.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "quant/quantize_model.h"

namespace qwenmux::quant {
namespace {

using gguf::TensorType;
using qwenmux::testing::ModelPath;

std::vector<float> Dequant(const gguf::File& f, const gguf::TensorInfo& t) {
  std::vector<float> y(t.n_elements());
  const Status s = DequantizeTensor(t.type, f.TensorData(t).data(), y.data(),
                                    static_cast<int64_t>(t.rows()), static_cast<int64_t>(t.ne[0]), nullptr);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return y;
}

// The reference quantizer made tiny-moe.q4_k_m.gguf from F16 weights; planning Q4_K_M on it
// must choose exactly the types it chose (Q6_K tied embeddings, Q8_0 attn_k/attn_v for 8
// experts, Q5_K attn_output, Q6_K ffn_down in the last layer, F32 router and norms).
TEST(QuantizeModel, PlanMatchesReferenceQ4KMMix) {
  for (auto [file, ftype] : {std::pair{"tiny-moe.q4_k_m.gguf", FileType::kQ4_K_M},
                             std::pair{"tiny-dense.q8_0.gguf", FileType::kQ8_0}}) {
    auto f = gguf::File::Open(ModelPath(file));
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    auto plan = PlanQuantization(*f, ftype);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    ASSERT_EQ(plan->size(), f->tensors().size());
    for (size_t i = 0; i < plan->size(); ++i) {
      EXPECT_EQ((*plan)[i].to, f->tensors()[i].type)
          << file << " " << (*plan)[i].name << ": planned " << gguf::TensorTypeName((*plan)[i].to)
          << ", reference " << gguf::TensorTypeName(f->tensors()[i].type);
    }
  }
}

TEST(QuantizeModel, DenseQ4KMMixAndValues) {
  auto f = gguf::File::Open(ModelPath("tiny-dense.q8_0.gguf"));
  ASSERT_TRUE(f.ok());
  auto plan = PlanQuantization(*f, FileType::kQ4_K_M);
  ASSERT_TRUE(plan.ok());
  for (const auto& p : *plan) {
    TensorType want = TensorType::kQ4_K;
    if (p.name.find("norm") != std::string::npos) want = TensorType::kF32;
    if (p.name == "token_embd.weight") want = TensorType::kQ6_K;  // tied: acts as output
    // 2 layers: use_more_bits is true for layer 1 only.
    if (p.name == "blk.1.attn_v.weight" || p.name == "blk.1.ffn_down.weight") want = TensorType::kQ6_K;
    EXPECT_EQ(p.to, want) << p.name;
  }
  const std::string out = ::testing::TempDir() + "/dense-q4km.gguf";
  QuantizeModelOptions opts;
  opts.ftype = FileType::kQ4_K_M;
  opts.threads = 2;
  opts.allow_requantize = true;  // the source is Q8_0
  size_t calls = 0;
  opts.progress = [&](size_t, size_t, const TensorPlan&) { ++calls; };
  Status s = QuantizeModel(ModelPath("tiny-dense.q8_0.gguf"), out, opts);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(calls, f->tensors().size());
  auto g = gguf::File::Open(out);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(*g->Get<uint32_t>("general.file_type"), 15u);
  EXPECT_EQ(g->metadata().size(), f->metadata().size());
  for (size_t i = 0; i < plan->size(); ++i) {
    const auto& a = f->tensors()[i];
    const auto& b = g->tensors()[i];
    ASSERT_EQ(b.name, a.name);
    EXPECT_EQ(b.type, (*plan)[i].to);
    const auto x = Dequant(*f, a), y = Dequant(*g, b);
    double err = 0, ref = 0;
    for (size_t k = 0; k < x.size(); ++k) {
      err += (x[k] - y[k]) * static_cast<double>(x[k] - y[k]);
      ref += x[k] * static_cast<double>(x[k]);
    }
    const double rel = std::sqrt(err / ref);
    EXPECT_LT(rel, b.type == TensorType::kQ4_K ? 0.12 : 0.05) << a.name;
    // Wiring check: each re-encoded row equals QuantizeRow of the source's dequantized row (the
    // error bound above is the independent check; QuantizeRow itself is tested against an
    // independent decoder in quant_test).
    if (b.type != a.type) {
      std::vector<uint8_t> q(RowSize(b.type, static_cast<int64_t>(a.ne[0])));
      ASSERT_TRUE(QuantizeRow(b.type, x.data(), q.data(), static_cast<int64_t>(a.ne[0])).ok());
      EXPECT_EQ(0, std::memcmp(q.data(), g->TensorData(b).data(), q.size())) << a.name;
    }
  }
  std::remove(out.c_str());
}

// Nothing to change: Q8_0 -> q8_0 writes the input file back byte for byte.
TEST(QuantizeModel, SameTypeIsByteIdentical) {
  const std::string out = ::testing::TempDir() + "/dense-q8.gguf";
  QuantizeModelOptions opts;
  opts.ftype = FileType::kQ8_0;
  ASSERT_TRUE(QuantizeModel(ModelPath("tiny-dense.q8_0.gguf"), out, opts).ok());
  auto a = MappedFile::Open(ModelPath("tiny-dense.q8_0.gguf"));
  auto b = MappedFile::Open(out);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->size(), b->size());
  EXPECT_EQ(0, std::memcmp(a->data(), b->data(), a->size()));
  std::remove(out.c_str());
}

TEST(QuantizeModel, Errors) {
  EXPECT_EQ(ParseFileType("q3_k_s").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseFileType("Q4_K_M"), FileType::kQ4_K_M);
  QuantizeModelOptions opts;
  const std::string out = ::testing::TempDir() + "/never.gguf";
  Status s = QuantizeModel(ModelPath("does-not-exist.gguf"), out, opts);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("does-not-exist"), std::string::npos) << s.message();
  // Output directory that does not exist: an error, and no file appears.
  s = QuantizeModel(ModelPath("tiny-dense.q8_0.gguf"), "/nonexistent-dir/x.gguf", opts);
  EXPECT_FALSE(s.ok());
}

TEST(QuantizeCli, CommandLine) {
  const std::string out = ::testing::TempDir() + "/cli-q6k.gguf";
  const std::string bin = ::qwenmux::testing::QwenmuxBinary();
  int rc = std::system((bin + " quantize " + ModelPath("tiny-dense.q8_0.gguf") + " " + out +
                        " q6_k --threads 2 --allow-requantize 2>/dev/null").c_str());
  ASSERT_EQ(rc, 0);
  auto g = gguf::File::Open(out);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(*g->Get<uint32_t>("general.file_type"), 18u);
  for (const auto& t : g->tensors()) {
    EXPECT_EQ(t.type, t.n_dims >= 2 ? TensorType::kQ6_K : TensorType::kF32) << t.name;
  }
  std::remove(out.c_str());
  rc = std::system((bin + " quantize " + ModelPath("tiny-dense.q8_0.gguf") + " " + out +
                    " q3_k 2>/dev/null").c_str());
  EXPECT_NE(rc, 0);
  EXPECT_FALSE(MappedFile::Open(out).ok());
}

std::string ReadAll(const std::string& path) {
  std::string s;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    std::fclose(f);
  }
  return s;
}

// `quantize a.gguf a.gguf q4_0` used to replace the original with a lossy file and succeed. The
// output is refused when it is the input under any name: the same path, a path through `.`, a
// symlink and a hard link; the input stays byte for byte as it was.
TEST(QuantizeCli, RefusesOutputThatIsTheInput) {
  const std::string dir = ::testing::TempDir() + "/quant-same-inode";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string in = dir + "/a.gguf";
  std::filesystem::copy_file(ModelPath("tiny-dense.q8_0.gguf"), in);
  const std::string before = ReadAll(in);
  ASSERT_FALSE(before.empty());
  std::filesystem::create_hard_link(in, dir + "/hard.gguf");
  std::filesystem::create_symlink(in, dir + "/sym.gguf");
  QuantizeModelOptions opts;
  opts.ftype = FileType::kQ4_0;
  opts.allow_requantize = true;
  for (const std::string& out : {in, dir + "/./a.gguf", dir + "/hard.gguf", dir + "/sym.gguf"}) {
    Status s = QuantizeModel(in, out, opts);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << out << ": " << s.ToString();
    EXPECT_NE(s.message().find("is the input file"), std::string::npos) << s.message();
    EXPECT_TRUE(ReadAll(in) == before) << out << " changed the input";
  }
  // The command line says so and exits non-zero.
  const auto r = qwenmux::testing::RunQwenmux("quantize " + in + " " + dir + "/hard.gguf q4_0 --allow-requantize", true);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("is the input file"), std::string::npos) << r.out;
  EXPECT_TRUE(ReadAll(in) == before);
  std::filesystem::remove_all(dir);
}

// Quantizing an already-quantized file (Q8_0 -> Q4_K_M) needs --allow-requantize; types that do
// not change (Q8_0 -> q8_0) and the flag itself are fine.
TEST(QuantizeCli, RequantizeNeedsFlag) {
  const std::string out = ::testing::TempDir() + "/requant.gguf";
  std::remove(out.c_str());
  QuantizeModelOptions opts;
  opts.ftype = FileType::kQ4_K_M;
  Status s = QuantizeModel(ModelPath("tiny-dense.q8_0.gguf"), out, opts);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("already quantized (q8_0)"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("--allow-requantize"), std::string::npos) << s.message();
  EXPECT_FALSE(MappedFile::Open(out).ok());

  auto r = qwenmux::testing::RunQwenmux("quantize " + ModelPath("tiny-dense.q8_0.gguf") + " " + out + " q4_0", true);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("--allow-requantize"), std::string::npos) << r.out;
  EXPECT_FALSE(MappedFile::Open(out).ok());

  r = qwenmux::testing::RunQwenmux("quantize " + ModelPath("tiny-dense.q8_0.gguf") + " " + out +
                                  " q4_0 --allow-requantize", true);
  EXPECT_EQ(r.code, 0) << r.out;
  auto g = gguf::File::Open(out);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(*g->Get<uint32_t>("general.file_type"), 2u);
  std::remove(out.c_str());
}

}  // namespace
}  // namespace qwenmux::quant
