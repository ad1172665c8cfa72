#include "base/page_memory.h"

#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "base/sysinfo.h"

namespace qwenmux {
namespace {

TEST(PageMemory, ArrayIsZeroFilledWritableAndMovable) {
  PageArray<uint16_t> a(1 << 20);
  ASSERT_NE(a.data(), nullptr);
  EXPECT_EQ(a.size(), size_t{1} << 20);
  EXPECT_EQ(a.data()[12345], 0);
  a.data()[a.size() - 1] = 7;
  PageArray<uint16_t> b = std::move(a);
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(b.data()[b.size() - 1], 7);
  PageArray<uint16_t> empty(0);
  EXPECT_EQ(empty.data(), nullptr);
}

TEST(PageMemory, AllocatorServesSmallAndLargeVectors) {
  std::vector<float, PageAllocator<float>> small(10, 1.5f), large(1 << 20, 2.5f);
  EXPECT_EQ(small[9], 1.5f);
  EXPECT_EQ(large[(1 << 20) - 1], 2.5f);
  large.resize(1 << 21);  // reallocates across two page blocks
  EXPECT_EQ(large[0], 2.5f);
  EXPECT_EQ(large[(1 << 21) - 1], 0.0f);
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
TEST(PageMemory, FreedArrayLeavesResidentMemory) {
  const size_t n = size_t{64} << 20;  // 64 MiB
  const uint64_t before = CurrentRssBytes();
  {
    PageArray<uint8_t> a(n);
    ASSERT_NE(a.data(), nullptr);
    for (size_t i = 0; i < n; i += 4096) a.data()[i] = 1;
    EXPECT_GE(CurrentRssBytes(), before + n / 2);
  }
  EXPECT_LT(CurrentRssBytes(), before + n / 4);
}
#endif

}  // namespace
}  // namespace qwenmux
