// The sampler chain on hand-built logits: each stage (penalties, penalty_last_n, temperature,
// top-k, top-p, min-p, seed) against values worked out by hand, so a stage that became a no-op
// or was inverted fails. Frequencies come from 20000 seeded draws (deterministic); the bounds
// are about 5 binomial standard deviations.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "engine/sampler.h"

namespace qwenmux::engine {
namespace {

SamplerOptions Plain() {  // every stage off, greedy
  SamplerOptions o;
  o.temperature = 0;
  o.top_k = 0;
  o.top_p = 1;
  o.min_p = 0;
  o.repetition_penalty = 1;
  o.presence_penalty = 0;
  o.frequency_penalty = 0;
  o.penalty_last_n = 64;
  o.seed = 7;
  return o;
}

constexpr int kDraws = 20000;

// Frequency of each token over kDraws draws from one sampler (fresh copy of the logits each time).
std::vector<double> Frequencies(const SamplerOptions& o, const std::vector<float>& logits) {
  Sampler s(o);
  std::vector<double> f(logits.size());
  for (int i = 0; i < kDraws; ++i) {
    std::vector<float> l = logits;
    const int32_t t = s.Sample(l, {});
    EXPECT_GE(t, 0);
    EXPECT_LT(t, static_cast<int32_t>(logits.size()));
    if (t >= 0 && t < static_cast<int32_t>(f.size())) f[t] += 1;
  }
  for (double& x : f) x /= kDraws;  // counts first: a token drawn every time gives exactly 1
  return f;
}

std::vector<float> LogProbs(const std::vector<double>& p) {
  std::vector<float> l;
  for (double x : p) l.push_back(static_cast<float>(std::log(x)));
  return l;
}

TEST(SamplerChain, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  SamplerOptions o = Plain();
  o.repetition_penalty = 2.0f;
  std::vector<float> l = {2.0f, 1.0f, -1.0f, 0.5f};
  const std::vector<int32_t> history = {0, 2, 0};  // counted once each, whatever the count
  Sampler s(o);
  s.Sample(l, history);
  EXPECT_FLOAT_EQ(l[0], 1.0f);   // 2 / 2
  EXPECT_FLOAT_EQ(l[1], 1.0f);   // not in the history
  EXPECT_FLOAT_EQ(l[2], -2.0f);  // -1 * 2
  EXPECT_FLOAT_EQ(l[3], 0.5f);
  // Greedy after the penalty: token 0 (2.0) loses to token 1 (1.9).
  std::vector<float> g = {2.0f, 1.9f};
  EXPECT_EQ(Sampler(o).Sample(g, std::vector<int32_t>{0}), 1);
  std::vector<float> g2 = {2.0f, 1.9f};
  EXPECT_EQ(Sampler(Plain()).Sample(g2, std::vector<int32_t>{0}), 0);
}

TEST(SamplerChain, PresenceAndFrequencyPenaltiesSubtract) {
  SamplerOptions o = Plain();
  o.presence_penalty = 0.25f;
  o.frequency_penalty = 0.5f;
  std::vector<float> l = {0.0f, 1.0f, 1.0f, 1.0f};
  Sampler(o).Sample(l, std::vector<int32_t>{1, 1, 1, 2});
  EXPECT_FLOAT_EQ(l[0], 0.0f);
  EXPECT_FLOAT_EQ(l[1], 1.0f - (3 * 0.5f + 0.25f));
  EXPECT_FLOAT_EQ(l[2], 1.0f - (1 * 0.5f + 0.25f));
  EXPECT_FLOAT_EQ(l[3], 1.0f);
  // Negative values reward repeats.
  o.presence_penalty = -1.0f;
  o.frequency_penalty = 0;
  std::vector<float> r = {1.0f, 0.5f};
  EXPECT_EQ(Sampler(o).Sample(r, std::vector<int32_t>{1}), 1);
}

TEST(SamplerChain, PenaltyLastNLimitsTheWindow) {
  SamplerOptions o = Plain();
  o.presence_penalty = 1.0f;
  o.penalty_last_n = 2;
  std::vector<float> l = {1.0f, 1.0f, 1.0f, 1.0f};
  Sampler(o).Sample(l, std::vector<int32_t>{0, 1, 2, 3});
  EXPECT_FLOAT_EQ(l[0], 1.0f);  // outside the last 2
  EXPECT_FLOAT_EQ(l[1], 1.0f);
  EXPECT_FLOAT_EQ(l[2], 0.0f);
  EXPECT_FLOAT_EQ(l[3], 0.0f);
  o.penalty_last_n = 0;  // off
  std::vector<float> z = {1.0f, 1.0f};
  Sampler(o).Sample(z, std::vector<int32_t>{0, 1});
  EXPECT_FLOAT_EQ(z[0], 1.0f);
  EXPECT_FLOAT_EQ(z[1], 1.0f);
  o.penalty_last_n = 100;  // longer than the history: all of it
  std::vector<float> a = {1.0f, 1.0f, 1.0f};
  Sampler(o).Sample(a, std::vector<int32_t>{0, 1});
  EXPECT_FLOAT_EQ(a[0], 0.0f);
  EXPECT_FLOAT_EQ(a[1], 0.0f);
  EXPECT_FLOAT_EQ(a[2], 1.0f);
}

TEST(SamplerChain, TemperatureScalesTheLogits) {
  // Two tokens, logits 1 and 0: P(token 0) = 1 / (1 + e^(-1/T)).
  for (const float t : {0.5f, 1.0f, 2.0f}) {
    SamplerOptions o = Plain();
    o.temperature = t;
    const auto f = Frequencies(o, {1.0f, 0.0f});
    const double expect = 1.0 / (1.0 + std::exp(-1.0 / t));  // 0.881, 0.731, 0.622
    EXPECT_NEAR(f[0], expect, 0.015) << "T=" << t;
  }
}

TEST(SamplerChain, TopKKeepsTheKBest) {
  SamplerOptions o = Plain();
  o.temperature = 1;
  o.top_k = 2;
  const auto f = Frequencies(o, {3.0f, 2.0f, 1.0f, 0.0f});
  EXPECT_EQ(f[2], 0.0);
  EXPECT_EQ(f[3], 0.0);
  EXPECT_NEAR(f[0], std::exp(3.0) / (std::exp(3.0) + std::exp(2.0)), 0.015);  // 0.731
  o.top_k = 1;
  EXPECT_EQ(Frequencies(o, {1.0f, 3.0f, 2.0f})[1], 1.0);
}

TEST(SamplerChain, TopPKeepsTheSmallestPrefixWithTheMass) {
  SamplerOptions o = Plain();
  o.temperature = 1;
  o.top_p = 0.75f;  // {0.5, 0.3} reach 0.8 >= 0.75; 0.5 alone does not
  const auto f = Frequencies(o, LogProbs({0.5, 0.3, 0.15, 0.05}));
  EXPECT_EQ(f[2], 0.0);
  EXPECT_EQ(f[3], 0.0);
  EXPECT_NEAR(f[0], 0.5 / 0.8, 0.015);
  o.top_p = 0.4f;  // the best token alone
  EXPECT_EQ(Frequencies(o, LogProbs({0.3, 0.5, 0.2}))[1], 1.0);
  o.top_p = 1.0f;  // off: every token shows up at its probability
  const auto all = Frequencies(o, LogProbs({0.5, 0.3, 0.15, 0.05}));
  EXPECT_NEAR(all[3], 0.05, 0.008);
}

TEST(SamplerChain, MinPDropsTokensBelowAFractionOfTheBest) {
  SamplerOptions o = Plain();
  o.temperature = 1;
  o.min_p = 0.2f;  // floor 0.2 * 0.5 = 0.1: token 3 (0.05) goes, token 2 (0.15) stays
  const auto f = Frequencies(o, LogProbs({0.5, 0.3, 0.15, 0.05}));
  EXPECT_EQ(f[3], 0.0);
  EXPECT_NEAR(f[2], 0.15 / 0.95, 0.012);
  EXPECT_NEAR(f[0], 0.5 / 0.95, 0.015);
}

TEST(SamplerChain, SeedFixesTheDraws) {
  SamplerOptions o = Plain();
  o.temperature = 1;
  const std::vector<float> logits(64, 0.0f);  // uniform over 64 tokens
  auto draws = [&](uint64_t seed) {
    SamplerOptions s = o;
    s.seed = seed;
    Sampler sampler(s);
    std::vector<int32_t> out;
    for (int i = 0; i < 32; ++i) {
      std::vector<float> l = logits;
      out.push_back(sampler.Sample(l, {}));
    }
    return out;
  };
  EXPECT_EQ(draws(1), draws(1));
  EXPECT_NE(draws(1), draws(2));
}

TEST(SamplerChain, BadOptionsAreErrors) {
  SamplerOptions o = Plain();
  o.top_p = 0;
  EXPECT_NE(o.Validate().message().find("top_p"), std::string::npos);
  o = Plain();
  o.penalty_last_n = -1;
  EXPECT_NE(o.Validate().message().find("penalty_last_n"), std::string::npos);
  o = Plain();
  o.temperature = -1;
  EXPECT_NE(o.Validate().message().find("temperature"), std::string::npos);
  EXPECT_TRUE(Plain().Validate().ok());
}

// SelectTopLogits against a full sort by (logit descending, token ascending), with many ties
// and infinities, for list lengths up to kMaxTopLogits.
TEST(TopLogits, SelectionEqualsAFullSort) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 40; ++trial) {
    const int32_t n = 64 + static_cast<int32_t>(rng() % 3000);
    std::vector<float> row(static_cast<size_t>(n));
    for (float& v : row) v = static_cast<float>(static_cast<int>(rng() % 200) - 100) / 8.0f;  // ties
    row[rng() % n] = -INFINITY;
    if (trial % 3 == 0) row[rng() % n] = 1e30f;
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (int32_t i = 0; i < n; ++i) ids[i] = i;
    std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    for (int32_t k : {1, 2, 20, runtime::kMaxTopLogits}) {
      std::vector<runtime::TopLogit> top(static_cast<size_t>(k));
      runtime::SelectTopLogits(row, k, top.data());
      for (int32_t j = 0; j < k; ++j) {
        ASSERT_EQ(top[j].token, ids[j]) << "trial " << trial << " k " << k << " rank " << j;
        ASSERT_EQ(top[j].logit, row[ids[j]]);
      }
    }
  }
}

