// The engine on the GPU (engine::Model with device cuda, the shared tiny dense model):
// - continuous batching: 4 sequences (two joining a running batch) and 32 sequences give each
//   sequence exactly the greedy tokens it gets alone (steps of at most
//   CudaForward::kMatVecMaxTokens tokens are batch-invariant, and the one-sequence decode runs
//   as a CUDA graph, so this also holds the graph to the batched path);
// - JSON-schema constrained output at temperature 1 parses and matches its schema.
// Skips without a CUDA device or when the device call did not carry the model.
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "cuda/cuda_test_util.h"
#include "engine/batch.h"
#include "engine/engine.h"
#include "structured/structured.h"

namespace qwenmux::engine {
namespace {

constexpr const char* kModel = "tiny-dense.q8_0.gguf";

std::unique_ptr<Model> LoadOnGpu(int32_t n_seq) {
  LoadOptions lo;
  lo.n_ctx = 128;
  lo.n_seq = n_seq;
  lo.n_batch = 32;
  lo.n_threads = 2;
  lo.device = runtime::DeviceChoice::kCuda;
  auto m = Model::Load(qwenmux::testing::ModelPath(kModel), lo);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  if (m.ok()) {
    EXPECT_EQ((*m)->backend().device(), runtime::Device::kCuda);
  }
  return m.ok() ? std::move(m).value() : nullptr;
}

SequenceRequest Greedy(std::vector<int32_t> prompt, int32_t max_tokens) {
  SequenceRequest r;
  r.prompt = std::move(prompt);
  r.options.sampler.temperature = 0;
  r.options.max_tokens = max_tokens;
  r.options.stop_on_eos = false;
  return r;
}

// Tokens of one sequence run alone on `m` (one sequence in the batch: graph decode steps).
std::vector<int32_t> Alone(Model& m, const std::vector<int32_t>& prompt, int32_t max_tokens) {
  Batch b(m);
  auto id = b.Admit(Greedy(prompt, max_tokens));
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  std::vector<int32_t> out;
  std::vector<SequenceEvent> ev;
  for (int i = 0; i < 1000 && b.active() > 0; ++i) {
    Status s = b.Step(&ev);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) break;
    for (const auto& e : ev) {
      if (e.has_token) out.push_back(e.token);
    }
  }
  return out;
}

class CudaEngine : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto info = runtime::QueryCudaDevice(0);
    if (!info.available) GTEST_SKIP() << "no CUDA device: " << info.why;
    if (!std::filesystem::exists(qwenmux::testing::ModelPath(kModel))) GTEST_SKIP() << "test model " << kModel << " not here";
  }
};

TEST_F(CudaEngine, FourSequencesJoiningARunningBatchEqualTheirRunsAlone) {
  auto m = LoadOnGpu(4);
  ASSERT_NE(m, nullptr);
  const std::vector<std::string> texts = {"Once upon a time", "The capital of France is", "def add(a, b):",
                                          "Water boils at"};
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& t : texts) {
    prompts.push_back(m->tokenizer().Encode(t));
    ASSERT_LE(prompts.back().size(), 8u);  // 4 prompts fit one batch-invariant step
  }
  const int32_t kTokens = 24;
  std::vector<std::vector<int32_t>> alone;
  for (const auto& p : prompts) alone.push_back(Alone(*m, p, kTokens));

  Batch b(*m);
  std::map<int32_t, size_t> which;  // engine id -> prompt index
  std::vector<std::vector<int32_t>> got(prompts.size());
  auto admit = [&](size_t i) {
    auto id = b.Admit(Greedy(prompts[i], kTokens));
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    which[*id] = i;
  };
  admit(0);
  admit(1);
  std::vector<SequenceEvent> ev;
  for (int step = 0; step < 1000 && (step < 4 || b.active() > 0); ++step) {
    if (step == 3) {  // two join while the first two decode
      admit(2);
      admit(3);
    }
    ASSERT_TRUE(b.Step(&ev).ok());
    for (const auto& e : ev) {
      if (e.has_token) got[which.at(e.id)].push_back(e.token);
    }
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_EQ(alone[i].size(), static_cast<size_t>(kTokens));
    EXPECT_EQ(got[i], alone[i]) << "sequence " << i << " (" << texts[i] << ")";
  }
}

