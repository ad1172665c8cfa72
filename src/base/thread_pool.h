// Fixed-size thread pool for data-parallel loops in the hot path (matmuls, attention heads).
// The calling thread takes part as worker 0, so a pool of N threads has N-1 helper threads.
//
// Work is split into chunks that participants claim from one atomic counter, and a call returns
// as soon as every chunk is done: a helper thread that the OS has not scheduled yet (a loaded
// machine, more runnable threads than cores) simply finds no chunk left when it wakes, instead of
// holding up the call. The counter carries a generation tag, so a late helper can never run a
// chunk of a call that has already returned.
//
// Thread-safety: Parallel* may be called from one thread at a time per pool (the engine owns
// its pool); calls are not re-entrant. Helpers spin briefly between calls, then yield, then
// sleep, so the back-to-back small calls of a decode step do not pay a futex wake each time.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
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

  // Calls fn(chunk, thread_index) once for every chunk in [0, n_chunks), spread over the
  // participants (thread_index < size(), distinct per concurrently running participant), and
  // returns when all chunks are done. n_chunks must be < 2^20.
  void ParallelChunks(size_t n_chunks, const std::function<void(size_t, size_t)>& fn);

  // Splits [0, n) into contiguous ranges of at least `grain` items (a few per thread, for
  // balance) and calls fn(begin, end, thread_index) for each; waits for all.
  void ParallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t, size_t)>& fn);

  static size_t DefaultThreadCount();

 private:
  void WorkerLoop(size_t index);
  // Claims and runs chunks of generation `gen` until none is left.
  void Drain(uint64_t gen, size_t thread);

  size_t num_threads_;
  std::vector<std::thread> workers_;
  // Packed claim state: generation (24 bits) | n_chunks (20 bits) | next chunk (20 bits).
  std::atomic<uint64_t> state_{0};
  std::atomic<size_t> done_{0};
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace qwenmux
