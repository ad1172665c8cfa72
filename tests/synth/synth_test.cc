// qwenmux synth: random-weight models with real Qwen3 shapes load, run and stay finite; the file
// carries the table's hyper-parameters and the vocab file's tokenizer; same seed, same bytes;
// bad input leaves no file. Models are made with 1 layer (real per-layer shapes) to stay small.
#include <algorithm>
#include <chrono>
#include <set>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/mapped_file.h"
#include "common/run_command.h"
#include "common/testdata.h"
#include "engine/engine.h"
#include "gguf/gguf.h"
#include "model/shapes.h"
#include "quant/quant.h"
#include "quant/synth_model.h"

namespace qwenmux::quant {
namespace {

namespace fs = std::filesystem;
using qwenmux::testing::ModelPath;

std::string Vocab() { return ModelPath("qwen3-vocab.gguf"); }

std::string TempFile(const std::string& name) { return ::testing::TempDir() + "/synth-" + name; }

Status Synth(const char* shape, FileType type, const std::string& out, uint64_t seed = 1, size_t threads = 2,
             uint32_t layers = 1) {
  auto s = model::FindShape(shape);
  if (!s.ok()) return s.status();
  SynthOptions o;
  o.ftype = type;
  o.vocab_path = Vocab();
  o.seed = seed;
  o.threads = threads;
  o.n_layer = layers;
  return SynthesizeModel(**s, out, o);
}

std::string ReadAll(const std::string& path) {
  auto m = MappedFile::Open(path);
  if (!m.ok()) return {};
  auto b = m->bytes();
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// No output and no temporary file beside it.
void ExpectNothingLeft(const std::string& out) {
  EXPECT_FALSE(fs::exists(out)) << out;
  const fs::path p(out);
  for (const auto& e : fs::directory_iterator(p.parent_path())) {
    EXPECT_NE(e.path().filename().string().rfind(p.filename().string() + ".tmp", 0), 0u) << e.path();
  }
}

bool ValueEq(const gguf::Value& a, const gguf::Value& b) {
  if (a.type() != b.type()) return false;
  if (a.type() != gguf::ValueType::kArray) return a.v.index() == b.v.index() && [&] {
    return std::visit(
        [&](const auto& x) -> bool {
          using X = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<X, gguf::Array>) return false;
          else return x == std::get<X>(b.v);
        },
        a.v);
  }();
  const auto& x = std::get<gguf::Array>(a.v);
  const auto& y = std::get<gguf::Array>(b.v);
  if (x.type != y.type || x.items.size() != y.items.size()) return false;
  for (size_t i = 0; i < x.items.size(); ++i) {
    if (!ValueEq(x.items[i], y.items[i])) return false;
  }
  return true;
}

bool AllFinite(const std::vector<float>& v) {
  for (float x : v) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

std::unique_ptr<engine::Model> Load(const std::string& path) {
  engine::LoadOptions lo;
  lo.n_ctx = 128;
  lo.n_threads = 2;
  auto m = engine::Model::Load(path, lo);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(m).value() : nullptr;
}

void ExpectConfigMatches(const model::ModelConfig& c, const model::ModelShape& s, uint32_t layers) {
  EXPECT_EQ(c.arch_name, s.arch_name());
  EXPECT_EQ(c.n_layer, layers);
  EXPECT_EQ(c.n_embd, s.n_embd);
  EXPECT_EQ(c.n_ff, s.n_ff);
  EXPECT_EQ(c.n_head, s.n_head);
  EXPECT_EQ(c.n_head_kv, s.n_head_kv);
  EXPECT_EQ(c.head_dim, s.head_dim);
  EXPECT_EQ(c.n_ctx_train, s.n_ctx_train);
  EXPECT_EQ(c.n_vocab, s.n_vocab);
  EXPECT_FLOAT_EQ(c.rms_eps, s.rms_eps);
  EXPECT_FLOAT_EQ(c.rope_freq_base, s.rope_freq_base);
  EXPECT_EQ(c.n_expert, s.n_expert);
  EXPECT_EQ(c.n_expert_used, s.n_expert_used);
  EXPECT_EQ(c.tied_embeddings, !s.has_output());
  EXPECT_EQ(c.pooling, s.pooling());
}

void GreedyRunIsFinite(engine::Model& m) {
  const auto prompt = m.tokenizer().Encode("The quick brown fox jumps over the lazy dog.");
  std::vector<float> logits;
  const Status s = m.Prefill(0, prompt, &logits);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(logits.size(), m.config().n_vocab);
  EXPECT_TRUE(AllFinite(logits));
  // Realistic scale: neither all equal nor astronomically large.
  float lo = logits[0], hi = logits[0];
  for (float x : logits) lo = std::min(lo, x), hi = std::max(hi, x);
  EXPECT_GT(hi - lo, 0.5f);
  EXPECT_LT(hi - lo, 1000.0f);
  engine::GenerateOptions g;
  g.sampler.temperature = 0;
  g.max_tokens = 6;
  g.stop_on_eos = false;
  auto r = m.Generate(prompt, g);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tokens.size(), 6u);
}

TEST(Synth, Dense06BOneLayerLoadsAndGenerates) {
  const std::string out = TempFile("06b.gguf");
  Status s = Synth("qwen3-0.6b", FileType::kQ8_0, out);
  ASSERT_TRUE(s.ok()) << s.ToString();
  const model::ModelShape& shape = **model::FindShape("qwen3-0.6b");
  {
    auto f = gguf::File::Open(out);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    auto vocab = gguf::File::Open(Vocab());
    ASSERT_TRUE(vocab.ok());
    // Key set and types as in the reference-toolchain files (tiny-dense.q8_0.gguf).
    auto ref = gguf::File::Open(ModelPath("tiny-dense.q8_0.gguf"));
    ASSERT_TRUE(ref.ok());
    for (const auto& kv : ref->metadata()) {
      const gguf::Value* v = f->Find(kv.key);
      ASSERT_NE(v, nullptr) << kv.key;
      EXPECT_EQ(v->type(), kv.value.type()) << kv.key;
      if (kv.key.rfind("tokenizer.", 0) == 0) {
        EXPECT_TRUE(ValueEq(*v, *vocab->Find(kv.key))) << kv.key;  // copied from the vocab file
      }
    }
    EXPECT_EQ(*f->Get<std::string>("general.architecture"), "qwen3");
    EXPECT_EQ(*f->Get<uint32_t>("general.file_type"), 7u);
    EXPECT_EQ(*f->Get<uint32_t>("general.quantization_version"), 2u);
    EXPECT_EQ(f->Find("qwen3.pooling_type"), nullptr);
    // Types follow the quantize plan: matrices Q8_0, norms F32.
    const auto layout = model::TensorLayout(shape, 1);
    ASSERT_EQ(f->tensors().size(), layout.size());
    for (size_t i = 0; i < layout.size(); ++i) {
      const auto& t = f->tensors()[i];
      EXPECT_EQ(t.name, layout[i].name);
      EXPECT_EQ(t.type, t.n_dims >= 2 ? gguf::TensorType::kQ8_0 : gguf::TensorType::kF32) << t.name;
    }
    // Norm weights near 1, matrices ~ N(0, 1/fan_in).
    const auto* norm = f->FindTensor("blk.0.attn_norm.weight");
    ASSERT_NE(norm, nullptr);
    const float* w = reinterpret_cast<const float*>(f->TensorData(*norm).data());
    double mean = 0;
    for (uint64_t i = 0; i < norm->ne[0]; ++i) mean += w[i];
    EXPECT_NEAR(mean / norm->ne[0], 1.0, 0.01);
    const auto* q = f->FindTensor("blk.0.attn_q.weight");
    std::vector<float> qf(q->n_elements());
    ASSERT_TRUE(DequantizeTensor(q->type, f->TensorData(*q).data(), qf.data(), q->rows(), q->ne[0], nullptr).ok());
    double ss = 0, sum = 0;
    for (float x : qf) ss += double{x} * x, sum += x;
    EXPECT_NEAR(ss / qf.size() * 1024.0, 1.0, 0.05);  // variance · fan_in
    EXPECT_NEAR(sum / qf.size(), 0.0, 0.001);
  }
  auto m = Load(out);
  ASSERT_NE(m, nullptr);
  ExpectConfigMatches(m->config(), shape, 1);
  GreedyRunIsFinite(*m);
  m.reset();
  std::remove(out.c_str());
}

TEST(Synth, SameSeedSameBytesWhateverTheThreads) {
  const std::string a = TempFile("seed-a.gguf"), b = TempFile("seed-b.gguf"), c = TempFile("seed-c.gguf");
  ASSERT_TRUE(Synth("qwen3-reranker-0.6b", FileType::kQ8_0, a, 42, 1).ok());
  ASSERT_TRUE(Synth("qwen3-reranker-0.6b", FileType::kQ8_0, b, 42, 2).ok());
  ASSERT_TRUE(Synth("qwen3-reranker-0.6b", FileType::kQ8_0, c, 43, 2).ok());
  const std::string fa = ReadAll(a), fb = ReadAll(b), fc = ReadAll(c);
  ASSERT_FALSE(fa.empty());
  EXPECT_TRUE(fa == fb) << "same seed, different files";
  ASSERT_EQ(fa.size(), fc.size());
  EXPECT_FALSE(fa == fc) << "different seed, same file";
  // The header is the same; only the data differs.
  auto ga = gguf::File::Open(a), gc = gguf::File::Open(c);
  ASSERT_TRUE(ga.ok() && gc.ok());
  EXPECT_EQ(fa.substr(0, ga->data_offset()), fc.substr(0, gc->data_offset()));
  for (const auto* p : {&a, &b, &c}) std::remove(p->c_str());
}

TEST(Synth, RerankerAndEmbeddingMetadataAndHeads) {
  const std::string rr = TempFile("rr.gguf"), emb = TempFile("emb.gguf");
  ASSERT_TRUE(Synth("qwen3-reranker-0.6b", FileType::kQ8_0, rr).ok());
  {
    auto f = gguf::File::Open(rr);
    ASSERT_TRUE(f.ok());
    EXPECT_EQ(*f->GetUInt("qwen3.pooling_type"), 4u);
    auto labels = f->GetArray("qwen3.classifier.output_labels", gguf::ValueType::kString);
    ASSERT_TRUE(labels.ok()) << labels.status().ToString();
    ASSERT_EQ((*labels)->items.size(), 2u);
    EXPECT_EQ(std::get<std::string>((*labels)->items[0].v), "yes");
    EXPECT_EQ(std::get<std::string>((*labels)->items[1].v), "no");
    const auto* cls = f->FindTensor("cls.output.weight");
    ASSERT_NE(cls, nullptr);
    EXPECT_EQ(cls->ne[0], 1024u);
    EXPECT_EQ(cls->ne[1], 2u);
    EXPECT_EQ(f->FindTensor("output.weight"), nullptr);
  }
  auto m = Load(rr);
  ASSERT_NE(m, nullptr);
  ExpectConfigMatches(m->config(), **model::FindShape("qwen3-reranker-0.6b"), 1);
  auto scores = m->RerankScores({m->RerankPrompt("Find it", "what is a fox", "A fox is an animal.")});
  ASSERT_TRUE(scores.ok()) << scores.status().ToString();
  ASSERT_EQ(scores->size(), 1u);
  EXPECT_GT((*scores)[0], 0.0f);
  EXPECT_LT((*scores)[0], 1.0f);
  m.reset();
  std::remove(rr.c_str());

  ASSERT_TRUE(Synth("qwen3-embedding-0.6b", FileType::kQ8_0, emb).ok());
  {
    auto f = gguf::File::Open(emb);
    ASSERT_TRUE(f.ok());
    EXPECT_EQ(*f->GetUInt("qwen3.pooling_type"), 3u);
    EXPECT_EQ(*f->GetUInt("qwen3.context_length"), 32768u);
    EXPECT_EQ(*f->Get<uint32_t>("tokenizer.ggml.eos_token_id"), 151643u);
    EXPECT_EQ(*f->Get<bool>("tokenizer.ggml.add_eos_token"), true);
  }
  m = Load(emb);
  ASSERT_NE(m, nullptr);
  auto e = m->Embed({m->tokenizer().Encode("hello world")});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  ASSERT_EQ((*e)[0].size(), 1024u);
  EXPECT_TRUE(AllFinite((*e)[0]));
  double n2 = 0;
  for (float x : (*e)[0]) n2 += double{x} * x;
  EXPECT_NEAR(n2, 1.0, 1e-3);
  m.reset();
  std::remove(emb.c_str());
}

// One real 30B-A3B layer: 128 experts of 768, router F32, 4 KV heads; q4_0 keeps it quick.
TEST(Synth, MoeOneLayerLoadsAndGenerates) {
  const std::string out = TempFile("moe.gguf");
  const auto t0 = std::chrono::steady_clock::now();
  Status s = Synth("qwen3-30b-a3b", FileType::kQ4_0, out);
  ASSERT_TRUE(s.ok()) << s.ToString();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ synth ] qwen3-30b-a3b, 1 layer, q4_0: %.1f s\n", secs);
  {
    auto f = gguf::File::Open(out);
    ASSERT_TRUE(f.ok());
    EXPECT_EQ(*f->Get<std::string>("general.architecture"), "qwen3moe");
    EXPECT_EQ(*f->GetUInt("qwen3moe.expert_count"), 128u);
    EXPECT_EQ(*f->GetUInt("qwen3moe.expert_used_count"), 8u);
    EXPECT_EQ(*f->GetUInt("qwen3moe.expert_feed_forward_length"), 768u);
    EXPECT_EQ(f->FindTensor("blk.0.ffn_gate_inp.weight")->type, gguf::TensorType::kF32);
    EXPECT_EQ(f->FindTensor("blk.0.ffn_up_exps.weight")->type, gguf::TensorType::kQ4_0);
    EXPECT_EQ(f->FindTensor("output.weight")->type, gguf::TensorType::kQ6_K);  // as llama-quantize
  }
  auto m = Load(out);
  ASSERT_NE(m, nullptr);
  ExpectConfigMatches(m->config(), **model::FindShape("qwen3-30b-a3b"), 1);
  GreedyRunIsFinite(*m);
  m.reset();
  std::remove(out.c_str());
}

TEST(Synth, BadInputGetsClearErrorsAndNoFile) {
  const std::string out = TempFile("bad.gguf");
  std::remove(out.c_str());
  auto shape = model::FindShape("qwen3-9b");
  ASSERT_FALSE(shape.ok());
  EXPECT_NE(shape.status().message().find("qwen3-9b"), std::string::npos);
  EXPECT_NE(shape.status().message().find("qwen3-0.6b"), std::string::npos);  // lists the known ones

  SynthOptions o;
  o.vocab_path = ModelPath("does-not-exist.gguf");
  o.n_layer = 1;
  Status s = SynthesizeModel(**model::FindShape("qwen3-0.6b"), out, o);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("does-not-exist"), std::string::npos) << s.message();
  ExpectNothingLeft(out);
  // A GGUF without a tokenizer is not a vocab file.
  const std::string no_tok = TempFile("no-tok.gguf");
  {
    gguf::Writer w;
    w.AddKeyValue("general.architecture", gguf::Value(std::string("qwen3")));
    ASSERT_TRUE(w.Open(no_tok).ok());
    ASSERT_TRUE(w.Finish().ok());
  }
  o.vocab_path = no_tok;
  s = SynthesizeModel(**model::FindShape("qwen3-0.6b"), out, o);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("tokenizer.ggml.tokens"), std::string::npos) << s.message();
  ExpectNothingLeft(out);
  std::remove(no_tok.c_str());
  // More layers than the model has.
  o.vocab_path = Vocab();
  o.n_layer = 29;
  s = SynthesizeModel(**model::FindShape("qwen3-0.6b"), out, o);
  EXPECT_FALSE(s.ok());
  ExpectNothingLeft(out);
  // Output directory that does not exist.
  o.n_layer = 1;
  EXPECT_FALSE(SynthesizeModel(**model::FindShape("qwen3-0.6b"), "/nonexistent-dir/x.gguf", o).ok());
}

