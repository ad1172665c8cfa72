#include "base/thread_pool.h"

#include <atomic>
#include <numeric>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace qwenmux {
namespace {

TEST(ThreadPool, ParallelForCoversEveryIndexOnce) {
  for (size_t threads : {1u, 2u, 3u, 8u}) {
    ThreadPool pool(threads);
    for (size_t n : {0u, 1u, 2u, 7u, 1000u}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, 1, [&](size_t b, size_t e, size_t t) {
        EXPECT_LT(t, pool.size());
        for (size_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      for (size_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
    }
  }
}

TEST(ThreadPool, ManyBackToBackCallsRunEveryChunkOnce) {
  // More threads than cores: helpers are often late, and must never run a chunk of a call that
  // has returned (each call's counters live on its own stack frame).
  ThreadPool pool(4);
  long total = 0;
  for (int it = 0; it < 3000; ++it) {
    const size_t n = 1 + it % 13;
    std::vector<std::atomic<int>> hits(n);
    pool.ParallelChunks(n, [&](size_t c, size_t t) {
      EXPECT_LT(t, pool.size());
      hits[c].fetch_add(1);
    });
    for (size_t c = 0; c < n; ++c) ASSERT_EQ(hits[c].load(), 1) << "call " << it << " chunk " << c;
    total += static_cast<long>(n);
  }
  EXPECT_GT(total, 0);
}

TEST(ThreadPool, ThreadIndicesAreDistinctAmongConcurrentParticipants) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> busy(pool.size());
  pool.ParallelChunks(300, [&](size_t, size_t t) {
    EXPECT_EQ(busy[t].fetch_add(1), 0) << "thread index " << t << " used twice at once";
    std::this_thread::yield();
    busy[t].fetch_sub(1);
  });
}

TEST(ThreadPool, GrainLimitsChunks) {
  ThreadPool pool(4);
  std::atomic<int> calls{0};
  pool.ParallelFor(10, 8, [&](size_t b, size_t e, size_t) {
    EXPECT_GE(e - b, 5u);
    calls.fetch_add(1);
  });
  EXPECT_EQ(calls.load(), 2);
}

}  // namespace
}  // namespace qwenmux
