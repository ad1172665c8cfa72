// Schema-constrained extraction: whatever the logits, the text a processor lets through parses as
// JSON and validates against the schema; the validator catches what it should.
#include <random>

#include <gtest/gtest.h>

#include "common/testdata.h"
#include "engine/sampler.h"
#include "gguf/gguf.h"
#include "pipeline/schema.h"
#include "tokenizer/tokenizer.h"

namespace qwenmux::pipeline {
namespace {

using Json = nlohmann::ordered_json;

const tokenizer::Tokenizer& Vocab() {
  static std::shared_ptr<const tokenizer::Tokenizer> tok = [] {
    auto f = gguf::File::Open(qwenmux::testing::ModelPath("qwen3-vocab.gguf"));
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    auto t = tokenizer::Tokenizer::SharedFromGguf(*f);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return *t;
  }();
  return *tok;
}

const Json kInvoice = Json::parse(R"({"type": "object", "properties": {
    "number": {"type": "string", "maxLength": 12},
    "vendor": {"type": "object", "properties": {"name": {"type": "string", "minLength": 2, "maxLength": 20},
                                               "country": {"type": "string", "enum": ["DE", "FR", "US", "other"]}}},
    "total": {"type": "number"}, "items": {"type": "integer"}, "paid": {"type": "boolean"}},
    "required": ["number", "vendor", "total", "items", "paid"], "additionalProperties": false})");

// Drives a processor with random logits (the way a random-weight model would) to completion.
std::string RandomWalk(const SchemaTemplate& t, uint64_t seed, int* steps) {
  auto proc = t.NewProcessor();
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&state] {  // xorshift64*: uniform in [0, 8)
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return static_cast<float>((state * 0x2545F4914F6CDD1Dull) >> 40) * (8.0f / 16777216.0f);
  };
  const int32_t V = t.tokenizer().vocab_size();
  std::vector<float> logits(V);
  std::vector<int32_t> out;
  for (*steps = 0; !proc->Done() && *steps < 2000; ++*steps) {
    for (float& x : logits) x = next();
    EXPECT_TRUE(proc->Apply(logits).ok());
    const int32_t tok = engine::Argmax(logits);
    EXPECT_TRUE(std::isfinite(logits[tok]));
    EXPECT_TRUE(proc->Accept(tok).ok());
    out.push_back(tok);
  }
  auto text = t.tokenizer().Decode(out);
  EXPECT_TRUE(text.ok());
  return text.ok() ? *text : "";
}

TEST(PipelineSchema, RandomLogitsAlwaysGiveValidJson) {
  auto t = SchemaTemplate::Compile(kInvoice, Vocab());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    int steps = 0;
    const std::string text = RandomWalk(**t, seed, &steps);
    ASSERT_LT(steps, 2000);
    auto j = Json::parse(text, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << text;
    EXPECT_TRUE(ValidateJson(kInvoice, j).empty()) << text;
    // Keys in schema order.
    std::vector<std::string> keys;
    for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
    EXPECT_EQ(keys, (std::vector<std::string>{"number", "vendor", "total", "items", "paid"})) << text;
  }
}

TEST(PipelineSchema, ForcedPathFollowsPreferredTokens) {
  // Logits that favour one token everywhere it is allowed: the processor must still end the
  // string at maxLength and produce valid JSON.
  const Json schema = Json::parse(R"({"type": "object", "properties": {"s": {"type": "string", "maxLength": 5}, "n": {"type": "integer"}}})");
  auto t = SchemaTemplate::Compile(schema, Vocab());
  ASSERT_TRUE(t.ok());
  auto proc = (*t)->NewProcessor();
  const int32_t V = Vocab().vocab_size();
  const int32_t a = *Vocab().TokenId("a");
  const int32_t seven = *Vocab().TokenId("7");
  std::vector<int32_t> out;
  while (!proc->Done() && out.size() < 100) {
    std::vector<float> logits(V, 0.0f);
    logits[a] = 10;
    logits[seven] = 9;
    ASSERT_TRUE(proc->Apply(logits).ok());
    const int32_t tok = engine::Argmax(logits);
    ASSERT_TRUE(proc->Accept(tok).ok());
    out.push_back(tok);
  }
  auto text = Vocab().Decode(out);
  ASSERT_TRUE(text.ok());
  auto j = Json::parse(*text, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << *text;
  EXPECT_EQ(j["s"], "aaaaa");
  EXPECT_TRUE(j["n"].is_number_integer()) << *text;
  EXPECT_EQ(j["n"].dump().substr(0, 1), "7");
}

TEST(PipelineSchema, AcceptRejectsDisallowedTokens) {
  auto t = SchemaTemplate::Compile(kInvoice, Vocab());
  ASSERT_TRUE(t.ok());
  auto proc = (*t)->NewProcessor();
  // The first token is forced ('{'...): anything else is refused.
  EXPECT_FALSE(proc->Accept(*Vocab().TokenId("x")).ok());
}

TEST(PipelineSchema, ValidatorFindsErrors) {
  const Json good = Json::parse(R"({"number": "A-1", "vendor": {"name": "Acme", "country": "DE"}, "total": 12.5, "items": 3, "paid": true})");
  EXPECT_TRUE(ValidateJson(kInvoice, good).empty());
  Json bad = good;
  bad.erase("total");
  bad["items"] = 2.5;
  bad["paid"] = "yes";
  bad["vendor"]["country"] = "XX";
  bad["vendor"]["name"] = "A";
  bad["extra"] = 1;
  bad["number"] = "0123456789ABCDEF";
  const auto errors = ValidateJson(kInvoice, bad);
  std::string all;
  for (const auto& e : errors) all += e + "\n";
  EXPECT_EQ(errors.size(), 7u) << all;
  for (const char* want : {"missing required property \"total\"", "items: expected an integer", "paid: expected true or false",
                           "vendor.country: \"XX\" is not one of", "vendor.name: shorter than 2", "extra: property not allowed",
                           "number: longer than 12"}) {
    EXPECT_NE(all.find(want), std::string::npos) << want << "\n" << all;
  }
  EXPECT_FALSE(ValidateJson(kInvoice, Json::array()).empty());
}

TEST(PipelineSchema, UnsupportedSchemasAreRefused) {
  for (const char* s : {R"({"type": "string"})", R"({"type": "object", "properties": {}})",
                        R"({"type": "object", "properties": {"a": {"type": "array"}}})",
                        R"({"type": "object", "properties": {"a": {"type": "integer", "enum": [1]}}})",
                        R"({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]})",
                        R"({"type": "object", "properties": {"a": {"type": "string", "minLength": 5, "maxLength": 2}}})"}) {
    auto t = SchemaTemplate::Compile(Json::parse(s), Vocab());
    EXPECT_FALSE(t.ok()) << s;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << s;
  }
}

}  // namespace
}  // namespace qwenmux::pipeline
