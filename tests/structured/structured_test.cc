// Compiler and matcher unit tests with the real Qwen3 vocabulary.
#include <gtest/gtest.h>

#include <thread>

#include "chat/chat.h"
#include "structured/structured.h"
#include "structured_util.h"

namespace qwenmux::structured {
namespace {

using json = nlohmann::ordered_json;
using testutil::Index;

Constraint Schema(const char* text) {
  auto c = CompileJsonSchema(json::parse(text), Index());
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : nullptr;
}

bool Accepts(const Constraint& c, std::string_view text, bool complete = true) {
  GrammarMatcher m(c);
  if (!m.AcceptBytes(text)) return false;
  return !complete || m.CanEnd();
}

TEST(StructuredGrammar, GbnfAcceptsAndRejects) {
  auto c = CompileGrammar(R"(
    # a tiny YAML-ish list
    root ::= item ("\n" item){0,3}
    item ::= "- " name ": " [0-9]+
    name ::= [a-z] [a-z_]*
  )", Index());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(Accepts(*c, "- ab: 12\n- c: 3"));
  EXPECT_FALSE(Accepts(*c, "- ab: x"));
  EXPECT_FALSE(Accepts(*c, "- ab: ", true));
  EXPECT_FALSE(Accepts(*c, "- a: 1\n- b: 2\n- c: 3\n- d: 4\n- e: 5"));
}

TEST(StructuredGrammar, GbnfUnicodeClassesAndAlternatives) {
  auto c = CompileGrammar(R"(root ::= ("é" | [α-ω]+ | [^a-z\n]) "!")", Index());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(Accepts(*c, "é!"));
  EXPECT_TRUE(Accepts(*c, "αβγ!"));
  EXPECT_TRUE(Accepts(*c, "Z!"));
  EXPECT_TRUE(Accepts(*c, "😀!"));
  EXPECT_FALSE(Accepts(*c, "a!"));
  EXPECT_FALSE(Accepts(*c, "\xed\xa0\x80!"));  // a UTF-8-encoded surrogate is not a code point
}

TEST(StructuredGrammar, GbnfErrorsNameTheProblem) {
  auto err = [](const char* g) {
    auto c = CompileGrammar(g, Index());
    EXPECT_FALSE(c.ok()) << g;
    return c.ok() ? std::string() : c.status().ToString();
  };
  EXPECT_NE(err("root ::= x").find("'x' is used but never defined"), std::string::npos);
  EXPECT_NE(err("start ::= \"a\"").find("no 'root' rule"), std::string::npos);
  EXPECT_NE(err("root ::= root \"a\" | \"b\"").find("left recursion"), std::string::npos);
  EXPECT_NE(err("root ::= (\"a\"?)*").find("left recursion"), std::string::npos);
  EXPECT_NE(err("root ::= \"a\n").find("unterminated string literal"), std::string::npos);
  EXPECT_NE(err("root ::= \"a\"\n  x ::= ]").find("line 2 column 9"), std::string::npos);
  EXPECT_NE(err("root ::= \"a\"\nroot ::= \"b\"").find("defined twice"), std::string::npos);
  EXPECT_NE(err("root ::= <|nope|>").find("not a special token"), std::string::npos);
  EXPECT_NE(err("root ::= [b-a]").find("out of order"), std::string::npos);
  EXPECT_NE(err("root ::= \"a\" x\nx ::= x \"b\"").find("never be satisfied"), std::string::npos);
}

TEST(StructuredJson, ObjectPropertiesRequiredAndOrder) {
  auto c = Schema(R"({"type": "object", "properties": {"name": {"type": "string", "maxLength": 5},
      "age": {"type": "integer", "minimum": 0, "maximum": 130}, "tags": {"type": "array", "items": {"enum": ["a", "b"]},
      "maxItems": 2}}, "required": ["name"], "additionalProperties": false})");
  EXPECT_TRUE(Accepts(c, R"({"name": "Bob"})"));
  EXPECT_TRUE(Accepts(c, R"({"name":"Bob","age":130,"tags":["a","b"]})"));
  EXPECT_TRUE(Accepts(c, "{\n  \"name\": \"\\u00e9\\n\",\n  \"tags\": []\n}"));
  EXPECT_FALSE(Accepts(c, R"({"age": 3})"));                    // required missing
  EXPECT_FALSE(Accepts(c, R"({"name": "Bobby!"})"));            // maxLength
  EXPECT_FALSE(Accepts(c, R"({"name": "B", "age": 131})"));     // maximum
  EXPECT_FALSE(Accepts(c, R"({"name": "B", "age": -1})"));      // minimum
  EXPECT_FALSE(Accepts(c, R"({"name": "B", "age": 01})"));      // leading zero
  EXPECT_FALSE(Accepts(c, R"({"name": "B", "tags": ["c"]})"));  // enum
  EXPECT_FALSE(Accepts(c, R"({"name": "B", "tags": ["a","a","a"]})"));
  EXPECT_FALSE(Accepts(c, R"({"name": "B", "x": 1})"));         // additionalProperties
  EXPECT_FALSE(Accepts(c, R"({"name": "B",})"));
  EXPECT_FALSE(Accepts(c, "{\"name\": \"a\x01\"}"));            // control character
  EXPECT_FALSE(Accepts(c, R"({"name": "\ud800"})"));            // lone surrogate escape
}

