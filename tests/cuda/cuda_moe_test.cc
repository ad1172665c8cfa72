// The MoE kernels that keep a decode step on the device: the router (softmax, top-k with ties to
// the lower expert id, renormalised weights) against the host computation of runtime/forward.cc,
// the expert matrix-vector kernel against LaunchMatVecQ8 of each chosen expert's slice (the same
// arithmetic: equal bit for bit), and the weighted combine against its formula. Skips without a
// CUDA device.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "quant/quant.h"

namespace qwenmux::runtime::cuda {
namespace {

TEST(CudaMoe, RouterMatchesTheHostRouting) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  std::mt19937 rng(4);
  for (auto [ne, k] : {std::pair{128, 8}, std::pair{60, 4}, std::pair{8, 2}, std::pair{256, 32}}) {
    const int64_t n = 5;
    std::vector<float> logits(n * ne);
    for (float& v : logits) v = static_cast<float>(static_cast<int>(rng() % 64)) / 8.0f;  // ties
    DevBuf<float> d_logits(logits);
    DevBuf<int32_t> idx(n * k);
    DevBuf<float> wt(n * k);
    ASSERT_EQ(LaunchMoeRoute(d_logits.p, n, ne, k, idx.p, wt.p, nullptr), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const auto gi = idx.Read(n * k);
    const auto gw = wt.Read(n * k);
    for (int64_t t = 0; t < n; ++t) {
      std::vector<float> p(logits.begin() + t * ne, logits.begin() + (t + 1) * ne);
      const float mx = *std::max_element(p.begin(), p.end());
      float sum = 0;
      for (float& x : p) sum += (x = std::exp(x - mx));
      for (float& x : p) x /= sum;
      std::vector<int> order(ne);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
      float sel = 0;
      for (int j = 0; j < k; ++j) sel += p[order[j]];
      float wsum = 0;
      for (int j = 0; j < k; ++j) {
        ASSERT_EQ(gi[t * k + j], order[j]) << "ne " << ne << " token " << t << " choice " << j;
        EXPECT_NEAR(gw[t * k + j], p[order[j]] / sel, 1e-5f) << "ne " << ne << " token " << t << " choice " << j;
        wsum += gw[t * k + j];
      }
      EXPECT_NEAR(wsum, 1.0f, 1e-5f);
    }
  }
  EXPECT_EQ(LaunchMoeRoute(nullptr, 1, kMaxDeviceExperts + 1, 8, nullptr, nullptr, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchMoeRoute(nullptr, 1, 8, 9, nullptr, nullptr, nullptr), cudaErrorInvalidValue);
}

TEST(CudaMoe, ExpertKernelEqualsTheSlicesProducts) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  for (gguf::TensorType type : {gguf::TensorType::kQ4_K, gguf::TensorType::kQ6_K, gguf::TensorType::kQ8_0}) {
    const int64_t n_exp = 6, rows = 40, cols = 512, n = 3, k = 2, slots = n * k;
    std::mt19937 rng(9);
    std::normal_distribution<float> nd(0.0f, 0.05f);
    std::vector<float> wf(n_exp * rows * cols);
    for (float& v : wf) v = nd(rng);
    const size_t rb = quant::RowSize(type, cols);
    std::vector<uint8_t> raw(n_exp * rows * rb);
    for (int64_t r = 0; r < n_exp * rows; ++r) {
      ASSERT_TRUE(quant::QuantizeRow(type, wf.data() + r * cols, raw.data() + r * rb, cols).ok());
    }
    DevUpload w(static_cast<DType>(type), n_exp * rows, cols, raw);
    // Activations: n token rows (gate/up read row s / k), quantized on the device.
    std::vector<float> x(slots * cols);
    for (float& v : x) v = nd(rng) * 20;
    DevBuf<float> dx(x);
    const int64_t ld = cols + 32;
    DevBuf<int8_t> q(slots * ld);
    DevBuf<float> ds(slots * (ld / 32) * 2);
    const QActs xq{q.p, ds.p, ld};
    ASSERT_EQ(LaunchQuantizeActs(dx.p, cols, slots, cols, xq, nullptr), cudaSuccess);
    const std::vector<int32_t> choice = {5, 0, 2, 2, 1, 4};  // [n, k]
    DevBuf<int32_t> idx(choice);
    for (int act_div : {static_cast<int>(k), 1}) {
      DevBuf<float> y(slots * rows);
      ASSERT_EQ(LaunchMatVecQ8Experts(w.m, rows, xq, idx.p, slots, act_div, y.p, rows, nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const auto got = y.Read(slots * rows);
      for (int64_t s = 0; s < slots; ++s) {
        QActs xs = xq;  // token s / act_div alone
        xs.q += (s / act_div) * ld;
        xs.ds += (s / act_div) * (ld / 32) * 2;
        DevBuf<float> ref(rows);
        ASSERT_EQ(LaunchMatVecQ8(w.m.Slice(choice[s] * rows, rows), xs, ref.p, rows, 1, false, nullptr), cudaSuccess);
        const auto want = ref.Read(rows);
        for (int64_t r = 0; r < rows; ++r) {
          ASSERT_EQ(got[s * rows + r], want[r]) << gguf::TensorTypeName(type) << " act_div " << act_div << " slot " << s
                                                << " row " << r;
        }
      }
    }
  }
}

TEST(CudaMoe, CombineAddsTheWeightedSlots) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  const int64_t n = 3, k = 4, dim = 100;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> y(n * k * dim), wt(n * k), x(n * dim);
  for (float& v : y) v = u(rng);
  for (float& v : wt) v = u(rng);
  for (float& v : x) v = u(rng);
  DevBuf<float> dy(y), dw(wt), dx(x);
  ASSERT_EQ(LaunchMoeCombine(dy.p, dw.p, n, k, dim, dx.p, nullptr), cudaSuccess);
  const auto got = dx.Read(n * dim);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t c = 0; c < dim; ++c) {
      float want = x[t * dim + c];
      for (int64_t j = 0; j < k; ++j) want += wt[t * k + j] * y[(t * k + j) * dim + c];
      ASSERT_NEAR(got[t * dim + c], want, 1e-5f) << "t " << t << " c " << c;
    }
  }
}

}  // namespace
}  // namespace qwenmux::runtime::cuda