// Each error exits with its own status and names the problem (a missing binary, 127, or a crash
// would not pass), and leaves no output file behind.
TEST(Synth, CommandLineErrors) {
  const std::string out = TempFile("cli.gguf");
  std::remove(out.c_str());
  auto run = [&](const std::string& shape, const std::string& type, const std::string& vocab) {
    return qwenmux::testing::RunQwenmux("synth --shape " + shape + " --type " + type + " --vocab " + vocab + " -o " +
                                            out + " --layers 1 --threads 2",
                                        /*merge_stderr=*/true);
  };
  auto r = run("qwen3-9b", "q8_0", Vocab());
  EXPECT_EQ(r.code, 2) << r.out;  // a bad argument
  EXPECT_NE(r.out.find("qwenmux synth: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("unknown model shape 'qwen3-9b'"), std::string::npos) << r.out;
  ExpectNothingLeft(out);
  r = run("qwen3-0.6b", "q3_k", Vocab());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("unknown type 'q3_k'"), std::string::npos) << r.out;
  ExpectNothingLeft(out);
  r = run("qwen3-0.6b", "q8_0", ModelPath("missing-vocab.gguf"));
  EXPECT_EQ(r.code, 1) << r.out;  // a failure while writing
  EXPECT_NE(r.out.find("synth: vocab file"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("missing-vocab.gguf"), std::string::npos) << r.out;
  ExpectNothingLeft(out);
}

// WriteTensorChunk: pieces give the same bytes as one WriteTensorData; too many bytes is an error.
TEST(Synth, WriterChunksEqualWholeWrites) {
  const std::string a = TempFile("w-a.gguf"), b = TempFile("w-b.gguf");
  std::vector<uint8_t> d1(4 * 10 * 3), d2(4 * 7);
  for (size_t i = 0; i < d1.size(); ++i) d1[i] = static_cast<uint8_t>(i * 7 + 1);
  for (size_t i = 0; i < d2.size(); ++i) d2[i] = static_cast<uint8_t>(i * 3 + 5);
  const uint64_t ne1[] = {10, 3}, ne2[] = {7};
  for (int mode = 0; mode < 2; ++mode) {
    gguf::Writer w;
    w.AddKeyValue("general.architecture", gguf::Value(std::string("qwen3")));
    ASSERT_TRUE(w.AddTensor("t1", gguf::TensorType::kF32, ne1).ok());
    ASSERT_TRUE(w.AddTensor("t2", gguf::TensorType::kF32, ne2).ok());
    ASSERT_TRUE(w.Open(mode == 0 ? a : b).ok());
    if (mode == 0) {
      ASSERT_TRUE(w.WriteTensorData(0, d1).ok());
      ASSERT_TRUE(w.WriteTensorData(1, d2).ok());
    } else {
      std::span<const uint8_t> s1(d1);
      ASSERT_TRUE(w.WriteTensorChunk(0, s1.subspan(0, 40)).ok());
      EXPECT_FALSE(w.WriteTensorChunk(1, d2).ok());  // tensor 0 not complete yet
      EXPECT_FALSE(w.WriteTensorData(0, d1).ok());   // whole data after pieces
      ASSERT_TRUE(w.WriteTensorChunk(0, s1.subspan(40, 41)).ok());
      EXPECT_FALSE(w.WriteTensorChunk(0, s1.subspan(0, 40)).ok());  // 39 bytes left
      ASSERT_TRUE(w.WriteTensorChunk(0, s1.subspan(81)).ok());
      ASSERT_TRUE(w.WriteTensorChunk(1, std::span<const uint8_t>(d2).subspan(0, 1)).ok());
      ASSERT_TRUE(w.WriteTensorChunk(1, std::span<const uint8_t>(d2).subspan(1)).ok());
    }
    ASSERT_TRUE(w.Finish().ok());
  }
  EXPECT_EQ(ReadAll(a), ReadAll(b));
  auto f = gguf::File::Open(b);
  ASSERT_TRUE(f.ok());
  auto t2 = f->TensorData(*f->FindTensor("t2"));
  EXPECT_TRUE(std::equal(t2.begin(), t2.end(), d2.begin()));
  std::remove(a.c_str());
  std::remove(b.c_str());
}

}  // namespace
}  // namespace qwenmux::quant

