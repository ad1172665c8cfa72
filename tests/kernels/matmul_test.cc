// MatMul (SIMD, every compiled target) against MatMulReference (dequantize + f32 dot).
//
// Tolerance: the quantized types quantize x to 8 bits per block (scale d = amax / 127), so each
// activation moves by at most d / 2; the result may therefore differ from the f32 reference by
// at most sum_k |w_k| * d_k / 2 (plus f32 rounding). We assert that bound per output, and in
// addition that the RMS error over all outputs is a small fraction of |w|·|x| (a real bug
// produces errors of the order of the result itself).
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/matmul_targets.h"  // same target set as the kernels
#include "hwy/targets.h"
#include "gtest/gtest.h"
#include "base/fp16.h"
#include "base/thread_pool.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/matmul.h"
#include "quant/quant.h"

namespace qwenmux::kernels {
namespace {

using gguf::TensorType;

const TensorType kAllTypes[] = {TensorType::kF32,  TensorType::kF16,  TensorType::kBF16,
                                TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ4_K,
                                TensorType::kQ5_K, TensorType::kQ6_K};

struct Weights {
  std::vector<uint8_t> bytes;
  WeightView view;
};

Weights MakeWeights(TensorType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> row(static_cast<size_t>(cols));
  Weights w;
  const size_t rb = quant::RowSize(type, cols);
  EXPECT_GT(rb, 0u);
  w.bytes.resize(rb * static_cast<size_t>(rows) + 64);
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = 0.02f * static_cast<float>(1 + r % 5);  // rows of different magnitude
    for (auto& v : row) v = nd(rng) * scale;
    EXPECT_TRUE(quant::QuantizeRow(type, row.data(), w.bytes.data() + rb * r, cols).ok());
  }
  w.view.type = type;
  w.view.data = w.bytes.data();
  w.view.rows = rows;
  w.view.cols = cols;
  w.view.row_bytes = rb;
  return w;
}

bool IsQuantized(TensorType t) {
  return t != TensorType::kF32 && t != TensorType::kF16 && t != TensorType::kBF16;
}
int64_t ActBlock(TensorType t) {
  if (t == TensorType::kQ8_0 || t == TensorType::kQ4_0) return 32;
  return 256;
}

// Runs MatMul on misaligned x/y with strides larger than the rows, compares to the reference.
void CheckMatMul(const WeightView& w, int64_t n_tokens, ThreadPool* pool, std::mt19937& rng,
                 const std::string& what) {
  const int64_t cols = w.cols, rows = w.rows;
  const int64_t ldx = cols + 3, ldy = rows + 5;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> xbuf(static_cast<size_t>(n_tokens * ldx + 1));
  for (auto& v : xbuf) v = nd(rng);
  // A few outliers, as real activations have.
  for (int64_t t = 0; t < n_tokens; ++t) xbuf[1 + t * ldx + (t * 7) % cols] = 20.0f;
  const float* x = xbuf.data() + 1;  // misaligned by one float
  std::vector<float> ybuf(static_cast<size_t>(n_tokens * ldy + 1), -12345.0f);
  std::vector<float> yref(static_cast<size_t>(n_tokens * ldy), -12345.0f);
  float* y = ybuf.data() + 1;
  MatMul(w, x, ldx, y, ldy, n_tokens, pool);
  MatMulReference(w, x, ldx, yref.data(), ldy, n_tokens);

  std::vector<float> wrow(static_cast<size_t>(cols));
  double err2 = 0.0, norm2 = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeRowTo(w, r, wrow.data());
    double wn2 = 0.0;
    for (float v : wrow) wn2 += static_cast<double>(v) * v;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * ldx;
      double xn2 = 0.0, bound = 0.0, abs_dot = 0.0;
      for (int64_t k = 0; k < cols; ++k) {
        xn2 += static_cast<double>(xt[k]) * xt[k];
        abs_dot += std::fabs(static_cast<double>(wrow[k]) * xt[k]);
      }
      if (IsQuantized(w.type)) {
        const int64_t bs = ActBlock(w.type);
        for (int64_t b = 0; b < cols / bs; ++b) {
          double amax = 0.0, wsum = 0.0;
          for (int64_t k = b * bs; k < (b + 1) * bs; ++k) {
            amax = std::max(amax, std::fabs(static_cast<double>(xt[k])));
            wsum += std::fabs(static_cast<double>(wrow[k]));
          }
          bound += wsum * amax / 127.0 * 0.5;
        }
      }
      bound = bound * 1.001 + 2e-6 * abs_dot + 1e-6;
      const double got = y[t * ldy + r], want = yref[t * ldy + r];
      ASSERT_NEAR(got, want, bound) << what << " row " << r << " token " << t;
      err2 += (got - want) * (got - want);
      norm2 += wn2 * xn2;
    }
  }
  // Outside the written rows/columns nothing changed.
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = rows; r < ldy && t * ldy + r < n_tokens * ldy; ++r) {
      if (t * ldy + r < static_cast<int64_t>(ybuf.size()) - 1) {
        ASSERT_EQ(y[t * ldy + r], -12345.0f) << what << " wrote past the row end";
      }
    }
  }
  EXPECT_EQ(ybuf[0], -12345.0f) << what;
  const double rel = std::sqrt(err2 / std::max(norm2, 1e-30));
  EXPECT_LT(rel, IsQuantized(w.type) ? 1e-2 : 1e-6) << what;
}

