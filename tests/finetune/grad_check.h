// Finite-difference checks of the finetune backward steps: random inputs, a random projection
// of the output to a scalar, central differences against the analytic gradient.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace qwenmux::testing {

inline std::vector<float> RandomVec(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

inline double WeightedSum(const std::vector<float>& y, const std::vector<float>& w) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += static_cast<double>(y[i]) * w[i];
  return s;
}

// Checks `grad` (the analytic gradient of loss at x) against central differences of `loss`
// (which reads x) with step h: max |g − fd| ≤ tol · max(1, max |fd|).
inline void ExpectGradMatches(std::vector<float>& x, const std::vector<float>& grad,
                              const std::function<double()>& loss, const std::string& what, float h = 1e-2f,
                              double tol = 2e-3) {
  ASSERT_EQ(x.size(), grad.size()) << what;
  double max_err = 0, max_fd = 0;
  size_t worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float keep = x[i];
    x[i] = keep + h;
    const double lp = loss();
    x[i] = keep - h;
    const double lm = loss();
    x[i] = keep;
    const double fd = (lp - lm) / (2.0 * h);
    max_fd = std::max(max_fd, std::abs(fd));
    const double err = std::abs(fd - grad[i]);
    if (err > max_err) max_err = err, worst = i;
  }
  EXPECT_LE(max_err, tol * std::max(1.0, max_fd)) << what << ": worst element " << worst << " analytic " << grad[worst];
  EXPECT_GT(max_fd, 0.0) << what << ": the loss does not depend on the input";
}

}  // namespace qwenmux::testing
