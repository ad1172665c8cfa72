// Engine behaviour: generation, stop conditions, streaming, errors on bad input.
#include <cstdio>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/mapped_file.h"
#include "common/testdata.h"
#include "engine/engine.h"
#include "runtime/weights.h"

namespace qwenmux::engine {
namespace {

using qwenmux::testing::ModelPath;

std::unique_ptr<Model> LoadDense(int32_t n_ctx = 256) {
  LoadOptions lo;
  lo.n_ctx = n_ctx;
  lo.n_threads = 2;
  auto m = Model::Load(ModelPath("tiny-dense.q8_0.gguf"), lo);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(m).value() : nullptr;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (int k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

TEST(Engine, GreedyGenerationIsDeterministicAndStreamsCleanUtf8) {
  auto m = LoadDense();
  ASSERT_NE(m, nullptr);
  const auto prompt = m->tokenizer().Encode("Hello, 世界! Write something:");
  GenerateOptions g;
  g.sampler.temperature = 0;
  g.max_tokens = 24;
  g.stop_on_eos = false;
  std::string streamed;
  int pieces = 0;
  auto a = m->Generate(prompt, g, [&](std::string_view s) {
    EXPECT_TRUE(IsValidUtf8(s)) << "piece is not whole UTF-8";
    streamed.append(s);
    ++pieces;
    return true;
  });
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->tokens.size(), 24u);
  EXPECT_EQ(a->finish_reason, "length");
  EXPECT_EQ(streamed, a->text);
  EXPECT_GT(pieces, 1);
  auto dec = m->tokenizer().Decode(a->tokens);
  ASSERT_TRUE(dec.ok());
  EXPECT_EQ(*dec, a->text);
  auto b = m->Generate(prompt, g);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->tokens, b->tokens);
}

TEST(Engine, SeededSamplingIsReproducibleAndSeedMatters) {
  auto m = LoadDense();
  ASSERT_NE(m, nullptr);
  const auto prompt = m->tokenizer().Encode("Once upon a time");
  GenerateOptions g;
  g.sampler.temperature = 1.0f;
  g.sampler.top_k = 0;
  g.sampler.top_p = 1.0f;
  g.max_tokens = 16;
  g.stop_on_eos = false;
  g.sampler.seed = 7;
  auto a = m->Generate(prompt, g);
  auto b = m->Generate(prompt, g);
  g.sampler.seed = 8;
  auto c = m->Generate(prompt, g);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->tokens, b->tokens);
  EXPECT_NE(a->tokens, c->tokens);
}

TEST(Engine, StopStringCutsTheOutput) {
  auto m = LoadDense();
  ASSERT_NE(m, nullptr);
  const auto prompt = m->tokenizer().Encode("abc");
  GenerateOptions g;
  g.sampler.temperature = 0;
  g.max_tokens = 12;
  g.stop_on_eos = false;
  auto full = m->Generate(prompt, g);
  ASSERT_TRUE(full.ok());
  ASSERT_GE(full->text.size(), 4u);
  // Stop on a substring that starts inside the generated text.
  const std::string stop = full->text.substr(full->text.size() / 2, 2);
  g.stop = {stop};
  std::string streamed;
  auto cut = m->Generate(prompt, g, [&](std::string_view s) {
    streamed.append(s);
    return true;
  });
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut->finish_reason, "stop");
  EXPECT_EQ(cut->text, full->text.substr(0, full->text.find(stop)));
  EXPECT_EQ(streamed, cut->text);
}

TEST(Engine, CallbackCancels) {
  auto m = LoadDense();
  ASSERT_NE(m, nullptr);
  GenerateOptions g;
  g.sampler.temperature = 0;
  g.max_tokens = 50;
  g.stop_on_eos = false;
  int calls = 0;
  auto r = m->Generate(m->tokenizer().Encode("hi"), g, [&](std::string_view) { return ++calls < 3; });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->finish_reason, "cancelled");
  EXPECT_LT(r->tokens.size(), 50u);
}

TEST(Engine, BadInputGetsClearErrors) {
  auto m = LoadDense(32);
  ASSERT_NE(m, nullptr);
  GenerateOptions g;
  auto empty = m->Generate({}, g);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("empty prompt"), std::string::npos);
  std::vector<int32_t> long_prompt(40, 100);
  auto too_long = m->Generate(long_prompt, g);
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.status().code(), StatusCode::kOutOfRange);
  EXPECT_NE(too_long.status().message().find("context"), std::string::npos);
  const std::vector<int32_t> bad_id = {1, 999999};
  auto bad = m->Generate(bad_id, g);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("999999"), std::string::npos);
  g.sampler.top_p = 0;
  auto bad_sampler = m->Generate(m->tokenizer().Encode("x"), g);
  ASSERT_FALSE(bad_sampler.ok());
  EXPECT_NE(bad_sampler.status().message().find("top_p"), std::string::npos);
  // After errors the model still works.
  g.sampler.top_p = 0.9f;
  g.max_tokens = 2;
  EXPECT_TRUE(m->Generate(m->tokenizer().Encode("x"), g).ok());
}

