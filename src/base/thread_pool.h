// Fixed-size thread pool for data-parallel loops in the hot path (matmuls, attention heads).
// The calling thread takes part as worker 0, so a pool of N threads has N-1 helper threads.
//
// Thread-safety: Run/ParallelFor may be called from one thread at a time per pool (the engine
// owns its pool); calls are not re-entrant. Workers spin briefly between jobs, then sleep, so
// the back-to-back small jobs of a decode step do not pay a futex wake each time.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace qwenmux {

class ThreadPool {
 public:
  // num_threads == 0 means one per hardware thread.
  explicit ThreadPool(size_t num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t size() const { return num_threads_; }

  // Calls fn(thread_index) once on each of the size() threads and waits for all.
  void Run(const std::function<void(size_t)>& fn);

  // Splits [0, n) into contiguous ranges, at least `grain` items each, and calls
  // fn(begin, end, thread_index) for each range; waits for all.
  void ParallelFor(size_t n, size_t grain,
                   const std::function<void(size_t, size_t, size_t)>& fn);

  static size_t DefaultThreadCount();

 private:
  void WorkerLoop(size_t index);

  size_t num_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(size_t)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<size_t> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace qwenmux
