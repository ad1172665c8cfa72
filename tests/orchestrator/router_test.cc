// Router: feature extraction and the routing decision, table-driven.
#include "orchestrator/router/router.h"

#include <algorithm>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

// The tables name only the fields a case sets (designated initializers).
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace qwenmux::orchestrator {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t GiB = 1ull << 30;

// The default tiers with their footprints at a 16k context, roughly as the memory estimator
// gives them.
std::vector<RouterCandidate> Tiers() {
  std::vector<RouterCandidate> c(4);
  c[0] = {"qwen3-fast", {"fast", "qwen3:1.7b-q4_k_m"}, "qwen3-fast", ModelRole::kChat, 2'030'000'000, "1.7B Q4_K_M", "Q4_K_M", 3 * GiB / 2};
  c[1] = {"qwen3-balanced", {"qwen3:8b-q8_0"}, "qwen3-balanced", ModelRole::kChat, 8'190'000'000, "8B Q8_0", "Q8_0", 19 * GiB / 2};
  c[2] = {"qwen3-quality", {"qwen3:14b-q8_0"}, "qwen3-quality", ModelRole::kChat, 14'770'000'000, "14B Q8_0", "Q8_0", 16 * GiB};
  c[3] = {"qwen3-max", {"qwen3:30b-a3b-q8_0"}, "qwen3-max", ModelRole::kChat, 30'530'000'000, "30B-A3B Q8_0", "Q8_0", 33 * GiB};
  return c;
}

const char* kHello = "hi, what's the capital of France?";
const char* kCode = "Fix this function:\n```python\ndef add(a, b):\n    return a - b\n```";
const char* kHard = "Prove that the integral of x^2 from 0 to 1 is 1/3, step by step, and compare two methods.";

struct Case {
  const char* name;
  std::string requested = "auto";
  std::string text = kHello;
  std::optional<bool> thinking;
  size_t tools = 0;
  bool schema = false;
  std::string latency;  // request field
  std::vector<RouterModelState> loaded;
  uint64_t free_bytes = 64 * GiB;
  uint64_t evictable = 0;
  std::string want_model;
  RouteReason want_reason;
  std::string want_in_explanation;
};

class RouterTable : public ::testing::TestWithParam<Case> {};

TEST_P(RouterTable, Decides) {
  const Case& c = GetParam();
  RequestInput in;
  in.texts = {c.text};
  in.enable_thinking = c.thinking;
  in.n_tools = c.tools;
  in.json_schema = c.schema;
  in.latency_field = c.latency;
  auto f = ExtractFeatures(in);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  RouterState s{c.loaded, c.free_bytes, c.evictable};
  std::vector<RouterCandidate> cands = Tiers();
  auto d = Route(c.requested, *f, cands, s);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->model, c.want_model) << d->explanation;
  EXPECT_STREQ(d->reason_code(), RouteReasonName(c.want_reason)) << d->explanation;
  EXPECT_THAT(d->explanation, HasSubstr(c.want_in_explanation));
  // Deterministic and independent of the candidates' order.
  std::reverse(cands.begin(), cands.end());
  auto again = Route(c.requested, *f, cands, s);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->model, d->model);
  EXPECT_EQ(again->explanation, d->explanation);
}

// The seed document's select_optimal_model cases (see router.h) and the rest.
INSTANTIATE_TEST_SUITE_P(
    SeedCases, RouterTable,
    ::testing::Values(
        Case{.name = "TightLatencyGetsFast", .text = kHard, .thinking = true, .latency = "low",
             .want_model = "qwen3-fast", .want_reason = RouteReason::kLatency,
             .want_in_explanation = "latency low caps the choice at qwen3-fast"},
        Case{.name = "ComplexWithAmpleMemoryGetsQuality", .text = kHard, .thinking = true,
             .want_model = "qwen3-quality", .want_reason = RouteReason::kComplexity,
             .want_in_explanation = "=> complex complexity"},
        Case{.name = "MediumGetsBalanced", .text = kCode, .want_model = "qwen3-balanced",
             .want_reason = RouteReason::kComplexity, .want_in_explanation = "code markers"},
        Case{.name = "LowMemoryGetsLargestThatFits", .text = kHard, .thinking = true,
             .free_bytes = 10 * GiB, .want_model = "qwen3-balanced", .want_reason = RouteReason::kMemory,
             .want_in_explanation = "qwen3-quality not loaded and would need 16.0 GiB > 10.0 GiB free"},
        Case{.name = "VeryLowMemoryGetsFast", .text = kHard, .thinking = true, .free_bytes = 4 * GiB,
             .want_model = "qwen3-fast", .want_reason = RouteReason::kMemory,
             .want_in_explanation = "would need 16.0 GiB > 4.0 GiB free"}),
    [](const auto& info) { return std::string(info.param.name); });

INSTANTIATE_TEST_SUITE_P(
    More, RouterTable,
    ::testing::Values(
        Case{.name = "SimpleGetsFast", .want_model = "qwen3-fast", .want_reason = RouteReason::kComplexity,
             .want_in_explanation = "auto -> qwen3-fast (1.7B Q4_K_M): ~9-token prompt => simple complexity"},
        Case{.name = "EmptyModelMeansAuto", .requested = "", .want_model = "qwen3-fast",
             .want_reason = RouteReason::kComplexity, .want_in_explanation = "auto ->"},
        Case{.name = "ToolsAndSchemaAreMedium", .tools = 2, .schema = true, .want_model = "qwen3-balanced",
             .want_reason = RouteReason::kComplexity, .want_in_explanation = "JSON schema + tools"},
        Case{.name = "HardestGetsMax", .text = std::string(kHard) + " " + std::string(kCode) + std::string(20000, 'a'),
             .thinking = true, .want_model = "qwen3-max", .want_reason = RouteReason::kComplexity,
             .want_in_explanation = "hardest complexity"},
        Case{.name = "ThinkingOffLowersTheScore", .text = kCode, .thinking = false, .want_model = "qwen3-fast",
             .want_reason = RouteReason::kComplexity, .want_in_explanation = "thinking off"},
        Case{.name = "LoadedBiggerModelBeatsASwitch", .text = kCode,
             .loaded = {{"qwen3-quality", true, 0}}, .free_bytes = 40 * GiB,
             .want_model = "qwen3-quality", .want_reason = RouteReason::kLoaded,
             .want_in_explanation = "qwen3-quality is loaded and meets the need; qwen3-balanced is not loaded"},
        Case{.name = "LoadedSmallerModelDoesNotMeetTheNeed", .text = kHard, .thinking = true,
             .loaded = {{"qwen3-balanced", true, 0}}, .free_bytes = 30 * GiB,
             .want_model = "qwen3-quality", .want_reason = RouteReason::kComplexity,
             .want_in_explanation = "needs 16.0 GiB of 30.0 GiB free"},
        Case{.name = "EvictsIdleModelsToFit", .text = kHard, .thinking = true,
             .loaded = {{"qwen3-balanced", true, 0}}, .free_bytes = 8 * GiB, .evictable = 19 * GiB / 2,
             .want_model = "qwen3-quality", .want_reason = RouteReason::kComplexity,
             .want_in_explanation = "evicting idle models"},
        Case{.name = "NothingFits", .text = kHard, .free_bytes = GiB, .want_model = "qwen3-fast",
             .want_reason = RouteReason::kNoFit, .want_in_explanation = "nothing fits"},
        Case{.name = "ShortBudgetWithoutSpeedsGetsFast", .text = kHard, .thinking = true, .latency = "800ms",
             .want_model = "qwen3-fast", .want_reason = RouteReason::kLatency,
             .want_in_explanation = "latency budget 800 ms rules out qwen3-quality"},
        Case{.name = "MediumBudgetWithoutSpeedsGetsBalanced", .text = kHard, .thinking = true, .latency = "3000",
             .want_model = "qwen3-balanced", .want_reason = RouteReason::kLatency,
             .want_in_explanation = "latency budget 3000 ms"},
        Case{.name = "RelaxedLatencyChangesNothing", .text = kHard, .thinking = true, .latency = "high",
             .want_model = "qwen3-quality", .want_reason = RouteReason::kComplexity,
             .want_in_explanation = "complex complexity"},
        Case{.name = "ExplicitName", .requested = "qwen3-max", .want_model = "qwen3-max",
             .want_reason = RouteReason::kExplicit, .want_in_explanation = "requested by name (not loaded)"},
        Case{.name = "CatalogAlias", .requested = "qwen3:14b-q8_0", .loaded = {{"qwen3-quality", true, 3}},
             .want_model = "qwen3-quality", .want_reason = RouteReason::kExplicit,
             .want_in_explanation = "qwen3:14b-q8_0 -> qwen3-quality (14B Q8_0): requested by name"},
        Case{.name = "ConfigAlias", .requested = "fast", .want_model = "qwen3-fast",
             .want_reason = RouteReason::kExplicit, .want_in_explanation = "fast -> qwen3-fast"}),
    [](const auto& info) { return std::string(info.param.name); });

RequestFeatures Features(const std::string& text, std::string_view latency = "") {
  RequestInput in;
  in.texts = {text};
  in.latency_field = latency;
  auto f = ExtractFeatures(in);
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  return f.ok() ? *f : RequestFeatures{};
}

TEST(RouterTest, TierAliasResolvesToTheTierWhateverTheName) {
  std::vector<RouterCandidate> c = Tiers();
  c[1].name = "general";
  c[1].aliases.clear();
  auto d = Route("QWEN3-Balanced", Features(kHello), c, {});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->model, "general");
  EXPECT_EQ(d->reason, RouteReason::kAlias);
  EXPECT_EQ(d->tier, "qwen3-balanced");
}

TEST(RouterTest, UnknownModelListsWhatExists) {
  auto d = Route("qwen3-huge", Features(kHello), Tiers(), {});
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(d.status().message(), HasSubstr("no model \"qwen3-huge\""));
  EXPECT_THAT(d.status().message(), HasSubstr("qwen3-fast, qwen3-balanced, qwen3-quality, qwen3-max"));
  EXPECT_THAT(d.status().message(), HasSubstr("\"auto\""));
}

TEST(RouterTest, DefaultModelForRequestsNamingNone) {
  RouterPolicy p;
  p.default_model = "qwen3-balanced";
  auto d = Route("", Features(kHello), Tiers(), {}, p);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->model, "qwen3-balanced");
  EXPECT_EQ(d->reason, RouteReason::kDefault);
  p.default_model = "missing";
  auto bad = Route("", Features(kHello), Tiers(), {}, p);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().ToString(), HasSubstr("router.default"));
  // "auto" as the default routes automatically.
  p.default_model = "auto";
  auto a = Route("", Features(kCode), Tiers(), {.free_bytes = 64 * GiB}, p);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->model, "qwen3-balanced");
  EXPECT_EQ(a->reason, RouteReason::kComplexity);
}

