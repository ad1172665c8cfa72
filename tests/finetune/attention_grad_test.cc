// Backward of causal grouped-query attention against finite differences (odd head size, 3 query
// heads per KV head), and the causal mask.
#include <gtest/gtest.h>

#include "finetune/grad_check.h"
#include "finetune/ops.h"

namespace qwenmux::testing {
namespace {

TEST(FinetuneAttention, BackwardMatchesFiniteDifferences) {
  const finetune::AttnShape a{5, 6, 2, 7};
  auto q = RandomVec(a.n * a.hq * a.hd, 31, 1.5f);
  auto k = RandomVec(a.n * a.hkv * a.hd, 32, 1.5f);
  auto v = RandomVec(a.n * a.hkv * a.hd, 33);
  const auto wy = RandomVec(a.n * a.hq * a.hd, 34);
  ThreadPool pool(2);
  auto loss = [&] {
    std::vector<float> o(a.n * a.hq * a.hd), lse(a.hq * a.n);
    finetune::AttentionForward(a, q.data(), k.data(), v.data(), o.data(), lse.data(), &pool);
    return WeightedSum(o, wy);
  };
  std::vector<float> o(a.n * a.hq * a.hd), lse(a.hq * a.n);
  finetune::AttentionForward(a, q.data(), k.data(), v.data(), o.data(), lse.data(), &pool);
  // Position 0 attends only to itself: its output is its value row.
  for (int64_t h = 0; h < a.hq; ++h)
    for (int64_t i = 0; i < a.hd; ++i) EXPECT_NEAR(o[h * a.hd + i], v[(h / 3) * a.hd + i], 1e-6);
  std::vector<float> dq(q.size()), dk(k.size()), dv(v.size());
  finetune::AttentionBackward(a, q.data(), k.data(), v.data(), o.data(), lse.data(), wy.data(), dq.data(), dk.data(),
                              dv.data(), &pool);
  ExpectGradMatches(q, dq, loss, "attention dq");
  ExpectGradMatches(k, dk, loss, "attention dk");
  ExpectGradMatches(v, dv, loss, "attention dv");
  // Causal: the last position's key and value get gradient only from the last query.
  std::vector<float> wlast(wy.size(), 0.0f);
  for (int64_t t = 0; t + 1 < a.n; ++t)
    for (int64_t i = 0; i < a.hq * a.hd; ++i) wlast[t * a.hq * a.hd + i] = wy[t * a.hq * a.hd + i];
  finetune::AttentionBackward(a, q.data(), k.data(), v.data(), o.data(), lse.data(), wlast.data(), dq.data(),
                              dk.data(), dv.data(), nullptr);
  for (int64_t i = 0; i < a.hkv * a.hd; ++i) {
    EXPECT_EQ(dk[(a.n - 1) * a.hkv * a.hd + i], 0.0f);
    EXPECT_EQ(dv[(a.n - 1) * a.hkv * a.hd + i], 0.0f);
  }
}

}  // namespace
}  // namespace qwenmux::testing
