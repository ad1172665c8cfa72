// Planted faults for checking CI itself, disabled so they never run by accident. scripts/test.sh's
// stages run googletest through run_gtest (scripts/ci_checks.sh); to see a stage fail on a failed
// test or on a skip that is not an allowed hardware condition:
//   source scripts/ci_checks.sh
//   F=--gtest_filter=CiSelfCheck.DISABLED_PlantedFailure   # or ...PlantedSkip
//   run_gtest /tmp/x.txt ./build/qwenmux_tests --gtest_also_run_disabled_tests "$F"   # returns 1
// (the aarch64 stage is the same call with `qemu-aarch64 -L /` in front of the binary).
#include <gtest/gtest.h>

namespace {

TEST(CiSelfCheck, DISABLED_PlantedFailure) { FAIL() << "planted failure (CI self-check)"; }
TEST(CiSelfCheck, DISABLED_PlantedSkip) { GTEST_SKIP() << "planted skip (CI self-check)"; }
TEST(CiSelfCheck, DISABLED_AllowedSkip) { GTEST_SKIP() << "no CUDA device: planted (CI self-check)"; }

}  // namespace