TEST(StructuredJson, IntegerAndNumberRanges) {
  auto c = Schema(R"({"type": "integer", "minimum": -17, "maximum": 2345})");
  for (int v = -30; v <= 2400; ++v) {
    EXPECT_EQ(Accepts(c, std::to_string(v)), v >= -17 && v <= 2345) << v;
  }
  EXPECT_FALSE(Accepts(c, "-0"));
  auto n = Schema(R"({"type": "number", "exclusiveMinimum": -2.5, "maximum": 3})");
  EXPECT_TRUE(Accepts(n, "3"));
  EXPECT_TRUE(Accepts(n, "2.999"));
  EXPECT_TRUE(Accepts(n, "-2.75") == false);
  EXPECT_TRUE(Accepts(n, "-1.5"));
  EXPECT_FALSE(Accepts(n, "3.5"));
  EXPECT_FALSE(Accepts(n, "3.0"));  // inward rounding: only the integer bound itself
}

TEST(StructuredJson, RefsAnyOfOneOfFormats) {
  auto c = Schema(R"({"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
      "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}}, "required": ["v"],
      "additionalProperties": false}},
      "type": "object", "properties": {"root": {"$ref": "#/$defs/node"},
      "when": {"type": "string", "format": "date-time"}, "id": {"type": "string", "format": "uuid"},
      "x": {"anyOf": [{"type": "null"}, {"type": "string", "format": "date"}]},
      "y": {"oneOf": [{"type": "boolean"}, {"type": "string", "format": "email"}]}},
      "required": ["root", "when", "id", "x", "y"], "additionalProperties": false})");
  const std::string id = R"("id": "123e4567-e89b-12d3-a456-426614174000")";
  EXPECT_TRUE(Accepts(c, R"({"root": {"v": 1, "kids": [{"v": 2}]}, "when": "2024-02-28T23:59:59.5+01:00", )" + id +
                             R"(, "x": null, "y": true})"));
  EXPECT_TRUE(Accepts(c, R"({"root": {"v": 1}, "when": "2024-01-31T00:00:00Z", )" + id +
                             R"(, "x": "1999-12-31", "y": "a.b@example.com"})"));
  EXPECT_FALSE(Accepts(c, R"({"root": {"v": 1}, "when": "2024-02-30T00:00:00Z", )" + id + R"(, "x": null, "y": true})"));
  EXPECT_FALSE(Accepts(c, R"({"root": {"v": 1}, "when": "2024-01-31T00:00:00", )" + id + R"(, "x": null, "y": true})"));
  // Whitespace is bounded (max_whitespace = 4 bytes per place).
  EXPECT_TRUE(Accepts(c, "{ \n  \"root\": {\"v\": 1}, \"when\": \"2024-01-31T00:00:00Z\", " + id + R"(, "x": null, "y": true})"));
  EXPECT_FALSE(Accepts(c, "{     \"root\": {\"v\": 1}, \"when\": \"2024-01-31T00:00:00Z\", " + id + R"(, "x": null, "y": true})"));
}

