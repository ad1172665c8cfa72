#include "base/thread_pool.h"

#include <atomic>
#include <numeric>
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

TEST(ThreadPool, ManyBackToBackJobs) {
  ThreadPool pool(4);
  std::atomic<long> sum{0};
  for (int it = 0; it < 2000; ++it) {
    pool.Run([&](size_t t) { sum.fetch_add(static_cast<long>(t) + 1); });
  }
  EXPECT_EQ(sum.load(), 2000L * (1 + 2 + 3 + 4));
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