TEST(RouterTest, QueuesDecideBetweenEqualModels) {
  std::vector<RouterCandidate> c = Tiers();
  RouterCandidate other = c[1];
  other.name = "x-8b";
  other.tier = "";  // ranked from its 8.2B parameters: balanced
  other.aliases.clear();
  c.push_back(other);
  // Both loaded: the idle one, though the busy one sorts first by name.
  RouterState s{{{"qwen3-balanced", true, 1}, {"x-8b", true, 0}}, 12 * GiB, 0};
  auto d = Route("auto", Features(kCode), c, s);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->model, "x-8b");
  EXPECT_EQ(d->reason, RouteReason::kQueue);
  EXPECT_THAT(d->explanation, HasSubstr("qwen3-balanced has 1 requests queued; x-8b has 0"));
  // Only one loaded, with a shallow queue: it is used (no switch).
  s.models = {{"qwen3-balanced", true, 3}};
  d = Route("auto", Features(kCode), c, s);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->model, "qwen3-balanced");
  EXPECT_EQ(d->reason, RouteReason::kComplexity);
  // A deep queue (>= policy.deep_queue): loading an equal idle model is preferred.
  s.models = {{"qwen3-balanced", true, 4}};
  d = Route("auto", Features(kCode), c, s);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->model, "x-8b");
  EXPECT_EQ(d->reason, RouteReason::kQueue);
  EXPECT_TRUE(d->switch_needed);
  // Without another model that meets the need and fits, a deep queue is still used.
  s.free_bytes = 2 * GiB;
  d = Route("auto", Features(kCode), c, s);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->model, "qwen3-balanced");
}

