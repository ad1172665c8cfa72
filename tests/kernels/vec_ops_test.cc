// Highway vector primitives against scalar loops, on odd sizes and misaligned pointers.
#include "kernels/vec_ops.h"

#include <algorithm>
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

// AttendF16 against softmax attention in double, for group sizes that take each block path
// (1-4 heads, and 5 and 8 that split into blocks), head sizes with and without a vector tail,
// and a row stride wider than the head.
TEST_P(VecOps, GroupedAttentionMatchesSoftmaxInDouble) {
  for (size_t heads : {1u, 2u, 3u, 4u, 5u, 8u}) {
    for (size_t d : {8u, 64u, 128u, 130u}) {
      for (size_t rows : {1u, 5u, 33u}) {
        const size_t stride = d + 3;
        auto kf = Random(rows * stride, 3), vf = Random(rows * stride, 6);
        std::vector<uint16_t> k(rows * stride), v(rows * stride);
        for (size_t i = 0; i < k.size(); ++i) {
          k[i] = Fp32ToFp16(4.0f * kf[i]);  // wide enough logits that the softmax is not flat
          v[i] = Fp32ToFp16(vf[i]);
        }
        const auto q = Random(heads * d, 4);
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));
        std::vector<float> scores(std::min<size_t>(heads, 4) * rows), out(heads * d, -7.0f);
        AttendF16(k.data(), v.data(), stride, rows, q.data(), heads, d, scale, scores.data(), out.data());
        for (size_t g = 0; g < heads; ++g) {
          std::vector<double> p(rows);
          double mx = -1e300, sum = 0;
          for (size_t j = 0; j < rows; ++j) {
            double dot = 0;
            for (size_t i = 0; i < d; ++i) dot += Fp16ToFp32(k[j * stride + i]) * q[g * d + i];
            p[j] = scale * dot;
            mx = std::max(mx, p[j]);
          }
          for (auto& x : p) sum += (x = std::exp(x - mx));
          for (size_t i = 0; i < d; ++i) {
            double ref = 0;
            for (size_t j = 0; j < rows; ++j) ref += p[j] / sum * Fp16ToFp32(v[j * stride + i]);
            ASSERT_NEAR(out[g * d + i], ref, 2e-5) << "heads " << heads << " d " << d << " rows " << rows
                                                   << " head " << g << " i " << i;
          }
        }
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