TEST(StructuredJson, UnsupportedKeywordsAreNamed) {
  auto err = [](const char* s) {
    auto c = CompileJsonSchema(json::parse(s), Index());
    EXPECT_FALSE(c.ok()) << s;
    if (c.ok()) return std::string();
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    return c.status().ToString();
  };
  EXPECT_NE(err(R"({"type": "object", "properties": {"p": {"type": "string", "contentEncoding": "base64"}}})")
                .find("unsupported keyword 'contentEncoding' at #/properties/p"),
            std::string::npos);
  EXPECT_NE(err(R"({"type": "string", "pattern": "(?=a)b"})").find("lookarounds"), std::string::npos);
  EXPECT_NE(err(R"({"type": "string", "pattern": "(a)\\1"})").find("backreferences"), std::string::npos);
  EXPECT_NE(err(R"({"type": "string", "pattern": "a", "maxLength": 3})").find("'pattern' together with"), std::string::npos);
  EXPECT_NE(err(R"({"type": "array", "uniqueItems": true})").find("'uniqueItems'"), std::string::npos);
  EXPECT_NE(err(R"({"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 3}]})").find("oneOf"), std::string::npos);
  EXPECT_NE(err(R"({"allOf": [{"type": "string"}, {"maxLength": 3}]})").find("allOf"), std::string::npos);
  EXPECT_NE(err(R"({"$ref": "http://example.com/s.json"})").find("$ref"), std::string::npos);
  EXPECT_NE(err(R"({"type": "string", "format": "hostname"})").find("'hostname'"), std::string::npos);
  EXPECT_NE(err(R"({"type": "integer", "minimum": 5, "maximum": 4})").find("minimum/maximum"), std::string::npos);
  EXPECT_NE(err(R"({"type": "bogus"})").find("unknown type"), std::string::npos);
  EXPECT_NE(err(R"({"type": "array", "minItems": 3, "maxItems": 2})").find("minItems"), std::string::npos);
  EXPECT_NE(err(R"({"type": "object", "properties": {"a": false}, "required": ["a"]})").find("never be satisfied"), std::string::npos);
  EXPECT_FALSE(CompileJsonSchema(json::parse("3"), Index()).ok());
}

TEST(StructuredJson, PatternsGenerateMatchingStrings) {
  auto c = Schema(R"({"type": "string", "pattern": "^\\+?[0-9]{1,3}-(\\d{3}|x)[.-]?[A-Z]{2}$"})");
  EXPECT_TRUE(Accepts(c, R"("+33-123AB")"));
  EXPECT_TRUE(Accepts(c, R"("1-x.ZZ")"));
  EXPECT_FALSE(Accepts(c, R"("1-12.ZZ")"));
  EXPECT_FALSE(Accepts(c, R"("1-x.Zz")"));
  auto q = Schema(R"({"type": "string", "pattern": "^[\"\\\\a]{2}[^a-z]$"})");
  EXPECT_TRUE(Accepts(q, R"("\"\\A")"));
  EXPECT_FALSE(Accepts(q, R"("\"\\a")"));
  EXPECT_FALSE(Accepts(q, "\"aa\u00e9\""));  // negated classes generate ASCII only
}

TEST(StructuredJson, OneOfWithDiscriminatorIsAccepted) {
  auto c = Schema(R"({"oneOf": [
      {"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}}, "required": ["kind"]},
      {"type": "object", "properties": {"kind": {"const": "b"}, "y": {"type": "string"}}, "required": ["kind"]}]})");
  EXPECT_TRUE(Accepts(c, R"({"kind": "a", "x": 1})"));
  EXPECT_FALSE(Accepts(c, R"({"kind": "a", "y": "s"})"));
}

TEST(StructuredJson, ExtraPropertiesNeverReuseDeclaredNames) {
  auto c = Schema(R"({"type": "object", "properties": {"ab": {"type": "integer"}}, "additionalProperties": {"type": "string"}})");
  EXPECT_TRUE(Accepts(c, R"({"ab": 1, "a": "x", "abc": "y"})"));
  EXPECT_TRUE(Accepts(c, R"({"zz": "x"})"));
  EXPECT_FALSE(Accepts(c, R"({"ab": "x"})"));
  EXPECT_FALSE(Accepts(c, R"({"ab": 1, "ab": "x"})"));
}

// The trie walk (with the string fast path) allows exactly the tokens that a byte-by-byte
// check of each token allows.
TEST(StructuredMatcher, MaskMatchesBruteForce) {
  auto c = Schema(R"({"type": "object", "properties": {"s": {"type": "string", "minLength": 2, "maxLength": 6},
      "n": {"type": "number"}, "e": {"enum": ["red", "green", "日本"]}}, "required": ["s", "n", "e"]})");
  const auto& v = *Index();
  for (const char* prefix : {"", "{", "{\"s\": \"", "{\"s\": \"a", "{\"s\": \"abcde", "{\"s\": \"ab\\", "{\"s\": \"\xe6",
                             "{\"s\": \"ab\", \"n\": -1", "{\"s\": \"ab\", \"n\": 1.5e", "{\"s\": \"ab\",\"n\":0,\"e\":\"",
                             "{\"s\": \"ab\",\"n\":0,\"e\":\"gr"}) {
    GrammarMatcher m(c);
    ASSERT_TRUE(m.AcceptBytes(prefix)) << prefix;
    TokenMask mask;
    ASSERT_TRUE(m.ComputeMask(&mask).ok());
    int allowed = 0;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    constexpr int32_t kStep = 7;  // sanitizer builds: the allowed tokens and every 7th other one
#else
    constexpr int32_t kStep = 1;
#endif
    for (int32_t id = 0; id < v.vocab_size(); ++id) {
      if (v.is_special(id) || (id % kStep != 0 && !MaskTest(mask, id))) continue;
      GrammarMatcher probe(c);
      ASSERT_TRUE(probe.AcceptBytes(prefix));
      const bool ok = !v.bytes(id).empty() && probe.AcceptBytes(v.bytes(id));
      ASSERT_EQ(MaskTest(mask, id), ok) << "prefix '" << prefix << "' token " << id << " '" << v.bytes(id) << "'";
      allowed += ok;
    }
    EXPECT_GT(allowed, 0) << prefix;
  }
}

