// Model manager: LRU eviction by bytes, pinned models, keep-alive (0, forever, expiry by the
// reaper and by a fake clock), cannot-fit errors, fallbacks, snapshot and metrics. The models are
// the tiny dense model under several names (each load is a real engine::Model::Load).
#include <algorithm>
#include <set>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "orchestrator/manager/model_manager.h"
#include "orchestrator/manager_test_util.h"

namespace qwenmux::orchestrator {
namespace {

using namespace std::chrono_literals;
using test::EstimateOf;
using test::FakeClock;
using test::TestOptions;
using test::TinySpec;

std::set<std::string> Loaded(const ModelManager& m) {
  std::set<std::string> s;
  for (const auto& i : m.Snapshot()) s.insert(i.name);
  return s;
}

TEST(ManagerTest, EvictsLeastRecentlyUsedByBytes) {
  Metrics metrics;
  FakeClock clock;
  const uint64_t one = EstimateOf(TinySpec("x"));
  ASSERT_GT(one, 0u);
  // "big" has a long context: its KV cache makes it larger than one small model plus the slack.
  ModelSpec big = TinySpec("big", 32768);
  const uint64_t big_bytes = EstimateOf(big);
  ASSERT_GT(big_bytes, one + one / 2);
  const uint64_t budget = 2 * one + one / 2;  // two small models fit, not three
  ASSERT_GT(one + big_bytes, budget);  // big beside one small model does not fit
  ASSERT_LE(big_bytes, budget);
  ModelManager m(TestOptions(budget, &metrics, &clock), {TinySpec("a"), TinySpec("b"), TinySpec("c"), big});
  for (const char* n : {"a", "b"}) {
    { auto l = m.Acquire(n); ASSERT_TRUE(l.ok()) << l.status().ToString(); }
    clock.Advance(1s);
  }
  { auto l = m.Acquire("a"); ASSERT_TRUE(l.ok()); }  // a is now more recent than b
  clock.Advance(1s);
  EXPECT_EQ(Loaded(m), (std::set<std::string>{"a", "b"}));
  { auto l = m.Acquire("c"); ASSERT_TRUE(l.ok()) << l.status().ToString(); }
  EXPECT_EQ(Loaded(m), (std::set<std::string>{"a", "c"}));  // b was least recently used
  EXPECT_EQ(m.Stats("b").evictions, 1u);
  EXPECT_EQ(m.Stats("a").evictions, 0u);
  EXPECT_LE(m.in_use_bytes(), budget);
  clock.Advance(1s);
  // big needs the room of more than one small model: both idle models go, oldest first.
  { auto l = m.Acquire("big"); ASSERT_TRUE(l.ok()) << l.status().ToString(); }
  EXPECT_EQ(Loaded(m), (std::set<std::string>{"big"}));
  EXPECT_EQ(m.in_use_bytes(), big_bytes);
  EXPECT_EQ(m.Stats("a").evictions, 1u);
  EXPECT_EQ(m.Stats("c").evictions, 1u);
}

TEST(ManagerTest, PinnedModelIsNeverEvicted) {
  Metrics metrics;
  FakeClock clock;
  const uint64_t one = EstimateOf(TinySpec("x"));
  ModelSpec p = TinySpec("p");
  p.pinned = true;
  ModelManager m(TestOptions(2 * one + one / 2, &metrics, &clock), {p, TinySpec("a"), TinySpec("b")});
  ASSERT_TRUE(m.Start().ok());
  EXPECT_EQ(Loaded(m), (std::set<std::string>{"p"}));  // preloaded
  clock.Advance(1s);
  for (int round = 0; round < 2; ++round) {
    for (const char* n : {"a", "b"}) {
      auto l = m.Acquire(n);
      ASSERT_TRUE(l.ok()) << l.status().ToString();
      clock.Advance(1s);
      EXPECT_TRUE(Loaded(m).count("p"));
    }
  }
  EXPECT_EQ(m.Stats("p").evictions, 0u);
  EXPECT_EQ(m.Stats("p").loads, 1u);
  EXPECT_GE(m.Stats("a").evictions, 1u);
  // Keep-alive expiry never unloads it either; an explicit Unload does not, Stop does.
  clock.Advance(std::chrono::hours(24 * 365));
  m.ReapExpired();
  EXPECT_TRUE(Loaded(m).count("p"));
  m.Stop();
  EXPECT_TRUE(Loaded(m).empty());
}

TEST(ManagerTest, KeepAliveZeroForeverAndExpiry) {
  Metrics metrics;
  FakeClock clock;
  ModelSpec a = TinySpec("a");
  a.keep_alive = 5min;
  ModelManager m(TestOptions(0, &metrics, &clock), {a, TinySpec("b")});
  // Per-request 0: unloaded as soon as the lease goes.
  {
    auto l = m.Acquire("a", KeepAlive(0));
    ASSERT_TRUE(l.ok());
    EXPECT_EQ(Loaded(m), std::set<std::string>{"a"});
  }
  EXPECT_TRUE(Loaded(m).empty());
  // The spec's 5 min: still there after 4, gone after 6.
  { auto l = m.Acquire("a"); ASSERT_TRUE(l.ok()); }
  clock.Advance(4min);
  EXPECT_EQ(m.ReapExpired(), 0u);
  auto snap = m.Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  ASSERT_TRUE(snap[0].keep_alive_left.has_value());
  EXPECT_EQ(*snap[0].keep_alive_left, KeepAlive(1min));
  clock.Advance(2min);
  EXPECT_EQ(m.ReapExpired(), 1u);
  EXPECT_TRUE(Loaded(m).empty());
  // -1: forever.
  { auto l = m.Acquire("b", kKeepForever); ASSERT_TRUE(l.ok()); }
  clock.Advance(std::chrono::hours(24 * 365));
  EXPECT_EQ(m.ReapExpired(), 0u);
  snap = m.Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_FALSE(snap[0].keep_alive_left.has_value());
  // The latest request's keep-alive wins.
  { auto l = m.Acquire("b", KeepAlive(10ms)); ASSERT_TRUE(l.ok()); }
  clock.Advance(11ms);
  EXPECT_EQ(m.ReapExpired(), 1u);
}

// The reaper thread evicts at the expiry, not at its interval: with an interval of an hour, the
// eviction still happens (the event; the exact expiry arithmetic is checked with the fake clock
// above, so no wall-clock figure is asserted here).
TEST(ManagerTest, ReaperThreadWakesAtTheExpiry) {
  Metrics metrics;
  ModelSpec a = TinySpec("a");
  a.keep_alive = 200ms;
  ManagerOptions o = TestOptions(0, &metrics);
  o.reaper_interval = std::chrono::hours(1);
  ModelManager m(o, {a});
  ASSERT_TRUE(m.Start().ok());
  { auto l = m.Acquire("a"); ASSERT_TRUE(l.ok()); }
  EXPECT_EQ(Loaded(m).size(), 1u);  // kept alive after the release
  const auto t0 = std::chrono::steady_clock::now();
  while (!Loaded(m).empty() && std::chrono::steady_clock::now() - t0 < 60s) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(Loaded(m).empty()) << "not evicted: the reaper waited for its interval";
  EXPECT_EQ(m.Stats("a").evictions, 1u);
}

TEST(ManagerTest, CannotFitErrorNamesEverything) {
  Metrics metrics;
  const uint64_t one = EstimateOf(TinySpec("x"));
  ModelSpec p = TinySpec("p");
  p.pinned = true;
  ModelManager m(TestOptions(one + one / 2, &metrics), {p, TinySpec("a")});
  ASSERT_TRUE(m.Start().ok());
  auto l = m.Acquire("a");
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), StatusCode::kResourceExhausted);
  const std::string& msg = l.status().message();
  EXPECT_NE(msg.find("cannot fit a: needs " + FormatBytes(one)), std::string::npos) << msg;
  EXPECT_NE(msg.find("budget " + FormatBytes(one + one / 2)), std::string::npos) << msg;
  EXPECT_NE(msg.find("in use " + FormatBytes(one) + " by [p (" + FormatBytes(one) + ", pinned)]"), std::string::npos)
      << msg;
  EXPECT_EQ(m.Stats("a").load_failures, 1u);
  // A model bigger than the whole budget.
  ModelManager tiny(TestOptions(one / 2, &metrics), {TinySpec("a")});
  auto t = tiny.Acquire("a");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("cannot fit a"), std::string::npos);
  EXPECT_EQ(tiny.in_use_bytes(), 0u);
}