TEST(Engine, GenerationStopsAtTheContextEnd) {
  auto m = LoadDense(16);
  ASSERT_NE(m, nullptr);
  GenerateOptions g;
  g.sampler.temperature = 0;
  g.max_tokens = 100;
  g.stop_on_eos = false;
  auto r = m->Generate(m->tokenizer().Encode("one two three"), g);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->finish_reason, "length");
  EXPECT_LE(r->prompt_tokens + static_cast<int32_t>(r->tokens.size()), 17);
}

TEST(Engine, EmbeddingsAreNormalisedAndTruncatable) {
  auto m = LoadDense();
  ASSERT_NE(m, nullptr);
  auto e = m->Embed({m->tokenizer().Encode("a document"), m->tokenizer().Encode("another one")}, 64);
  ASSERT_TRUE(e.ok());
  ASSERT_EQ(e->size(), 2u);
  for (const auto& v : *e) {
    ASSERT_EQ(v.size(), 64u);
    double n = 0;
    for (float x : v) n += x * x;
    EXPECT_NEAR(n, 1.0, 1e-5);
  }
  EXPECT_FALSE(m->Embed({m->tokenizer().Encode("x")}, 100000).ok());
}

// Both reference rerank cases of tiny-dense.hf-q8_0.json: the prompt's ids equal the reference
// ids and the score is within 0.002 of transformers' (measured: within 0.0005).
TEST(Engine, RerankPromptMatchesTheReferenceIds) {
  auto m = LoadDense();
  ASSERT_NE(m, nullptr);
  auto text = ReadFileToString(qwenmux::testing::RefPath("tiny-dense.hf-q8_0.json"));
  ASSERT_TRUE(text.ok());
  const auto ref = nlohmann::json::parse(*text);
  ASSERT_EQ(ref["rerank"].size(), 2u);
  for (const auto& c : ref["rerank"]) {
    const auto ids = m->RerankPrompt("Given a web search query, retrieve relevant passages that answer the query",
                                     c["query"].get<std::string>(), c["document"].get<std::string>());
    EXPECT_EQ(ids, c["ids"].get<std::vector<int32_t>>()) << c["document"];
    auto s = m->RerankScores({ids});
    ASSERT_TRUE(s.ok());
    std::printf("rerank %s: %.6f (reference %.6f)\n", c["document"].get<std::string>().c_str(), (*s)[0],
                c["score"].get<double>());
    EXPECT_NEAR((*s)[0], c["score"].get<double>(), 0.002) << c["document"];
  }
}

TEST(Engine, LoadErrorsNameTheProblem) {
  auto vocab_only = Model::Load(ModelPath("qwen3-vocab.gguf"));
  ASSERT_FALSE(vocab_only.ok());
  EXPECT_NE(vocab_only.status().message().find("token_embd.weight"), std::string::npos) << vocab_only.status().message();
  auto missing = Model::Load("/no/such/model.gguf");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace qwenmux::engine

namespace qwenmux::engine {
namespace {

TEST(Engine, BatchedEmbeddingsAndRerankMatchOneByOne) {
  LoadOptions lo;
  lo.n_ctx = 128;
  lo.n_threads = 2;
  lo.n_seq = 3;
  lo.n_batch = 16;  // several chunks, inputs interleaved
  auto batched = Model::Load(qwenmux::testing::ModelPath("tiny-dense.q8_0.gguf"), lo);
  lo.n_seq = 1;
  auto single = Model::Load(qwenmux::testing::ModelPath("tiny-dense.q8_0.gguf"), lo);
  ASSERT_TRUE(batched.ok() && single.ok());
  const auto& tok = (*single)->tokenizer();
  std::vector<std::vector<int32_t>> inputs;
  for (const char* t : {"short", "a somewhat longer input text for embedding", "三", "another one here", "x y z"}) {
    inputs.push_back(tok.Encode(t));
  }
  auto a = (*batched)->Embed(inputs);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto b = (*single)->Embed({inputs[i]});
    ASSERT_TRUE(b.ok());
    double dot = 0;
    for (size_t k = 0; k < (*a)[i].size(); ++k) dot += (*a)[i][k] * (*b)[0][k];
    EXPECT_GT(dot, 0.9999) << "input " << i;
  }
  std::vector<std::vector<int32_t>> pairs;
  for (const char* d : {"Beijing is the capital.", "Paris.", "Nothing relevant here at all."}) {
    pairs.push_back((*single)->RerankPrompt("Given a web search query, retrieve relevant passages that answer the query",
                                            "What is the capital of China?", d));
  }
  auto sa = (*batched)->RerankScores(pairs);
  ASSERT_TRUE(sa.ok());
  for (size_t i = 0; i < pairs.size(); ++i) {
    auto sb = (*single)->RerankScores({pairs[i]});
    ASSERT_TRUE(sb.ok());
    EXPECT_NEAR((*sa)[i], (*sb)[0], 1e-4);
  }
  // A bad input in a batch is reported with its index and leaves the model usable.
  inputs.push_back(std::vector<int32_t>(500, 7));
  auto bad = (*batched)->Embed(inputs);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("input 5"), std::string::npos) << bad.status().message();
  EXPECT_TRUE((*batched)->Embed({inputs[0]}).ok());
}

}  // namespace
}  // namespace qwenmux::engine