// The top-list path draws exactly what the whole row draws, seed for seed, wherever
// CanSampleTop says it may: greedy, top-k up to the list length, with top-p, min-p and
// temperatures; and CanSampleTop refuses what the list cannot serve.
TEST(TopLogits, SampleTopDrawsWhatSampleDraws) {
  std::mt19937 rng(11);
  constexpr int32_t kList = runtime::kMaxTopLogits;
  struct Case {
    float temperature;
    int32_t top_k;
    float top_p, min_p;
  };
  const Case cases[] = {{0, 0, 1, 0},      {0, 40, 0.9f, 0},  {0.7f, 20, 0.8f, 0}, {1.0f, 64, 1, 0},
                        {1.3f, 5, 0.95f, 0.05f}, {0.2f, 1, 1, 0}, {2.0f, 64, 0.5f, 0.1f}};
  for (const Case& c : cases) {
    SamplerOptions o = Plain();
    o.temperature = c.temperature, o.top_k = c.top_k, o.top_p = c.top_p, o.min_p = c.min_p;
    o.seed = 99;
    Sampler whole(o), listed(o);
    ASSERT_TRUE(listed.CanSampleTop(kList, {}));
    for (int draw = 0; draw < 300; ++draw) {
      std::vector<float> row(5000);
      for (float& v : row) v = static_cast<float>(static_cast<int>(rng() % 4000)) / 400.0f;  // ties
      std::vector<runtime::TopLogit> top(kList);
      runtime::SelectTopLogits(row, kList, top.data());
      const int32_t a = whole.Sample(row, {});
      const int32_t b = listed.SampleTop(top);
      ASSERT_EQ(a, b) << "temperature " << c.temperature << " top_k " << c.top_k << " draw " << draw;
    }
  }
  SamplerOptions o = Plain();
  o.temperature = 0.7f;
  o.top_k = 0;  // the whole vocabulary can be drawn
  EXPECT_FALSE(Sampler(o).CanSampleTop(kList, {}));
  o.top_k = kList + 1;
  EXPECT_FALSE(Sampler(o).CanSampleTop(kList, {}));
  o.top_k = 20;
  EXPECT_TRUE(Sampler(o).CanSampleTop(kList, {}));
  o.repetition_penalty = 1.1f;  // a penalty reads the logits of past tokens, wherever they rank
  const std::vector<int32_t> history = {5, 6};
  EXPECT_FALSE(Sampler(o).CanSampleTop(kList, history));
  EXPECT_TRUE(Sampler(o).CanSampleTop(kList, {}));  // nothing to penalize yet
  o.repetition_penalty = 1;
  o.presence_penalty = -0.5f;
  EXPECT_FALSE(Sampler(o).CanSampleTop(kList, history));
}

}  // namespace
}  // namespace qwenmux::engine