TEST(ManagerTest, FallbackWhenTheModelCannotFit) {
  Metrics metrics;
  const uint64_t one = EstimateOf(TinySpec("x"));
  ModelSpec big = TinySpec("big", 32768);
  big.fallbacks = {"missing", "small"};
  ModelManager m(TestOptions(one + one / 4, &metrics), {big, TinySpec("small")});
  auto l = m.Acquire("big");
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_TRUE(l->degraded());
  EXPECT_EQ(l->name(), "small");
  EXPECT_EQ(l->requested(), "big");
  EXPECT_EQ((*l)->config().n_embd, 256u);
  // Without a fallback the error stays.
  ModelManager n(TestOptions(one + one / 4, &metrics), {TinySpec("big", 32768)});
  EXPECT_EQ(n.Acquire("big").status().code(), StatusCode::kResourceExhausted);
}

TEST(ManagerTest, UnknownModelsAndBadSpecs) {
  Metrics metrics;
  ModelManager m(TestOptions(0, &metrics), {TinySpec("a")});
  auto l = m.Acquire("nope");
  EXPECT_EQ(l.status().code(), StatusCode::kNotFound);
  EXPECT_NE(l.status().message().find("'nope'"), std::string::npos);
  EXPECT_FALSE(m.Register(ModelSpec{}).ok());
  ModelSpec self = TinySpec("s");
  self.fallbacks = {"s"};
  EXPECT_FALSE(m.Register(self).ok());
  ModelSpec missing = TinySpec("m");
  missing.path = "/nonexistent/x.gguf";
  ASSERT_TRUE(m.Register(missing).ok());
  auto r = m.Acquire("m");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/nonexistent/x.gguf"), std::string::npos) << r.status().message();
  { auto a = m.Acquire("a"); ASSERT_TRUE(a.ok()); }
  EXPECT_FALSE(m.Register(TinySpec("a")).ok());  // loaded: cannot be replaced
  ASSERT_TRUE(m.Unload("a").ok());
  EXPECT_TRUE(m.Register(TinySpec("a", 128)).ok());
}

