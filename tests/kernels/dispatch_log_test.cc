// One log line saying which SIMD targets the kernels (MatMul and vec_ops share matmul_targets.h)
// were compiled for, which ones this CPU (or qemu's emulated CPU) has, and which one the
// dispatcher picks. Not a check of results: matmul_test.cc and vec_ops_test.cc run every
// compiled target. scripts/test.sh greps the "[hwy]" line for its aarch64/qemu summary.
#include "kernels/cpu/matmul_targets.h"
// (the target set must come before any Highway header)
#include <cstdio>
#include <string>

#include "gtest/gtest.h"
#include "hwy/targets.h"

namespace qwenmux::kernels {
namespace {

std::string Names(int64_t targets) {
  std::string s;
  for (int64_t bit = 1; bit != 0 && bit <= targets; bit <<= 1) {
    if ((targets & bit) == 0) continue;
    if (!s.empty()) s += ' ';
    s += hwy::TargetName(bit);
  }
  return s;
}

TEST(KernelDispatch, LogsTheChosenTarget) {
  const int64_t compiled = HWY_TARGETS;
  const int64_t supported = hwy::SupportedTargets();
  const int64_t usable = compiled & supported;
  ASSERT_NE(usable, 0) << "no compiled target runs on this CPU";
  // Highway orders targets best-first by bit position: the lowest set bit wins.
  std::printf("[hwy] kernels: compiled {%s}, CPU has {%s} -> dispatches to %s\n",
              Names(compiled).c_str(), Names(supported).c_str(),
              hwy::TargetName(usable & -usable));
}

}  // namespace
}  // namespace qwenmux::kernels