struct Shape {
  int64_t rows, cols_blocks, n_tokens;  // cols = cols_blocks * block size
};

std::vector<int64_t> ColsFor(TensorType t) {
  if (!IsQuantized(t)) return {1, 7, 33, 256, 768, 4352};
  if (t == TensorType::kQ8_0 || t == TensorType::kQ4_0) return {32, 96, 256, 768, 4352};
  return {256, 768, 4352};
}

class MatMulTargets : public ::testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override { hwy::SetSupportedTargetsForTest(GetParam()); }
  void TearDown() override { hwy::SetSupportedTargetsForTest(0); }
};

TEST_P(MatMulTargets, AllTypesOddShapes) {
  std::mt19937 rng(1234);
  const int64_t rows_list[] = {1, 3, 17, 130};
  // 3 and 7 exercise the odd tails of the 4-token tiles (and of the AVX-512 token pairs).
  const int64_t tokens_list[] = {1, 2, 3, 5, 7, 33};
  for (TensorType type : kAllTypes) {
    const auto cols_list = ColsFor(type);
    // Cover every rows / cols / n_tokens value without the full cross product.
    for (size_t i = 0; i < cols_list.size(); ++i) {
      for (size_t j = 0; j < 6; ++j) {
        const int64_t rows = rows_list[(i + j) % 4];
        const int64_t n_tokens = tokens_list[j];
        const int64_t cols = cols_list[i];
        if (rows * cols * n_tokens > 130 * 768 * 33) continue;  // keep the oracle affordable
        Weights w = MakeWeights(type, rows, cols, rng);
        CheckMatMul(w.view, n_tokens, nullptr, rng,
                    std::string(hwy::TargetName(GetParam())) + " " +
                        gguf::TensorTypeName(type) + " rows " + std::to_string(rows) +
                        " cols " + std::to_string(cols) + " n " + std::to_string(n_tokens));
      }
    }
  }
}

