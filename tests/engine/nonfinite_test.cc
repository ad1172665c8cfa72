// Issue 20 item 10: a model that produces NaN. A non-finite hyper-parameter (a NaN rope base,
// an infinite epsilon) is refused when the model is read; weights that turn the outputs into NaN
// fail the request with a clear error instead of NaN embeddings or tokens drawn from garbage.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "common/altered_model.h"
#include "common/testdata.h"
#include "engine/engine.h"
#include "model/config.h"

namespace qwenmux::engine {
namespace {

using qwenmux::testing::ModelPath;
using qwenmux::testing::WriteAlteredModel;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(NonFinite, NonFiniteHyperParameterIsRefusedAtLoad) {
  const std::string path = ::testing::TempDir() + "/nan-hparam.gguf";
  const struct {
    const char* key;
    float value;
  } cases[] = {{"qwen3.rope.freq_base", kNaN},
               {"qwen3.rope.freq_base", -kInf},
               {"qwen3.attention.layer_norm_rms_epsilon", kNaN},
               {"qwen3.attention.layer_norm_rms_epsilon", kInf},
               {"qwen3.attention.layer_norm_rms_epsilon", 0.0f}};
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.key) + " = " + std::to_string(c.value));
    ASSERT_TRUE(WriteAlteredModel(ModelPath("tiny-dense.q8_0.gguf"), path, {{c.key, gguf::Value(c.value)}}).ok());
    auto f = gguf::File::Open(path);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    auto config = model::ReadConfig(*f);
    ASSERT_FALSE(config.ok());
    EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(config.status().message().find(std::string("key ") + c.key), std::string::npos) << config.status().message();
    EXPECT_NE(config.status().message().find("expected a finite number"), std::string::npos) << config.status().message();
    auto m = Model::Load(path);
    EXPECT_FALSE(m.ok());
  }
  std::remove(path.c_str());
}

// NaN final-norm weights: every logit and hidden state is NaN. Generation, embeddings and
// rerank scores each fail with the engine's message.
TEST(NonFinite, NanOutputsFailTheRequest) {
  const std::string path = ::testing::TempDir() + "/nan-weights.gguf";
  ASSERT_TRUE(WriteAlteredModel(ModelPath("tiny-dense.q8_0.gguf"), path, {}, {"output_norm.weight"}, kNaN).ok());
  LoadOptions lo;
  lo.n_ctx = 128;
  lo.n_seq = 2;
  lo.n_threads = 2;
  auto m = Model::Load(path, lo);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const auto prompt = (*m)->tokenizer().Encode("Hello there");

  GenerateOptions g;
  g.max_tokens = 4;
  auto gen = (*m)->Generate(prompt, g);
  ASSERT_FALSE(gen.ok());
  EXPECT_EQ(gen.status().code(), StatusCode::kInternal);
  EXPECT_NE(gen.status().message().find("non-finite logits value"), std::string::npos) << gen.status().message();

  auto emb = (*m)->Embed({prompt, prompt});
  ASSERT_FALSE(emb.ok()) << "embedding[0][0] = " << (*emb)[0][0];
  EXPECT_EQ(emb.status().code(), StatusCode::kInternal);
  EXPECT_NE(emb.status().message().find("non-finite hidden state value"), std::string::npos) << emb.status().message();

  auto scores = (*m)->RerankScores({prompt});
  ASSERT_FALSE(scores.ok()) << "score " << (*scores)[0];
  EXPECT_NE(scores.status().message().find("non-finite"), std::string::npos) << scores.status().message();
  std::remove(path.c_str());
}

// The check does not fire on a sound model.
TEST(NonFinite, SoundModelPasses) {
  LoadOptions lo;
  lo.n_ctx = 128;
  lo.n_threads = 2;
  auto m = Model::Load(ModelPath("tiny-dense.q8_0.gguf"), lo);
  ASSERT_TRUE(m.ok());
  const auto prompt = (*m)->tokenizer().Encode("Hello there");
  auto emb = (*m)->Embed({prompt});
  ASSERT_TRUE(emb.ok()) << emb.status().ToString();
  for (float x : (*emb)[0]) ASSERT_TRUE(std::isfinite(x));
  GenerateOptions g;
  g.max_tokens = 3;
  EXPECT_TRUE((*m)->Generate(prompt, g).ok());
}

}  // namespace
}  // namespace qwenmux::engine