namespace qwenmux::quant {
namespace {

// Every quantized type synth writes (the direct random blocks and the float path) has realistic
// weights: norms near 1, matrices with std ≈ 1/sqrt(fan_in) (0.01-0.05 at Qwen3 sizes) and mean
// near 0, every block scale a finite, small f16 (nothing that overflows an f16 KV cache or f16
// partial sums on the GPU). Rows are sampled across each tensor (the embedding table is large).
TEST(Synth, WeightSpreadInRangeForEveryType) {
  for (FileType type : {FileType::kQ8_0, FileType::kQ4_0, FileType::kQ4_K_M, FileType::kQ5_K_M, FileType::kQ6_K,
                        FileType::kF16, FileType::kBF16}) {
    SCOPED_TRACE(FileTypeName(type));
    const std::string out = TempFile(std::string("spread-") + FileTypeName(type) + ".gguf");
    ASSERT_TRUE(Synth("qwen3-0.6b", type, out, 7).ok());
    auto f = gguf::File::Open(out);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    std::set<gguf::TensorType> seen;
    for (const gguf::TensorInfo& t : f->tensors()) {
      SCOPED_TRACE(t.name);
      seen.insert(t.type);
      const int64_t n = static_cast<int64_t>(t.ne[0]);
      const size_t row_bytes = RowSize(t.type, n);
      ASSERT_GT(row_bytes, 0u);
      const uint64_t rows = t.rows();
      const uint64_t step = std::max<uint64_t>(1, rows / 64);
      std::vector<float> row(static_cast<size_t>(n));
      double sum = 0, ss = 0, max_abs = 0;
      uint64_t count = 0;
      for (uint64_t r = 0; r < rows; r += step) {
        const uint8_t* data = f->TensorData(t).data() + r * row_bytes;
        ASSERT_TRUE(DequantizeTensor(t.type, data, row.data(), 1, n, nullptr).ok());
        for (float x : row) {
          ASSERT_TRUE(std::isfinite(x));
          sum += x, ss += double{x} * x, max_abs = std::max<double>(max_abs, std::fabs(x));
        }
        count += static_cast<uint64_t>(n);
      }
      const double mean = sum / count, sd = std::sqrt(std::max(0.0, ss / count - mean * mean));
      if (t.name.ends_with("_norm.weight")) {
        EXPECT_NEAR(mean, 1.0, 0.01);
        EXPECT_NEAR(sd, 0.05, 0.01);
        continue;
      }
      const double want = 1.0 / std::sqrt(static_cast<double>(n));
      EXPECT_NEAR(sd / want, 1.0, 0.06) << "std " << sd << " want " << want;
      EXPECT_GE(sd, 0.005);
      EXPECT_LE(sd, 0.05);
      EXPECT_LT(std::fabs(mean), 0.05 * sd) << "mean " << mean;
      EXPECT_LT(max_abs, 1.0);  // realistic: no weight near the f16 danger zone
    }
    EXPECT_GE(seen.size(), 2u);
    std::remove(out.c_str());
  }
}

}  // namespace
}  // namespace qwenmux::quant
