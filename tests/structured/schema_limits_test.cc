// Issue 20 items 2 and 3: schema size and complexity limits (clear errors), enums compiled as a
// trie (bounded matcher state however many values), the start masks warmed off the worker, and
// the constraint cache bounded by bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>

#include "structured/structured.h"
#include "structured_util.h"

namespace qwenmux::structured {
namespace {

using json = nlohmann::ordered_json;
using testutil::Index;

// `n` distinct strings of `len` random lowercase letters (seeded).
json RandomEnum(size_t n, size_t len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::set<std::string> seen;
  json e = json::array();
  while (e.size() < n) {
    std::string s(len, 'a');
    for (char& c : s) c = static_cast<char>('a' + rng() % 26);
    if (seen.insert(s).second) e.push_back(s);
  }
  return e;
}

json EnumSchema(const json& values) { return json{{"type", "string"}, {"enum", values}}; }

void ExpectLimit(const json& schema, const std::string& what) {
  auto c = CompileJsonSchema(schema, Index());
  ASSERT_FALSE(c.ok()) << what;
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find(what), std::string::npos) << c.status().ToString();
  EXPECT_NE(c.status().message().find("limit"), std::string::npos) << c.status().ToString();
}

TEST(StructuredLimits, SchemaSizeAndComplexityAreLimited) {
  ExpectLimit(EnumSchema(RandomEnum(5000, 4, 1)), "'enum' has 5000 values");
  // Each enum within its count, together above the bytes of literals.
  json props = json::object();
  for (int i = 0; i < 40; ++i) props["p" + std::to_string(i)] = EnumSchema(RandomEnum(400, 10, 10 + i));
  ExpectLimit(json{{"type", "object"}, {"properties", props}}, "enum/const values");
  // Nesting.
  json deep = json{{"type", "string"}};
  for (int i = 0; i < 40; ++i) deep = json{{"type", "array"}, {"items", deep}};
  ExpectLimit(deep, "nested too deeply");
  // Alternatives.
  json branches = json::array();
  for (int i = 0; i < 200; ++i) branches.push_back(json{{"const", i}});
  ExpectLimit(json{{"anyOf", branches}}, "'anyOf' has 200 branches");
  // The schema's text.
  ExpectLimit(json{{"type", "string"}, {"description", std::string(300 << 10, 'x')}}, "bytes of JSON");
  // Within the limits: fine.
  EXPECT_TRUE(CompileJsonSchema(EnumSchema(RandomEnum(4000, 8, 2)), Index()).ok());
}

TEST(StructuredLimits, EnumIsATrieWithBoundedState) {
  // Shared prefixes, a value that is a prefix of another, escapes and multi-byte text.
  const json values = {"a", "ab", "abc", "abd", "b", "say \"hi\"", "caf\u00e9", "caf", ""};
  auto c = CompileJsonSchema(json{{"enum", values}}, Index());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  for (const json& v : values) {
    GrammarMatcher m(*c);
    EXPECT_TRUE(m.AcceptBytes(v.dump())) << v.dump();
    EXPECT_TRUE(m.CanEnd()) << v.dump();
  }
  for (const std::string bad : {"\"abe\"", "\"ac\"", "\"c\"", "\"abcd\"", "\"caf\u00e8\""}) {
    GrammarMatcher m(*c);
    EXPECT_FALSE(m.AcceptBytes(bad) && m.CanEnd()) << bad;
  }
  GrammarMatcher partial(*c);
  EXPECT_TRUE(partial.AcceptBytes("\"ab"));
  EXPECT_FALSE(partial.CanEnd());

  // 4,000 values: after the opening quote, at most one stack per distinct next byte (26 letters)
  // rather than one per value (4,000 before the trie).
  const json many = RandomEnum(4000, 8, 3);
  auto big = CompileJsonSchema(EnumSchema(many), Index());
  ASSERT_TRUE(big.ok()) << big.status().ToString();
  GrammarMatcher m(*big);
  ASSERT_TRUE(m.AcceptBytes("\""));
  EXPECT_LE(m.num_stacks(), 27u);
  GrammarMatcher each(*big);
  EXPECT_TRUE(each.AcceptBytes(many[1234].dump()));
  EXPECT_TRUE(each.CanEnd());
  // A random walk (random weights) ends with one of the values.
  auto proc = (*big)->NewProcessor();
  auto w = testutil::RandomWalk(*proc, *Index(), 7);
  ASSERT_TRUE(w.error.empty()) << w.error;
  const json got = json::parse(w.text, nullptr, false);
  ASSERT_TRUE(got.is_string()) << w.text;
  EXPECT_NE(std::find(many.begin(), many.end(), got), many.end()) << w.text;
}

TEST(StructuredLimits, WarmStartMasksLeavesNothingForTheFirstStep) {
  auto c = CompileJsonSchema(EnumSchema(RandomEnum(3000, 12, 4)), Index());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(WarmStartMasks(*c).ok());
  const uint64_t misses = (*c)->cache_misses();
  EXPECT_GT(misses, 0u);
  GrammarMatcher m(*c);  // what a request's processor does on the worker
  TokenMask mask;
  ASSERT_TRUE(m.ComputeMask(&mask).ok());
  EXPECT_EQ((*c)->cache_misses(), misses);  // every mask of the first step came from the cache
}

TEST(StructuredCache, BoundedByBytesUnderManyDistinctLargeSchemas) {
  constexpr size_t kCap = size_t{24} << 20;
  ConstraintCache cache(kCap);
  auto v = Index();
  size_t largest = 0;
  for (int i = 0; i < 40; ++i) {
    const json schema = EnumSchema(RandomEnum(3000, 12, 100 + i));
    JsonSchemaOptions o;
    o.constraint = cache.options();
    auto c = cache.GetOrCompile(*v, schema.dump(), [&] { return CompileJsonSchema(schema, v, o); });
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    // A request's few steps grow the constraint's mask cache.
    auto proc = (*c)->NewProcessor();
    auto w = testutil::RandomWalk(*proc, *v, i, 6);
    ASSERT_TRUE(w.error.empty()) << w.error;
    largest = std::max(largest, (*c)->memory_bytes());
    // Held by every live constraint of the cache (this one included): within the cap plus the
    // newest grammar, however many schemas went through.
    EXPECT_LE(cache.memory()->used(), kCap + (*c)->memory_bytes()) << "after schema " << i;
    EXPECT_LE(cache.bytes(), kCap + (*c)->memory_bytes()) << "after schema " << i;
  }
  EXPECT_GT(largest, size_t{1} << 20);  // the schemas are large: the cap had to evict
  EXPECT_LT(cache.size(), 40u);
  EXPECT_GE(cache.size(), 1u);
}

}  // namespace
}  // namespace qwenmux::structured