TEST(RouterTest, KnownSpeedsDecideTheLatencyBudget) {
  std::vector<RouterCandidate> c = Tiers();
  const double prefill[] = {400, 60, 30, 50};
  for (size_t i = 0; i < c.size(); ++i) c[i].prefill_tok_s = prefill[i];
  RouterState all_loaded{{{"qwen3-fast", true, 0}, {"qwen3-balanced", true, 0}, {"qwen3-quality", true, 0},
                          {"qwen3-max", true, 0}}, 0, 0};
  // ~1k tokens of a complex prompt; quality prefills it in ~36 s, balanced in ~18 s.
  std::string prompt = std::string(kHard) + " " + std::string(4000, 'x');
  RequestInput in;
  in.texts = {prompt};
  in.enable_thinking = true;
  in.latency_field = "21s";
  auto f = ExtractFeatures(in);
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->complexity, Complexity::kComplex);
  auto d = Route("auto", *f, c, all_loaded);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->model, "qwen3-max") << d->explanation;  // ~1.0k tokens / 50 tok/s = 20.5 s
  in.latency_field = "10s";
  f = ExtractFeatures(in);
  d = Route("auto", *f, c, all_loaded);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->model, "qwen3-fast") << d->explanation;
  EXPECT_EQ(d->reason, RouteReason::kLatency);
  EXPECT_THAT(d->explanation, HasSubstr("rules out qwen3-quality (est."));
  // "normal" uses the policy's TTFT target where speeds are known.
  in.latency_field = "";
  f = ExtractFeatures(in);
  RouterPolicy p;
  p.ttft_target_ms = 25000;
  d = Route("auto", *f, c, all_loaded, p);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->model, "qwen3-max") << d->explanation;
  p.ttft_target_ms = 60000;
  d = Route("auto", *f, c, all_loaded, p);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->model, "qwen3-quality") << d->explanation;
}

