#include "base/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QM_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define QM_CPU_RELAX() asm volatile("yield" ::: "memory")
#else
#define QM_CPU_RELAX() ((void)0)
#endif

namespace qwenmux {

namespace {
// Busy-wait this many pause loops before yielding, and yield this many times before sleeping.
// On a loaded machine (more runnable threads than cores) pure spinning would burn the time slice
// the thread we wait for needs, so waits turn into sched_yield quickly.
constexpr int kSpinIterations = 2000;
constexpr int kYieldIterations = 200;
}

size_t ThreadPool::DefaultThreadCount() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

ThreadPool::ThreadPool(size_t num_threads)
    : num_threads_(num_threads == 0 ? DefaultThreadCount() : num_threads) {
  workers_.reserve(num_threads_ - 1);
  for (size_t i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::WorkerLoop(size_t index) {
  uint64_t seen = 0;
  for (;;) {
    // Spin first: decode issues many short jobs back to back.
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && spins < kSpinIterations) {
      QM_CPU_RELAX();
      ++spins;
    }
    for (int y = 0; y < kYieldIterations && generation_.load(std::memory_order_acquire) == seen; ++y) {
      std::this_thread::yield();
    }
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_acquire)) return;
    (*job_)(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::Run(const std::function<void(size_t)>& fn) {
  if (num_threads_ == 1) {
    fn(0);
    return;
  }
  job_ = &fn;
  pending_.store(num_threads_ - 1, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  cv_.notify_all();
  fn(0);
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < kSpinIterations) {
      QM_CPU_RELAX();
    } else {
      std::this_thread::yield();
    }
  }
  job_ = nullptr;
}

void ThreadPool::ParallelFor(size_t n, size_t grain,
                             const std::function<void(size_t, size_t, size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(grain, 1);
  const size_t max_chunks = (n + grain - 1) / grain;
  const size_t chunks = std::min(max_chunks, num_threads_);
  if (chunks <= 1) {
    fn(0, n, 0);
    return;
  }
  Run([&](size_t t) {
    if (t >= chunks) return;
    const size_t begin = n * t / chunks;
    const size_t end = n * (t + 1) / chunks;
    if (begin < end) fn(begin, end, t);
  });
}

}  // namespace qwenmux