TEST(ManagerTest, SnapshotShowsLoadedModels) {
  Metrics metrics;
  FakeClock clock;
  ModelSpec a = TinySpec("a");
  a.keep_alive = 1min;
  ModelManager m(TestOptions(0, &metrics, &clock), {a, TinySpec("b")});
  auto la = m.Acquire("a");
  auto la2 = m.Acquire("a");
  ASSERT_TRUE(la.ok() && la2.ok());
  clock.Advance(5s);
  { auto lb = m.Acquire("b"); ASSERT_TRUE(lb.ok()); }
  auto snap = m.Snapshot();
  ASSERT_EQ(snap.size(), 2u);
  EXPECT_EQ(snap[0].name, "a");
  EXPECT_EQ(snap[0].in_use, 2);
  EXPECT_EQ(snap[0].bytes, EstimateOf(a));
  EXPECT_EQ(snap[0].keep_alive_left, KeepAlive(1min));
  EXPECT_EQ(snap[1].name, "b");
  EXPECT_EQ(snap[1].in_use, 0);
  EXPECT_GT(snap[1].last_used, snap[0].last_used);
  EXPECT_EQ(m.in_use_bytes(), snap[0].bytes + snap[1].bytes);
}

TEST(ManagerTest, MetricsSeriesAfterActivity) {
  Metrics metrics;
  FakeClock clock;
  const uint64_t one = EstimateOf(TinySpec("x"));
  ModelManager m(TestOptions(one + one / 2, &metrics, &clock), {TinySpec("a"), TinySpec("b")});
  { auto l = m.Acquire("a"); ASSERT_TRUE(l.ok()); }
  clock.Advance(1s);
  { auto l = m.Acquire("b"); ASSERT_TRUE(l.ok()); }  // a switch: a unloaded for b
  metrics.AddGenerated("b", 10, 0.5);
  metrics.RequestFailed("b", "cancelled");
  const std::string text = metrics.RenderText();
  for (const std::string& want : {
           std::string("qwenmux_model_loads_total{model=\"a\"} 1"),
           std::string("qwenmux_model_loads_total{model=\"b\"} 1"),
           std::string("qwenmux_model_evictions_total{model=\"a\",reason=\"lru\"} 1"),
           std::string("qwenmux_model_switch_seconds_count{model=\"b\"} 1"),
           std::string("qwenmux_model_load_seconds_count{model=\"a\"} 1"),
           std::string("qwenmux_memory_in_use_bytes " + std::to_string(one)),
           std::string("qwenmux_memory_budget_bytes " + std::to_string(one + one / 2)),
           std::string("qwenmux_model_memory_bytes{model=\"a\"} 0"),
           std::string("qwenmux_generated_tokens_total{model=\"b\"} 10"),
           std::string("qwenmux_requests_failed_total{model=\"b\",reason=\"cancelled\"} 1"),
       }) {
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  }
  EXPECT_EQ(text.find("qwenmux_model_switch_seconds_count{model=\"a\"}"), std::string::npos);  // a evicted nothing
}

}  // namespace
}  // namespace qwenmux::orchestrator
