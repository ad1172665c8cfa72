// Model manager under concurrency (run under TSan by scripts/test.sh: names contain "Concurrent"):
// one shared load for 8 simultaneous requests, a failed load reaching every waiter and being
// retried later, a lease holding off eviction (fail at once, or wait for the release), and a
// mixed stress run that never exceeds the budget.
#include <atomic>
#include <barrier>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/page_memory.h"
#include "base/sysinfo.h"
#include "orchestrator/manager/model_manager.h"
#include "orchestrator/manager_test_util.h"
#include "tokenizer/tokenizer.h"

namespace qwenmux::orchestrator {
namespace {

using namespace std::chrono_literals;
using test::EstimateOf;
using test::TestOptions;
using test::TinySpec;

TEST(ManagerConcurrent, EightAcquiresShareOneLoad) {
  Metrics metrics;
  ModelManager m(TestOptions(0, &metrics), {TinySpec("a")});
  constexpr int kThreads = 8;
  std::barrier sync(kThreads);
  std::vector<engine::Model*> got(kThreads, nullptr);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      sync.arrive_and_wait();
      auto l = m.Acquire("a");
      if (l.ok()) {
        got[i] = &l->model();
        sync.arrive_and_wait();  // all leases held at once
      } else {
        ADD_FAILURE() << l.status().ToString();
        sync.arrive_and_drop();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(m.Stats("a").loads, 1u);
  for (engine::Model* p : got) EXPECT_EQ(p, got[0]);
  EXPECT_NE(got[0], nullptr);
  auto snap = m.Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].in_use, 0);
}

TEST(ManagerConcurrent, FailedLoadReachesEveryWaiterThenRetries) {
  Metrics metrics;
  const std::string path = ::testing::TempDir() + "/mgr-truncated.gguf";
  const std::string good = qwenmux::testing::ModelPath("tiny-dense.q8_0.gguf");
  const auto full = std::filesystem::file_size(good);
  {
    std::ifstream in(good, std::ios::binary);
    std::vector<char> buf(full / 2);
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(buf.data(), static_cast<std::streamsize>(buf.size()));
  }
  ModelSpec bad = TinySpec("bad");
  bad.path = path;
  ModelManager m(TestOptions(0, &metrics), {bad, TinySpec("a")});
  constexpr int kThreads = 8;
  std::barrier sync(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      sync.arrive_and_wait();
      auto l = m.Acquire("bad");
      if (!l.ok()) {
        failures++;
        EXPECT_NE(l.status().message().find("loading 'bad'"), std::string::npos) << l.status().message();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), kThreads);
  EXPECT_EQ(m.Stats("bad").loads, 0u);
  EXPECT_GE(m.Stats("bad").load_failures, 1u);
  EXPECT_EQ(m.in_use_bytes(), 0u);
  // The manager still serves other models...
  { auto l = m.Acquire("a"); ASSERT_TRUE(l.ok()) << l.status().ToString(); }
  // ...and retries the failed one on the next request (the file is whole now).
  std::filesystem::copy_file(good, path, std::filesystem::copy_options::overwrite_existing);
  auto l = m.Acquire("bad");
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(m.Stats("bad").loads, 1u);
  l->Release();
  std::filesystem::remove(path);
}

TEST(ManagerConcurrent, LeaseHoldsOffEviction) {
  Metrics metrics;
  const uint64_t one = EstimateOf(TinySpec("x"));
  ManagerOptions o = TestOptions(one + one / 2, &metrics);
  ModelManager m(o, {TinySpec("a"), TinySpec("b")});
  auto la = m.Acquire("a");
  ASSERT_TRUE(la.ok());
  // busy_wait 0: fails at once, naming the busy model; a stays loaded and usable.
  auto lb = m.Acquire("b");
  ASSERT_FALSE(lb.ok());
  EXPECT_EQ(lb.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(lb.status().message().find("a (" + FormatBytes(one) + ", in use)"), std::string::npos)
      << lb.status().message();
  EXPECT_NE(lb.status().message().find("fits once models in use are released"), std::string::npos);
  std::vector<float> logits;
  const int32_t tok = 42;
  EXPECT_TRUE((*la)->Prefill(0, std::span<const int32_t>(&tok, 1), &logits).ok());
  // With a busy wait: the request waits until the lease is released on another thread.
  o.busy_wait = 20s;
  ModelManager w(o, {TinySpec("a"), TinySpec("b")});
  auto wa = w.Acquire("a");
  ASSERT_TRUE(wa.ok());
  std::atomic<bool> released{false};
  std::thread t([&] {
    std::this_thread::sleep_for(200ms);
    released = true;
    wa->Release();
  });
  auto wb = w.Acquire("b");
  EXPECT_TRUE(released.load());
  ASSERT_TRUE(wb.ok()) << wb.status().ToString();
  t.join();
  EXPECT_EQ(w.Stats("a").evictions, 1u);
}

TEST(ManagerConcurrent, MixedStressStaysWithinBudget) {
  Metrics metrics;
  const uint64_t one = EstimateOf(TinySpec("x"));
  const uint64_t budget = 2 * one + one / 2;
  ManagerOptions o = TestOptions(budget, &metrics);
  o.busy_wait = 60s;
  ModelSpec p = TinySpec("c");
  p.keep_alive = 0ms;
  ModelManager m(o, {TinySpec("a"), TinySpec("b"), p});
  ASSERT_TRUE(m.Start().ok());
  std::atomic<bool> over{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      std::mt19937 rng(i);
      for (int k = 0; k < 4; ++k) {
        const char* name = std::array{"a", "b", "c"}[rng() % 3];
        auto l = m.Acquire(name);
        if (!l.ok()) {
          ADD_FAILURE() << l.status().ToString();
          continue;
        }
        if (const uint64_t used = m.in_use_bytes(); used > budget) {
          over = true;
          ADD_FAILURE() << "in use " << used << " > budget " << budget << " holding " << name;
        }
        (void)m.Snapshot();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(over.load());
  EXPECT_LE(m.in_use_bytes(), budget);
  m.Stop();
  EXPECT_EQ(m.in_use_bytes(), 0u);
}

// The process's resident memory, sampled every millisecond during a storm of requests for three
// models under a budget that holds two, never grows past the budget (each request fills part of
// its model's KV cache, so the caches are really resident).
TEST(ManagerConcurrent, RssStaysWithinBudgetDuringStorm) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr bool kRssMeaningful = false;  // shadow memory and quarantines are in the RSS
#else
  constexpr bool kRssMeaningful = true;
#endif
  Metrics metrics;
  const int32_t n_ctx = 1024;
  const uint64_t one = EstimateOf(TinySpec("x", n_ctx));
  const uint64_t budget = 2 * one + one / 2;
  ManagerOptions o = TestOptions(budget, &metrics);
  o.busy_wait = 60s;
  std::vector<ModelSpec> specs;
  for (const char* n : {"a", "b", "c"}) {
    specs.push_back(TinySpec(n, n_ctx));
    specs.back().keep_alive = 50ms;
  }
  tokenizer::Tokenizer::ClearSharedCache();
  const uint64_t baseline = CurrentRssBytes();
  uint64_t peak = baseline;
  {
    ModelManager m(o, specs);
    std::atomic<bool> done{false};
    std::thread sampler([&] {
      while (!done.load()) {
        peak = std::max(peak, CurrentRssBytes());
        std::this_thread::sleep_for(1ms);
      }
    });
    std::array<std::mutex, 3> model_mu;  // a Model runs one call at a time (the scheduler's job)
    std::vector<std::thread> threads;
    for (int i = 0; i < 3; ++i) {
      threads.emplace_back([&, i] {
        std::mt19937 rng(100 + i);
        for (int k = 0; k < 5; ++k) {
          const size_t which = rng() % 3;
          auto l = m.Acquire(std::array{"a", "b", "c"}[which]);
          if (!l.ok()) {
            ADD_FAILURE() << l.status().ToString();
            continue;
          }
          std::lock_guard<std::mutex> model_lock(model_mu[which]);
          std::vector<int32_t> prompt(300 + 100 * k);
          for (size_t t = 0; t < prompt.size(); ++t) prompt[t] = static_cast<int32_t>((t * 7919 + i) % 150000);
          std::vector<float> logits;
          EXPECT_TRUE((*l)->Prefill(0, prompt, &logits).ok());
          (*l)->ResetSequence(0);
          EXPECT_LE(m.in_use_bytes(), budget);
        }
      });
    }
    for (auto& t : threads) t.join();
    done = true;
    sampler.join();
    EXPECT_GT(metrics.RenderText().size(), 0u);
    m.Stop();
  }
  tokenizer::Tokenizer::ClearSharedCache();  // the one tokenizer all three models shared
  ReturnFreeMemoryToOs();
  const uint64_t after = CurrentRssBytes();
  std::printf("storm: budget %.1f MiB, one model %.1f MiB, peak RSS growth %.1f MiB, after unload %.1f MiB\n",
              budget / 1048576.0, one / 1048576.0, (static_cast<double>(peak) - static_cast<double>(baseline)) / 1048576.0,
              (static_cast<double>(after) - static_cast<double>(baseline)) / 1048576.0);
  if (kRssMeaningful) {
    EXPECT_LE(peak - baseline, budget);
    // Unloading gives the memory back: what stays is allocator slack, not a model's worth.
    EXPECT_LE(after - std::min(after, baseline), one / 4);
  }
}

}  // namespace
}  // namespace qwenmux::orchestrator
