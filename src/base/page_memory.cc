#include "base/page_memory.h"

#include <sys/mman.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace qwenmux {

void* AllocatePages(size_t bytes) noexcept {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void FreePages(void* p, size_t bytes) noexcept {
  if (p != nullptr) munmap(p, bytes);
}

void ReturnFreeMemoryToOs() noexcept {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace qwenmux
