// Backward of the frozen-weight products (x·Wᵀ, any weight type, f32 activations) and of the
// LoRA products against finite differences, on odd shapes.
#include <gtest/gtest.h>

#include "finetune/grad_check.h"
#include "finetune/ops.h"
#include "quant/quant.h"

namespace qwenmux::testing {
namespace {

using finetune::F32View;
using finetune::OpScratch;

TEST(FinetuneLinear, BackwardInputMatchesFiniteDifferences) {
  const int64_t rows = 7, cols = 13, n = 5;
  const auto w = RandomVec(rows * cols, 1);
  auto x = RandomVec(n * cols, 2);
  const auto wy = RandomVec(n * rows, 3);
  OpScratch s;
  auto loss = [&] {
    std::vector<float> y(n * rows);
    finetune::LinearForward(F32View(w.data(), rows, cols), x.data(), n, y.data(), &s, nullptr);
    return WeightedSum(y, wy);
  };
  std::vector<float> dx(n * cols, 5.0f);
  finetune::LinearBackwardInput(F32View(w.data(), rows, cols), wy.data(), n, dx.data(), false, &s, nullptr);
  ExpectGradMatches(x, dx, loss, "x·Wᵀ: dx");
  // accumulate adds to what is there
  std::vector<float> acc(n * cols, 1.0f);
  finetune::LinearBackwardInput(F32View(w.data(), rows, cols), wy.data(), n, acc.data(), true, &s, nullptr);
  for (size_t i = 0; i < acc.size(); ++i) EXPECT_NEAR(acc[i], dx[i] + 1.0f, 1e-5f);
}

// Quantized and float weights: the products use the dequantized weight with the activations kept
// in f32, so they match a double-precision product of the dequantized matrix to f32 rounding
// (8-bit activations would be off by ~1e-2), in every type the engine runs.
class FinetuneLinearTypes : public ::testing::TestWithParam<gguf::TensorType> {};

TEST_P(FinetuneLinearTypes, ActivationsStayF32) {
  const gguf::TensorType type = GetParam();
  const int64_t rows = 9, cols = 256, n = 3;
  const auto wf = RandomVec(rows * cols, 4);
  const size_t rb = quant::RowSize(type, cols);
  std::vector<uint8_t> bytes(rb * rows);
  for (int64_t r = 0; r < rows; ++r) {
    ASSERT_TRUE(quant::QuantizeRow(type, wf.data() + r * cols, bytes.data() + r * rb, cols).ok());
  }
  std::vector<float> wd(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    ASSERT_TRUE(quant::DequantizeRow(type, bytes.data() + r * rb, wd.data() + r * cols, cols).ok());
  }
  kernels::WeightView w{type, bytes.data(), rows, cols, rb};
  const auto x = RandomVec(n * cols, 5);
  const auto dy = RandomVec(n * rows, 6);
  OpScratch s;
  ThreadPool pool(2);
  std::vector<float> y(n * rows), dx(n * cols);
  finetune::LinearForward(w, x.data(), n, y.data(), &s, &pool);
  finetune::LinearBackwardInput(w, dy.data(), n, dx.data(), false, &s, &pool);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      double ref = 0;
      for (int64_t k = 0; k < cols; ++k) ref += static_cast<double>(wd[r * cols + k]) * x[t * cols + k];
      EXPECT_NEAR(y[t * rows + r], ref, 2e-5 * (1 + std::abs(ref))) << t << "," << r;
    }
    for (int64_t k = 0; k < cols; ++k) {
      double ref = 0;
      for (int64_t r = 0; r < rows; ++r) ref += static_cast<double>(wd[r * cols + k]) * dy[t * rows + r];
      EXPECT_NEAR(dx[t * cols + k], ref, 2e-5 * (1 + std::abs(ref))) << t << "," << k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, FinetuneLinearTypes,
                         ::testing::Values(gguf::TensorType::kF32, gguf::TensorType::kF16, gguf::TensorType::kBF16,
                                           gguf::TensorType::kQ8_0, gguf::TensorType::kQ4_0, gguf::TensorType::kQ4_K,
                                           gguf::TensorType::kQ5_K, gguf::TensorType::kQ6_K),
                         [](const auto& info) { return std::string(gguf::TensorTypeName(info.param)); });

TEST(FinetuneLora, BackwardMatchesFiniteDifferences) {
  const int64_t r = 3, in = 11, out = 7, n = 5;
  auto a = RandomVec(r * in, 7), b = RandomVec(out * r, 8), x = RandomVec(n * in, 9);
  const auto wy = RandomVec(n * out, 10);
  const auto base = RandomVec(n * out, 11);
  OpScratch s;
  ThreadPool pool(2);
  auto forward = [&](std::vector<float>* mid) {
    std::vector<float> y = base;
    finetune::LoraRef p{r, in, out, 2.5f, a.data(), b.data()};
    finetune::LoraForward(p, x.data(), n, y.data(), mid->data(), &s, &pool);
    return y;
  };
  std::vector<float> mid(n * r);
  auto loss = [&] {
    std::vector<float> m(n * r);
    return WeightedSum(forward(&m), wy);
  };
  const auto y = forward(&mid);
  // The delta is factor·(x·Aᵀ)·Bᵀ on top of y.
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t o = 0; o < out; ++o) {
      double d = 0;
      for (int64_t j = 0; j < r; ++j) {
        double xa = 0;
        for (int64_t k = 0; k < in; ++k) xa += static_cast<double>(x[t * in + k]) * a[j * in + k];
        d += xa * b[o * r + j];
      }
      EXPECT_NEAR(y[t * out + o] - base[t * out + o], 2.5 * d, 1e-5);
    }
  }
  std::vector<float> ga(r * in, 0.0f), gb(out * r, 0.0f), dx(n * in, 0.0f);
  finetune::LoraRef p{r, in, out, 2.5f, a.data(), b.data()};
  finetune::LoraBackward(p, x.data(), mid.data(), wy.data(), n, ga.data(), gb.data(), dx.data(), &s, &pool);
  ExpectGradMatches(a, ga, loss, "LoRA dA");
  ExpectGradMatches(b, gb, loss, "LoRA dB");
  ExpectGradMatches(x, dx, loss, "LoRA dx");
  // Gradients accumulate over calls (gradient accumulation, several sequences).
  finetune::LoraBackward(p, x.data(), mid.data(), wy.data(), n, ga.data(), gb.data(), nullptr, &s, &pool);
  std::vector<float> ga1(r * in, 0.0f), gb1(out * r, 0.0f);
  finetune::LoraBackward(p, x.data(), mid.data(), wy.data(), n, ga1.data(), gb1.data(), nullptr, &s, &pool);
  for (size_t i = 0; i < ga.size(); ++i) EXPECT_NEAR(ga[i], 2 * ga1[i], 1e-5f);
  for (size_t i = 0; i < gb.size(); ++i) EXPECT_NEAR(gb[i], 2 * gb1[i], 1e-5f);
}

}  // namespace
}  // namespace qwenmux::testing