TEST_P(MatMulTargets, ThreadPools) {
  std::mt19937 rng(99);
  for (size_t threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (TensorType type : kAllTypes) {
      for (int64_t n_tokens : {1, 3, 5}) {
        const int64_t cols = IsQuantized(type) ? 512 : 100;
        for (int64_t rows : {1, 130}) {
          Weights w = MakeWeights(type, rows, cols, rng);
          CheckMatMul(w.view, n_tokens, &pool, rng,
                      std::string(hwy::TargetName(GetParam())) + " " +
                          gguf::TensorTypeName(type) + " threads " + std::to_string(threads));
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, MatMulTargets,
                         ::testing::ValuesIn(hwy::SupportedAndGeneratedTargets()),
                         [](const ::testing::TestParamInfo<int64_t>& info) {
                           return std::string(hwy::TargetName(info.param));
                         });

TEST(MatMulKernels, Supports) {
  for (TensorType t : kAllTypes) EXPECT_TRUE(MatMulSupports(t)) << gguf::TensorTypeName(t);
  EXPECT_FALSE(MatMulSupports(TensorType::kQ2_K));
  EXPECT_FALSE(MatMulSupports(TensorType::kIQ4_XS));
  EXPECT_FALSE(MatMulSupports(TensorType::kI32));
}

TEST(MatMulKernels, ExpertSlice) {
  // Three experts of 17 rows stacked in one tensor; a slice must equal the expert alone.
  std::mt19937 rng(7);
  for (TensorType type : {TensorType::kQ8_0, TensorType::kQ4_K, TensorType::kF16}) {
    const int64_t cols = 512, rows = 17;
    Weights stacked = MakeWeights(type, 3 * rows, cols, rng);
    const WeightView e1 = stacked.view.Slice(rows, rows);
    EXPECT_EQ(e1.rows, rows);
    EXPECT_EQ(e1.data, stacked.bytes.data() + rows * stacked.view.row_bytes);
    Weights alone;
    alone.bytes.assign(e1.data, e1.data + rows * e1.row_bytes);
    alone.view = e1;
    alone.view.data = alone.bytes.data();
    std::normal_distribution<float> nd;
    std::vector<float> x(static_cast<size_t>(3 * cols));
    for (auto& v : x) v = nd(rng);
    std::vector<float> y1(3 * rows), y2(3 * rows);
    MatMul(e1, x.data(), cols, y1.data(), rows, 3, nullptr);
    MatMul(alone.view, x.data(), cols, y2.data(), rows, 3, nullptr);
    EXPECT_EQ(y1, y2) << gguf::TensorTypeName(type);
    CheckMatMul(e1, 3, nullptr, rng, "slice");
  }
}

TEST(MatMulKernels, DequantizeRowToMatchesQuant) {
  std::mt19937 rng(5);
  for (TensorType type : kAllTypes) {
    const int64_t cols = 768;
    Weights w = MakeWeights(type, 4, cols, rng);
    std::vector<float> got(cols), want(cols);
    for (int64_t r = 0; r < 4; ++r) {
      DequantizeRowTo(w.view, r, got.data());
      ASSERT_TRUE(quant::DequantizeRow(type, w.bytes.data() + r * w.view.row_bytes, want.data(),
                                       cols).ok());
      EXPECT_EQ(got, want) << gguf::TensorTypeName(type) << " row " << r;
    }
  }
}

TEST(MatMulKernels, HalfToFloatIsExactForAllInputs) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float want = Fp16ToFp32(static_cast<uint16_t>(h));
    const float got = internal::HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      EXPECT_EQ(BitsFromFp32(got), BitsFromFp32(want)) << h;
    }
  }
}

TEST(MatMulKernels, UnsupportedTypeGivesZerosNotACrash) {
  std::vector<uint8_t> bytes(1024, 0xAB);
  WeightView w;
  w.type = TensorType::kIQ2_XXS;
  w.data = bytes.data();
  w.rows = 2;
  w.cols = 256;
  w.row_bytes = 66;
  std::vector<float> x(256, 1.0f), y(2, 7.0f);
  MatMul(w, x.data(), 256, y.data(), 2, 1, nullptr);
  EXPECT_EQ(y, std::vector<float>(2, 0.0f));
}

TEST(MatMulKernels, ZeroActivationsGiveZero) {
  std::mt19937 rng(3);
  for (TensorType type : kAllTypes) {
    Weights w = MakeWeights(type, 5, 256, rng);
    std::vector<float> x(2 * 256, 0.0f), y(2 * 5, 1.0f);
    MatMul(w.view, x.data(), 256, y.data(), 5, 2, nullptr);
    EXPECT_EQ(y, std::vector<float>(10, 0.0f)) << gguf::TensorTypeName(type);
  }
}

// MatMulMany (one quantization of x per block size, one fork/join) gives each product exactly what
// MatMul gives it alone: mixed block sizes (Q8_0's 32, the K-quants' 256), a float type, an
// unsupported type (zeros), more products than one call holds, pools of 1-3 threads.
TEST(MatMulKernels, ManyEqualsOneByOne) {
  std::mt19937 rng(11);
  const int64_t cols = 512;
  std::vector<Weights> ws;
  for (TensorType type : {TensorType::kQ4_K, TensorType::kQ8_0, TensorType::kQ6_K, TensorType::kF16,
                          TensorType::kQ5_K, TensorType::kQ4_0}) {
    ws.push_back(MakeWeights(type, 37 + 16 * static_cast<int64_t>(ws.size()), cols, rng));
  }
  std::vector<uint8_t> junk(4096, 0xAB);
  Weights unsupported;
  unsupported.view = {TensorType::kIQ2_XXS, junk.data(), 3, cols, 66 * 2};
  ws.push_back(unsupported);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (size_t threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n_tokens : {1, 5, 20}) {
      std::vector<float> x(static_cast<size_t>(n_tokens * cols));
      for (auto& v : x) v = nd(rng);
      std::vector<std::vector<float>> one(ws.size()), many(ws.size());
      std::vector<MatMulOut> outs;
      for (size_t i = 0; i < ws.size(); ++i) {
        const int64_t rows = ws[i].view.rows;
        one[i].assign(static_cast<size_t>(n_tokens * rows), 1.0f);
        many[i].assign(static_cast<size_t>(n_tokens * rows), 2.0f);
        MatMul(ws[i].view, x.data(), cols, one[i].data(), rows, n_tokens, &pool);
        outs.push_back({ws[i].view, many[i].data(), rows});
      }
      MatMulMany(outs, x.data(), cols, n_tokens, &pool);
      for (size_t i = 0; i < ws.size(); ++i) {
        EXPECT_EQ(many[i], one[i]) << gguf::TensorTypeName(ws[i].view.type) << " threads " << threads
                                   << " tokens " << n_tokens;
      }
      EXPECT_EQ(many.back(), std::vector<float>(many.back().size(), 0.0f));
    }
  }
}

}  // namespace
}  // namespace qwenmux::kernels
