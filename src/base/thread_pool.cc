#include "base/thread_pool.h"

#include <algorithm>
#include <cassert>

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
// Busy-wait this many pause loops, then yield this many times, before sleeping on the condition
// variable. Yielding early keeps a loaded machine from burning the time slice that the thread
// we wait for needs.
constexpr int kSpinIterations = 2000;
constexpr int kYieldIterations = 100;

constexpr uint64_t kIndexBits = 20;
constexpr uint64_t kIndexMask = (uint64_t{1} << kIndexBits) - 1;
constexpr uint64_t kGenMask = (uint64_t{1} << 24) - 1;

uint64_t Pack(uint64_t gen, uint64_t n, uint64_t next) {
  return ((gen & kGenMask) << (2 * kIndexBits)) | (n << kIndexBits) | next;
}
uint64_t GenOf(uint64_t s) { return s >> (2 * kIndexBits); }
uint64_t CountOf(uint64_t s) { return (s >> kIndexBits) & kIndexMask; }
uint64_t NextOf(uint64_t s) { return s & kIndexMask; }
}  // namespace

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

void ThreadPool::Drain(uint64_t gen, size_t thread) {
  uint64_t s = state_.load(std::memory_order_acquire);
  for (;;) {
    if ((GenOf(s) != (gen & kGenMask)) || NextOf(s) >= CountOf(s)) return;
    if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    // The claim succeeded under this generation, so the caller is still waiting for this chunk
    // and job_ is valid.
    (*job_)(static_cast<size_t>(NextOf(s)), thread);
    done_.fetch_add(1, std::memory_order_acq_rel);
    s = state_.load(std::memory_order_acquire);
  }
}

void ThreadPool::WorkerLoop(size_t index) {
  uint64_t seen = 0;
  for (;;) {
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
      sleepers_.fetch_add(1, std::memory_order_acq_rel);
      cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      sleepers_.fetch_sub(1, std::memory_order_acq_rel);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_acquire)) return;
    Drain(seen, index);
  }
}

void ThreadPool::ParallelChunks(size_t n_chunks, const std::function<void(size_t, size_t)>& fn) {
  if (n_chunks == 0) return;
  assert(n_chunks <= kIndexMask);
  if (num_threads_ == 1 || n_chunks == 1) {
    for (size_t c = 0; c < n_chunks; ++c) fn(c, 0);
    return;
  }
  job_ = &fn;
  done_.store(0, std::memory_order_relaxed);
  const uint64_t gen = generation_.load(std::memory_order_relaxed) + 1;
  state_.store(Pack(gen, n_chunks, 0), std::memory_order_release);
  if (sleepers_.load(std::memory_order_acquire) > 0) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      generation_.store(gen, std::memory_order_release);
    }
    cv_.notify_all();
  } else {
    // A helper that goes to sleep right now re-checks generation_ under the mutex.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.store(gen, std::memory_order_release);
  }
  Drain(gen, 0);
  for (int spins = 0; done_.load(std::memory_order_acquire) != n_chunks; ++spins) {
    if (spins < kSpinIterations) {
      QM_CPU_RELAX();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::ParallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t, size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(grain, 1);
  // A few chunks per participant so a late helper costs little.
  const size_t max_chunks = (n + grain - 1) / grain;
  const size_t chunks = std::min({max_chunks, num_threads_ * 4, static_cast<size_t>(kIndexMask)});
  if (chunks <= 1 || num_threads_ == 1) {
    fn(0, n, 0);
    return;
  }
  ParallelChunks(chunks, [&](size_t c, size_t t) {
    const size_t begin = n * c / chunks;
    const size_t end = n * (c + 1) / chunks;
    if (begin < end) fn(begin, end, t);
  });
}

}  // namespace qwenmux
