// Backward of RMSNorm and of the per-head q/k norm + NeoX RoPE against finite differences.
#include <cmath>

#include <gtest/gtest.h>

#include "finetune/grad_check.h"
#include "finetune/ops.h"

namespace qwenmux::testing {
namespace {

TEST(FinetuneNorm, RmsNormBackwardMatchesFiniteDifferences) {
  const int64_t n = 3, d = 17;
  auto x = RandomVec(n * d, 21);
  const auto w = RandomVec(d, 22, 2.0f);
  const auto wy = RandomVec(n * d, 23);
  auto loss = [&] {
    std::vector<float> y(n * d), r(n);
    finetune::RmsNormForward(x.data(), w.data(), y.data(), r.data(), n, d, 1e-6f);
    return WeightedSum(y, wy);
  };
  std::vector<float> y(n * d), r(n), dx(n * d);
  finetune::RmsNormForward(x.data(), w.data(), y.data(), r.data(), n, d, 1e-6f);
  for (int64_t t = 0; t < n; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += double(x[t * d + i]) * x[t * d + i];
    EXPECT_NEAR(r[t], 1.0 / std::sqrt(ss / d + 1e-6), 1e-5);
  }
  finetune::RmsNormBackward(x.data(), w.data(), r.data(), wy.data(), dx.data(), n, d, false);
  ExpectGradMatches(x, dx, loss, "RMSNorm dx");
}

TEST(FinetuneNorm, QkNormRopeBackwardMatchesFiniteDifferences) {
  const int64_t n = 4, h = 3, hd = 10;
  std::vector<float> freq(hd / 2);
  for (int64_t i = 0; i < hd / 2; ++i) freq[i] = static_cast<float>(std::pow(100.0, -2.0 * i / hd));
  const auto cs = finetune::RopeTable(freq, 1.0f, n);
  auto pre = RandomVec(n * h * hd, 24);
  const auto w = RandomVec(hd, 25, 2.0f);
  const auto wy = RandomVec(n * h * hd, 26);
  auto loss = [&] {
    std::vector<float> out(n * h * hd), r(n * h);
    finetune::QkNormRopeForward(pre.data(), w.data(), cs.data(), out.data(), r.data(), n, h, hd, 1e-6f);
    return WeightedSum(out, wy);
  };
  std::vector<float> out(n * h * hd), r(n * h), dpre(n * h * hd);
  finetune::QkNormRopeForward(pre.data(), w.data(), cs.data(), out.data(), r.data(), n, h, hd, 1e-6f);
  // Position 0 is not rotated: the output there is the normed input.
  for (int64_t i = 0; i < hd; ++i) EXPECT_NEAR(out[i], w[i] * pre[i] * r[0], 1e-6);
  finetune::QkNormRopeBackward(pre.data(), w.data(), cs.data(), r.data(), wy.data(), dpre.data(), n, h, hd);
  ExpectGradMatches(pre, dpre, loss, "q/k norm + RoPE dx");
}

}  // namespace
}  // namespace qwenmux::testing