TEST_F(CudaEngine, ThirtyTwoSequencesEqualTheirRunsAlone) {
  auto m = LoadOnGpu(32);
  ASSERT_NE(m, nullptr);
  // 32 one-token prompts: the first step is 32 prompt tokens, each later one 32 decode tokens.
  std::vector<std::vector<int32_t>> prompts;
  for (int32_t i = 0; i < 32; ++i) prompts.push_back({1000 + 97 * i});
  const int32_t kTokens = 16;
  std::vector<std::vector<int32_t>> alone;
  for (const auto& p : prompts) alone.push_back(Alone(*m, p, kTokens));
  Batch b(*m);
  std::map<int32_t, size_t> which;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto id = b.Admit(Greedy(prompts[i], kTokens));
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    which[*id] = i;
  }
  std::vector<std::vector<int32_t>> got(prompts.size());
  std::vector<SequenceEvent> ev;
  int steps = 0;
  for (; steps < 1000 && b.active() > 0; ++steps) {
    StepStats st;
    ASSERT_TRUE(b.Step(&ev, &st).ok());
    EXPECT_LE(st.n_prompt + st.n_decode, 32);
    for (const auto& e : ev) {
      if (e.has_token) got[which.at(e.id)].push_back(e.token);
    }
  }
  EXPECT_EQ(steps, kTokens);  // every step ran all 32 sequences together
  int equal = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(got[i], alone[i]) << "sequence " << i;
    equal += got[i] == alone[i];
  }
  std::cout << "32 sequences: " << equal << " equal their runs alone\n";
}

TEST_F(CudaEngine, JsonSchemaOutputStaysValid) {
  auto m = LoadOnGpu(1);
  ASSERT_NE(m, nullptr);
  using nlohmann::json;
  using nlohmann::ordered_json;
  const std::vector<ordered_json> schemas = {
      ordered_json::parse(R"({"type": "object", "properties": {"n": {"type": "integer"}, "s": {"type": "string",
        "maxLength": 8}, "b": {"type": "boolean"}}, "required": ["n", "s", "b"], "additionalProperties": false})"),
      ordered_json::parse(R"({"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 3})"),
      ordered_json::parse(R"({"enum": ["red", "green", "blue"]})"),
  };
  auto vocab = structured::VocabIndex::Shared(m->tokenizer());
  structured::JsonSchemaOptions opt;
  opt.max_string_length = 8;
  opt.max_whitespace = 1;
  opt.max_integer_digits = 6;
  opt.max_fraction_digits = 3;
  int valid = 0, total = 0;
  for (size_t k = 0; k < schemas.size(); ++k) {
    auto c = structured::CompileJsonSchema(schemas[k], vocab, opt);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    for (int seed = 0; seed < 4; ++seed) {
      auto proc = (*c)->NewProcessor();
      GenerateOptions g;
      g.sampler.temperature = 1.0f;
      g.sampler.top_k = 0;
      g.sampler.top_p = 1.0f;
      g.sampler.seed = 7 + seed;
      g.max_tokens = 200;
      g.processor = proc.get();
      auto r = m->Generate(m->tokenizer().Encode("JSON:"), g);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      ++total;
      EXPECT_EQ(r->finish_reason, "stop") << r->text;
      EXPECT_TRUE(proc->Done()) << r->text;
      const json v = json::parse(r->text, nullptr, false);
      bool ok = !v.is_discarded();
      if (ok && k == 0) {
        ok = v.is_object() && v.size() == 3 && v.contains("n") && v["n"].is_number_integer() && v.contains("s") &&
             v["s"].is_string() && v["s"].get<std::string>().size() <= 8 * 4 && v.contains("b") && v["b"].is_boolean();
      } else if (ok && k == 1) {
        ok = v.is_array() && !v.empty() && v.size() <= 3;
        for (const auto& x : v) ok = ok && x.is_number();
      } else if (ok && k == 2) {
        ok = v == "red" || v == "green" || v == "blue";
      }
      EXPECT_TRUE(ok) << "schema " << k << ": " << r->text;
      valid += ok;
    }
  }
  std::cout << "json schema on the GPU: " << valid << "/" << total << " valid\n";
}

}  // namespace
}  // namespace qwenmux::engine
