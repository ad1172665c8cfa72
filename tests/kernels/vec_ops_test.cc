// Highway vector primitives against scalar loops, on odd sizes and misaligned pointers.
#include "kernels/vec_ops.h"

#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "base/fp16.h"
#include "kernels/cpu/matmul_targets.h"  // same target set as the kernels
#include "hwy/targets.h"

namespace qwenmux::kernels {
namespace {

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// Every test runs once per compiled SIMD target.
class VecOps : public ::testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override { hwy::SetSupportedTargetsForTest(GetParam()); }
  void TearDown() override { hwy::SetSupportedTargetsForTest(0); }
};

TEST_P(VecOps, MatchScalarOnOddSizesAndOffsets) {
  for (size_t n : {1u, 3u, 7u, 16u, 17u, 31u, 64u, 127u, 128u, 129u, 1000u}) {
    for (size_t off : {0u, 1u, 3u}) {
      auto a = Random(n + off, 1), b = Random(n + off, 2);
      const float* pa = a.data() + off;
      const float* pb = b.data() + off;
      double dot = 0, ss = 0;
      for (size_t i = 0; i < n; ++i) {
        dot += pa[i] * pb[i];
        ss += pa[i] * pa[i];
      }
      EXPECT_NEAR(Dot(pa, pb, n), dot, 1e-4 * std::sqrt(n)) << n;
      EXPECT_NEAR(SumSquares(pa, n), ss, 1e-4 * std::sqrt(n)) << n;
      std::vector<float> y(b.begin() + off, b.end());
      Axpy(0.5f, pa, y.data(), n);
      for (size_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], pb[i] + 0.5f * pa[i], 1e-6);
      std::vector<uint16_t> h(n + off);
      F32ToF16(pa, h.data() + off, n);
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(h[off + i], Fp32ToFp16(pa[i])) << "f16 rounding differs at " << i;
      std::vector<float> back(n);
      F16ToF32(h.data() + off, back.data(), n);
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(back[i], Fp16ToFp32(h[off + i]));
      double hd = 0;
      for (size_t i = 0; i < n; ++i) hd += Fp16ToFp32(h[off + i]) * pb[i];
      EXPECT_NEAR(DotF16(h.data() + off, pb, n), hd, 1e-4 * std::sqrt(n));
      std::vector<float> g(n);
      SwiGlu(pa, pb, g.data(), n);
      for (size_t i = 0; i < n; ++i) ASSERT_NEAR(g[i], pa[i] / (1 + std::exp(-pa[i])) * pb[i], 1e-6);
    }
  }
}

TEST_P(VecOps, AttentionHelpers) {
  for (size_t d : {8u, 64u, 128u, 130u}) {
    for (size_t rows : {1u, 5u, 33u}) {
      const size_t stride = d + 3;
      auto kf = Random(rows * stride, 3);
      std::vector<uint16_t> k(rows * stride);
      for (size_t i = 0; i < k.size(); ++i) k[i] = Fp32ToFp16(kf[i]);
      auto q = Random(d, 4), p = Random(rows, 5);
      std::vector<float> dots(rows), sum(d);
      DotsF16(k.data(), stride, rows, q.data(), d, 0.25f, dots.data());
      WeightedSumF16(k.data(), stride, rows, p.data(), d, sum.data());
      for (size_t j = 0; j < rows; ++j) {
        double ref = 0;
        for (size_t i = 0; i < d; ++i) ref += Fp16ToFp32(k[j * stride + i]) * q[i];
        EXPECT_NEAR(dots[j], 0.25 * ref, 1e-4);
      }
      for (size_t i = 0; i < d; ++i) {
        double ref = 0;
        for (size_t j = 0; j < rows; ++j) ref += p[j] * Fp16ToFp32(k[j * stride + i]);
        EXPECT_NEAR(sum[i], ref, 1e-4);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, VecOps, ::testing::ValuesIn(hwy::SupportedAndGeneratedTargets()),
                         [](const ::testing::TestParamInfo<int64_t>& info) {
                           return std::string(hwy::TargetName(info.param));
                         });

}  // namespace
}  // namespace qwenmux::kernels