TEST(StructuredMatcher, EndTokensOnlyWhenCompleteAndDone) {
  auto c = Schema(R"({"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]})");
  const auto& v = *Index();
  const int32_t im_end = v.special_id("<|im_end|>");
  ASSERT_GE(im_end, 0);
  GrammarMatcher m(c);
  TokenMask mask;
  ASSERT_TRUE(m.AcceptBytes("{\"a\": true"));
  ASSERT_TRUE(m.ComputeMask(&mask).ok());
  EXPECT_FALSE(MaskTest(mask, im_end));
  EXPECT_FALSE(m.Accept(im_end).ok());
  EXPECT_FALSE(m.Done());
  ASSERT_TRUE(m.AcceptBytes("}"));
  EXPECT_TRUE(m.Done());
  EXPECT_TRUE(m.CanEnd());
  ASSERT_TRUE(m.ComputeMask(&mask).ok());
  EXPECT_TRUE(MaskTest(mask, im_end));
  EXPECT_FALSE(MaskTest(mask, v.normal_id(" ")));
  // A top-level number may continue or end: end tokens allowed, not Done.
  auto n = Schema(R"({"type": "integer"})");
  GrammarMatcher mn(n);
  ASSERT_TRUE(mn.AcceptBytes("12"));
  EXPECT_TRUE(mn.CanEnd());
  EXPECT_FALSE(mn.Done());
  EXPECT_TRUE(mn.Accept(im_end).ok());
  EXPECT_TRUE(mn.Done());
}

TEST(StructuredMatcher, RejectsDisallowedTokensWithAnError) {
  auto c = Schema(R"({"type": "boolean"})");
  auto p = c->NewProcessor();
  const auto& v = *Index();
  EXPECT_FALSE(p->Accept(v.normal_id("hello")).ok());
  EXPECT_FALSE(p->Accept(-1).ok());
  EXPECT_TRUE(p->Accept(v.normal_id("true")).ok());
  EXPECT_TRUE(p->Done());
}

TEST(StructuredJson, JsonObjectModeWalksAreObjects) {
  auto c = CompileJsonObject(Index());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    auto p = (*c)->NewProcessor();
    auto w = testutil::RandomWalk(*p, *Index(), seed, 2000);
    ASSERT_TRUE(w.error.empty()) << w.error;
    ASSERT_TRUE(w.done) << w.text;
    auto j = json::parse(w.text, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << w.text;
    EXPECT_TRUE(j.is_object()) << w.text;
  }
}