TEST(RouterTest, NonChatRolesRouteAmongTheirModels) {
  std::vector<RouterCandidate> c = Tiers();
  c.push_back({"embed", {}, "", ModelRole::kEmbedding, 600'000'000, "", "Q8_0", GiB});
  c.push_back({"embed-big", {}, "", ModelRole::kEmbedding, 8'000'000'000, "", "Q8_0", 9 * GiB});
  RequestInput in;
  in.texts = {"a document"};
  in.role = ModelRole::kEmbedding;
  auto f = ExtractFeatures(in);
  ASSERT_TRUE(f.ok());
  auto d = Route("auto", *f, c, {});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->model, "embed");
  d = Route("auto", *f, c, {{{"embed-big", true, 0}}, 0, 0});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->model, "embed-big");
  in.role = ModelRole::kReranker;
  f = ExtractFeatures(in);
  auto none = Route("auto", *f, c, {});
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(none.status().message(), HasSubstr("no reranker model"));
}

TEST(RouterTest, ClassifierOverridesTheRules) {
  RequestInput in;
  in.texts = {kHello};
  in.classified = Complexity::kComplex;
  auto f = ExtractFeatures(in);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->rule_complexity, Complexity::kSimple);
  auto d = Route("auto", *f, Tiers(), {.free_bytes = 64 * GiB});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->model, "qwen3-quality");
  EXPECT_THAT(d->explanation, HasSubstr("fast-model classification; rules said simple"));
}

TEST(RouterFeaturesTest, Markers) {
  EXPECT_TRUE(Features("#include <stdio.h>\nint main() { return 0; }").code);
  EXPECT_FALSE(Features("Tell me about the history of France.").code);
  EXPECT_TRUE(Features("Solve 3x + 2 = 11 for x").math);
  EXPECT_TRUE(Features("What is \\frac{1}{2} of 8?").math);
  EXPECT_FALSE(Features("I have 2 cats and 3 dogs").math);
  EXPECT_TRUE(Features("Think step by step.").reasoning);
  EXPECT_TRUE(Features("COMPARE these two options").reasoning);  // case-insensitive
  EXPECT_FALSE(Features("hello there").reasoning);
}

