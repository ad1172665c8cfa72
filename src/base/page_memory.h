// Large buffers taken straight from the OS with anonymous mmap and given back with munmap.
//
// Why not new[]: glibc raises its mmap threshold (up to 32 MiB) each time an mmap-backed block
// is freed, so after the first model eviction the next KV cache comes from a malloc arena, and
// when that model is evicted its touched pages stay resident. A manager that evicts to keep RSS
// under a budget needs memory that really leaves the process; these helpers guarantee it.
// Pages are committed on first write, so reserving a full-context KV cache costs no RSS.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

namespace qwenmux {

// Sizes at or above this go to the OS; smaller ones use operator new.
inline constexpr size_t kPageAllocThreshold = size_t{64} << 10;

// Zero-filled pages, or nullptr when the OS refuses. `bytes` must be > 0.
void* AllocatePages(size_t bytes) noexcept;
void FreePages(void* p, size_t bytes) noexcept;

// Hands free heap memory in every malloc arena back to the OS (glibc's malloc_trim; a no-op
// elsewhere). glibc otherwise keeps what a model's load left in its arenas, because freeing
// large blocks raises its trim threshold. Costs about a millisecond; call it after unloading.
void ReturnFreeMemoryToOs() noexcept;

// std allocator: large blocks as pages, small ones from the heap. Stateless.
template <class T>
struct PageAllocator {
  using value_type = T;
  PageAllocator() = default;
  template <class U>
  PageAllocator(const PageAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)

  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < kPageAllocThreshold) return static_cast<T*>(::operator new(bytes));
    void* p = AllocatePages(bytes);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) noexcept {
    const size_t bytes = n * sizeof(T);
    if (bytes < kPageAllocThreshold) {
      ::operator delete(p);
    } else {
      FreePages(p, bytes);
    }
  }
  template <class U>
  bool operator==(const PageAllocator<U>&) const noexcept {
    return true;
  }
};

// A fixed-size array of trivially constructible T in pages of its own, left untouched (and so
// not resident) until written. Move-only.
template <class T>
class PageArray {
 public:
  PageArray() = default;
  // Empty (data() == nullptr) when n > 0 and the OS refuses.
  explicit PageArray(size_t n) : n_(n) {
    if (n > 0) p_ = static_cast<T*>(AllocatePages(n * sizeof(T)));
    if (p_ == nullptr) n_ = 0;
  }
  PageArray(PageArray&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  PageArray& operator=(PageArray&& o) noexcept {
    if (this != &o) {
      Reset();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  ~PageArray() { Reset(); }

  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  void Reset() {
    if (p_ != nullptr) FreePages(p_, n_ * sizeof(T));
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace qwenmux