TEST(StructuredToolCalls, WalksParseAsValidCalls) {
  const json tools = json::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
      "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["c", "f"]}}, "required": ["city"],
      "additionalProperties": false}}},
    {"type": "function", "function": {"name": "add", "parameters": {"type": "object",
      "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"], "additionalProperties": false}}}])");
  auto c = MakeToolCallConstraint(tools, "required", Index());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::vector<std::pair<json, std::string>> pairs;
  int calls = 0;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    auto p = (*c)->NewProcessor();
    auto w = testutil::RandomWalk(*p, *Index(), seed, 1000);
    ASSERT_TRUE(w.error.empty()) << w.error;
    ASSERT_TRUE(w.done) << w.text;
    chat::ChatOutputOptions o;
    o.thinking = false;
    auto parsed = chat::ParseChatOutput(w.text, o);
    EXPECT_TRUE(parsed.tool_call_errors.empty()) << w.text;
    ASSERT_FALSE(parsed.message.tool_calls.empty()) << w.text;
    EXPECT_EQ(parsed.message.content, "") << w.text;
    for (const auto& tc : parsed.message.tool_calls) {
      const int i = tc.name == "get_weather" ? 0 : tc.name == "add" ? 1 : -1;
      ASSERT_GE(i, 0) << tc.name;
      pairs.push_back({tools[i]["function"]["parameters"], tc.arguments.dump()});
      ++calls;
    }
  }
  for (const std::string& e : testutil::ValidateWithPython(pairs)) EXPECT_EQ(e, "");
  // A named function: exactly one call of it.
  auto named = MakeToolCallConstraint(tools, json::parse(R"({"type": "function", "function": {"name": "add"}})"), Index());
  ASSERT_TRUE(named.ok()) << named.status().ToString();
  auto p = (*named)->NewProcessor();
  auto w = testutil::RandomWalk(*p, *Index(), 99, 1000);
  ASSERT_TRUE(w.done) << w.text << w.error;
  chat::ChatOutputOptions no_think;
  no_think.thinking = false;
  auto parsed = chat::ParseChatOutput(w.text, no_think);
  ASSERT_EQ(parsed.message.tool_calls.size(), 1u) << w.text;
  EXPECT_EQ(parsed.message.tool_calls[0].name, "add");
  // auto: no constraint; errors are named.
  auto none = MakeToolCallConstraint(tools, "auto", Index());
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, nullptr);
  EXPECT_FALSE(MakeToolCallConstraint(tools, json::parse(R"({"function": {"name": "nope"}})"), Index()).ok());
  EXPECT_FALSE(MakeToolCallConstraint(json::array(), "required", Index()).ok());
  EXPECT_FALSE(MakeToolCallConstraint(tools, "sometimes", Index()).ok());
}

TEST(StructuredThinking, BudgetForcesCloseThenConstrainedAnswer) {
  auto c = Schema(R"({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false})");
  const auto& v = *Index();
  for (int budget : {0, 3, 10}) {
    ThinkingOptions o;
    o.budget = budget;
    auto p = MakeThinkingBudget(c->NewProcessor(), Index(), o);
    auto w = testutil::RandomWalk(*p, v, 7 + budget, 500);
    ASSERT_TRUE(w.error.empty()) << w.error;
    ASSERT_TRUE(w.done) << w.text;
    ASSERT_EQ(w.text.rfind("<think>", 0), 0u) << w.text;
    auto parsed = chat::ParseChatOutput(w.text, {});
    ASSERT_TRUE(parsed.message.reasoning_content.has_value());
    // <think> + at most `budget` tokens + </think> + newlines + the answer.
    const auto close = std::find(w.ids.begin(), w.ids.end(), v.special_id("</think>"));
    ASSERT_NE(close, w.ids.end());
    EXPECT_LE(close - w.ids.begin() - 1, budget);
  }
  EXPECT_TRUE(ResolveThinking(std::nullopt, {"hi"}));
  EXPECT_FALSE(ResolveThinking(std::nullopt, {"hi /no_think"}));
  EXPECT_TRUE(ResolveThinking(std::nullopt, {"a /no_think", "b /think"}));
  EXPECT_FALSE(ResolveThinking(false, {"b /think"}));
}

}  // namespace
}  // namespace qwenmux::structured