TEST(RouterFeaturesTest, TokenEstimateAndScore) {
  RequestFeatures f = Features(std::string(4000, 'a'));
  EXPECT_EQ(f.prompt_tokens, 1000);
  EXPECT_EQ(f.score, 1);
  EXPECT_EQ(f.complexity, Complexity::kMedium);
  EXPECT_EQ(Features(std::string(16000, 'a')).score, 2);
  EXPECT_EQ(Features(std::string(64000, 'a')).score, 3);
  // CJK: one token per code point (3 UTF-8 bytes each).
  EXPECT_EQ(Features("\xe4\xbd\xa0\xe5\xa5\xbd").prompt_tokens, 2);
  RequestInput in;
  in.texts = {"short"};
  in.prompt_tokens = 5000;
  auto exact = ExtractFeatures(in);
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->prompt_tokens, 5000);
  EXPECT_THAT(exact->summary, HasSubstr("5.0k-token prompt"));
  EXPECT_EQ(exact->score, 2);
}

TEST(RouterFeaturesTest, Latency) {
  EXPECT_EQ(Features("x", "low").latency.cls, LatencyClass::kLow);
  EXPECT_EQ(Features("x", "Interactive").latency.cls, LatencyClass::kLow);
  EXPECT_EQ(Features("x", "batch").latency.cls, LatencyClass::kRelaxed);
  EXPECT_EQ(Features("x", "").latency.cls, LatencyClass::kNormal);
  RequestFeatures f = Features("x", "1.5s");
  EXPECT_EQ(f.latency.cls, LatencyClass::kBudget);
  EXPECT_EQ(f.latency.budget_ms, 1500);
  EXPECT_EQ(Features("x", "250").latency.budget_ms, 250);
  // The field wins over the header.
  RequestInput in;
  in.texts = {"x"};
  in.latency_field = "low";
  in.latency_header = "high";
  EXPECT_EQ(ExtractFeatures(in)->latency.cls, LatencyClass::kLow);
  in.latency_field = "";
  EXPECT_EQ(ExtractFeatures(in)->latency.cls, LatencyClass::kRelaxed);
  for (const char* bad : {"soon", "-5", "0", "5x", "-1", "999999999999"}) {
    in.latency_header = bad;
    auto r = ExtractFeatures(in);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().ToString(), HasSubstr("X-Qwenmux-Latency"));
  }
}

TEST(RouterFeaturesTest, Classifier) {
  auto m = ClassificationMessages("hello " + std::string(5000, 'x'), 100);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].role, chat::ChatRole::kSystem);
  EXPECT_THAT(m[0].content, HasSubstr("hardest"));
  EXPECT_EQ(m[1].content.size(), 100u);
  // Cut at a UTF-8 boundary: 3-byte characters, 100 bytes -> 99.
  std::string cjk;
  for (int i = 0; i < 50; ++i) cjk += "\xe4\xbd\xa0";
  EXPECT_EQ(ClassificationMessages(cjk, 100)[1].content.size(), 99u);
  EXPECT_EQ(*ParseClassification("Complex"), Complexity::kComplex);
  EXPECT_EQ(*ParseClassification(" medium.\n"), Complexity::kMedium);
  EXPECT_EQ(*ParseClassification("simple, not complex"), Complexity::kSimple);  // the first named
  EXPECT_FALSE(ParseClassification("I think it is hard").ok());
  EXPECT_FALSE(ParseClassification("").ok());
}

TEST(RouterFeaturesTest, FromChatRequest) {
  chat::ChatRequest req;
  req.messages.push_back({chat::ChatRole::kSystem, "You are terse."});
  req.messages.push_back({chat::ChatRole::kUser, "def f(x): return x  # fix"});
  req.options.enable_thinking = false;
  req.options.tools = nlohmann::ordered_json::array({{{"type", "function"}}});
  auto f = ExtractFeatures(InputFromChat(req));
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->code);
  EXPECT_TRUE(f->tools);
  EXPECT_EQ(f->thinking, std::optional<bool>(false));
  EXPECT_EQ(f->score, 1);  // code + tools - thinking off
}

}  // namespace
}  // namespace qwenmux::orchestrator
