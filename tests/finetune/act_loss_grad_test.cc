// Backward of SwiGLU and of the masked cross-entropy against finite differences.
#include <cmath>

#include <gtest/gtest.h>

#include "finetune/grad_check.h"
#include "finetune/ops.h"

namespace qwenmux::testing {
namespace {

TEST(FinetuneActivation, SwiGluBackwardMatchesFiniteDifferences) {
  const int64_t n = 23;
  auto g = RandomVec(n, 41, 4.0f), u = RandomVec(n, 42, 2.0f);
  const auto wy = RandomVec(n, 43);
  auto loss = [&] {
    std::vector<float> h(n);
    finetune::SwiGluForward(g.data(), u.data(), h.data(), n);
    return WeightedSum(h, wy);
  };
  std::vector<float> dg(n), du(n);
  finetune::SwiGluBackward(g.data(), u.data(), wy.data(), dg.data(), du.data(), n);
  ExpectGradMatches(g, dg, loss, "SwiGLU dgate");
  ExpectGradMatches(u, du, loss, "SwiGLU dup");
}

TEST(FinetuneLoss, CrossEntropyMatchesFiniteDifferences) {
  const int64_t m = 3, vocab = 11;
  auto logits = RandomVec(m * vocab, 44, 3.0f);
  const std::vector<int32_t> labels = {4, 0, 10};
  const float weight = 0.37f;
  auto direct = [&] {
    double s = 0;
    for (int64_t i = 0; i < m; ++i) {
      double z = 0;
      for (int64_t j = 0; j < vocab; ++j) z += std::exp(double(logits[i * vocab + j]));
      s += std::log(z) - logits[i * vocab + labels[i]];
    }
    return s;
  };
  auto grad = logits;
  std::vector<uint8_t> ok(m);
  const double l = finetune::CrossEntropyForwardBackward(grad.data(), labels.data(), m, vocab, weight, ok.data(), nullptr);
  EXPECT_NEAR(l, direct(), 1e-5);
  for (int64_t i = 0; i < m; ++i) {
    const float* r = logits.data() + i * vocab;
    EXPECT_EQ(ok[i], std::max_element(r, r + vocab) - r == labels[i]);
  }
  ExpectGradMatches(logits, grad, [&] { return weight * direct(); }, "cross-entropy dlogits");
}

}  // namespace
}  // namespace qwenmux::testing