namespace qwenmux::structured {
namespace {

// One compiled constraint (and its shared mask cache) used by several sequences at once.
TEST(StructuredConcurrent, SharedConstraintAcrossThreads) {
  auto c = CompileJsonSchema(json::parse(R"({"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
      "n": {"type": "integer"}, "tags": {"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 3}},
      "required": ["name", "n", "tags"], "additionalProperties": false})"), testutil::Index());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  constexpr int kThreads = 4, kWalks = 3;
  std::vector<std::string> texts(kThreads * kWalks), errors(kThreads * kWalks);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < kWalks; ++k) {
        auto p = (*c)->NewProcessor();
        auto w = testutil::RandomWalk(*p, *testutil::Index(), 100 * t + k, 400);
        texts[t * kWalks + k] = w.text;
        errors[t * kWalks + k] = w.done ? w.error : "not done: " + w.error;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(errors[i], "");
    auto j = json::parse(texts[i], nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << texts[i];
    EXPECT_TRUE(j.at("name").is_string() && j.at("n").is_number_integer() && j.at("tags").is_array()) << texts[i];
  }
  EXPECT_GT((*c)->cache_hits(), 0u);
}

}  // namespace
}  // namespace qwenmux::structured

namespace qwenmux::structured {
namespace {

TEST(StructuredApi, OpenAiAndOllamaFormatsAndCache) {
  auto v = testutil::Index();
  auto none = FromOpenAiResponseFormat(json::parse(R"({"type": "text"})"), v);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, nullptr);
  auto obj = FromOpenAiResponseFormat(json::parse(R"({"type": "json_object"})"), v);
  ASSERT_TRUE(obj.ok() && *obj);
  EXPECT_TRUE(GrammarMatcher(*obj).AcceptBytes("{\"k\": [1, {}]}"));
  auto sch = FromOpenAiResponseFormat(json::parse(R"({"type": "json_schema", "json_schema": {"name": "x", "strict": true,
      "schema": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false}}})"), v);
  ASSERT_TRUE(sch.ok() && *sch) << sch.status().ToString();
  EXPECT_FALSE(GrammarMatcher(*sch).AcceptBytes("{\"b\""));
  auto bad = FromOpenAiResponseFormat(json::parse(R"({"type": "json_schema", "json_schema": {"schema": {"not": {}}}})"), v);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().ToString().find("unsupported keyword 'not'"), std::string::npos) << bad.status().ToString();
  EXPECT_FALSE(FromOpenAiResponseFormat(json::parse(R"({"type": "xml"})"), v).ok());
  auto o1 = FromOllamaFormat("json", v);
  ASSERT_TRUE(o1.ok() && *o1);
  auto o2 = FromOllamaFormat(json::parse(R"({"type": "array", "items": {"type": "boolean"}})"), v);
  ASSERT_TRUE(o2.ok() && *o2);
  EXPECT_TRUE(GrammarMatcher(*o2).AcceptBytes("[true]"));
  auto o3 = FromOllamaFormat(json(nullptr), v);
  ASSERT_TRUE(o3.ok());
  EXPECT_EQ(*o3, nullptr);
  EXPECT_FALSE(FromOllamaFormat("yaml", v).ok());

  ConstraintCache cache(/*max_bytes=*/size_t{64} << 20, /*max_entries=*/2);
  int compiles = 0;
  auto get = [&](const std::string& key) {
    return cache.GetOrCompile(*v, key, [&]() -> Result<Constraint> {
      ++compiles;
      return FromOllamaFormat(json::parse(key), v);
    });
  };
  auto a = get(R"({"type": "boolean"})");
  auto b = get(R"({"type": "boolean"})");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(compiles, 1);
  ASSERT_TRUE(get(R"({"type": "integer"})").ok());
  ASSERT_TRUE(get(R"({"type": "string"})").ok());
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_FALSE(get(R"({"type": "bogus"})").ok());
  EXPECT_EQ(cache.size(), 2u);
}

}  // namespace
}  // namespace qwenmux::structured
