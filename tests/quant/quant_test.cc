// Format-level tests: rounding helpers, errors, round-trip bounds, quality vs the reference
// quantizer's figures, thread-count independence.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "base/fp16.h"
#include "quant/blocks.h"
#include "quant/formats.h"
#include "quant/quality.h"
#include "quant/quant.h"

namespace qwenmux::quant {
namespace {

using gguf::TensorType;

// fp32 -> fp16 must round to nearest even like F16C / ggml's GGML_FP32_TO_FP16. The compiler's
// _Float16 conversion (IEEE, round-to-nearest-even) is the independent oracle. GCC 12 has no
// _Float16 in C++ on ARM; there __fp16 is the same IEEE binary16 type (hardware fcvt, RNE).
#if defined(__ARM_FP16_FORMAT_IEEE)
using CompilerHalf = __fp16;
#else
using CompilerHalf = _Float16;
#endif
TEST(QuantFp16, MatchesCompilerFloat16OnEdgesAndSweep) {
  auto check = [](uint32_t bits) {
    const float f = Fp32FromBits(bits);
    const CompilerHalf h = static_cast<CompilerHalf>(f);
    uint16_t want;
    std::memcpy(&want, &h, 2);
    const uint16_t got = Fp32ToFp16(f);
    if (std::isnan(f)) {
      ASSERT_EQ(got & 0x7C00u, 0x7C00u);
      ASSERT_NE(got & 0x3FFu, 0u);
      return;
    }
    ASSERT_EQ(got, want) << "bits 0x" << std::hex << bits;
  };
  // Every fp16 value, the midpoints between neighbours and one fp32 ulp either side.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = Fp16ToFp32(static_cast<uint16_t>(h));
    const CompilerHalf hh = static_cast<CompilerHalf>(f);
    uint16_t back;
    std::memcpy(&back, &hh, 2);
    if (!std::isnan(f)) {
      ASSERT_EQ(back, h) << "fp16->fp32 not exact for 0x" << std::hex << h;
    }
    const uint32_t b = BitsFromFp32(f);
    for (int64_t dlt = -0x2001; dlt <= 0x2001; dlt += 0x1000) check(static_cast<uint32_t>(b + dlt));
    check(b + 1);
    check(b - 1);
  }
  for (uint64_t bits = 0; bits < (1ull << 32); bits += 4093) check(static_cast<uint32_t>(bits));
}

TEST(QuantFp16, Bf16RoundsToNearestEvenAndQuietsNan) {
  EXPECT_EQ(Fp32ToBf16(1.0f), 0x3F80);
  EXPECT_EQ(Fp32ToBf16(Fp32FromBits(0x3F808000u)), 0x3F80);  // tie -> even
  EXPECT_EQ(Fp32ToBf16(Fp32FromBits(0x3F818000u)), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(Fp32ToBf16(Fp32FromBits(0x3F808001u)), 0x3F81);
  EXPECT_EQ(Fp32ToBf16(Fp32FromBits(0x7F800001u)), 0x7FC0);  // signalling nan -> quiet
  EXPECT_EQ(Fp32ToBf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  EXPECT_EQ(Fp32ToBf16(Fp32FromBits(0x7F7FFFFFu)), 0x7F80);  // FLT_MAX rounds to inf
}

TEST(QuantApi, RowSizes) {
  EXPECT_EQ(RowSize(TensorType::kF32, 256), 1024u);
  EXPECT_EQ(RowSize(TensorType::kF16, 256), 512u);
  EXPECT_EQ(RowSize(TensorType::kBF16, 3), 6u);
  EXPECT_EQ(RowSize(TensorType::kQ8_0, 4096), 128u * 34);
  EXPECT_EQ(RowSize(TensorType::kQ4_0, 4096), 128u * 18);
  EXPECT_EQ(RowSize(TensorType::kQ4_K, 4096), 16u * 144);
  EXPECT_EQ(RowSize(TensorType::kQ5_K, 4096), 16u * 176);
  EXPECT_EQ(RowSize(TensorType::kQ6_K, 4096), 16u * 210);
  EXPECT_EQ(RowSize(TensorType::kQ4_K, 4096 + 32), 0u);
  EXPECT_EQ(RowSize(TensorType::kQ4_1, 4096), 0u);
  EXPECT_EQ(RowSize(TensorType::kQ8_0, -32), 0u);
  // Agrees with the GGUF type table.
  for (auto t : {TensorType::kF32, TensorType::kF16, TensorType::kBF16, TensorType::kQ8_0,
                 TensorType::kQ4_0, TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K}) {
    EXPECT_EQ(RowSize(t, 512), *gguf::RowBytes(t, 512)) << gguf::TensorTypeName(t);
  }
}

TEST(QuantApi, ErrorsAreStatusesNamingTypeAndSize) {
  std::vector<float> x(300, 0.5f);
  std::vector<uint8_t> buf(4096);
  Status s = QuantizeRow(TensorType::kQ4_1, x.data(), buf.data(), 32);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_NE(s.message().find("q4_1"), std::string::npos) << s.message();
  s = DequantizeRow(TensorType::kIQ2_XXS, buf.data(), x.data(), 256);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_NE(s.message().find("iq2_xxs"), std::string::npos) << s.message();
  s = QuantizeRow(static_cast<TensorType>(999), x.data(), buf.data(), 32);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_NE(s.message().find("999"), std::string::npos) << s.message();
  s = QuantizeRow(TensorType::kQ4_K, x.data(), buf.data(), 288);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("288"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("256"), std::string::npos) << s.message();
  s = DequantizeRow(TensorType::kQ8_0, buf.data(), x.data(), 33);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  s = QuantizeTensor(TensorType::kQ6_K, x.data(), buf.data(), 1, 100, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  s = QuantizeTensor(TensorType::kQ8_0, x.data(), buf.data(), -1, 32, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  x[40] = std::numeric_limits<float>::quiet_NaN();
  for (auto t : {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ4_K, TensorType::kQ5_K,
                 TensorType::kQ6_K}) {
    s = QuantizeRow(t, x.data(), buf.data(), 256);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << gguf::TensorTypeName(t);
    EXPECT_NE(s.message().find("element 40"), std::string::npos) << s.message();
  }
  // The threaded path reports the failing row.
  ThreadPool pool(2);
  std::vector<float> rows(256 * 8, 1.0f);
  rows[256 * 5 + 3] = std::numeric_limits<float>::infinity();
  s = QuantizeTensor(TensorType::kQ8_0, rows.data(), buf.data(), 8, 256, &pool);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("row 5"), std::string::npos) << s.message();
  // F16 keeps non-finite values.
  EXPECT_TRUE(QuantizeRow(TensorType::kF16, x.data(), buf.data(), 256).ok());
}

// The reference quantizer's relative RMSE on N(0,1) rows of 4096 (figures from the issue).
struct QualityCase {
  TensorType type;
  double reference_rel_rmse;
};

class QuantQuality : public ::testing::TestWithParam<QualityCase> {};

TEST_P(QuantQuality, WithinTwoPercentOfReferenceQuantizer) {
  constexpr int64_t kRows = 64, kCols = 4096;
  const auto x = GaussianData(kRows * kCols, 1234);
  ThreadPool pool(2);
  auto rel = RoundTripRelativeRmse(GetParam().type, x, kRows, kCols, &pool);
  ASSERT_TRUE(rel.ok()) << rel.status().ToString();
  RecordProperty("rel_rmse", std::to_string(*rel));
  EXPECT_LE(*rel, 1.02 * GetParam().reference_rel_rmse) << gguf::TensorTypeName(GetParam().type);
  // A quantizer that is much better than the reference is not the reference algorithm.
  EXPECT_GE(*rel, 0.90 * GetParam().reference_rel_rmse) << gguf::TensorTypeName(GetParam().type);
}

INSTANTIATE_TEST_SUITE_P(
    Reference, QuantQuality,
    ::testing::Values(QualityCase{TensorType::kQ8_0, 0.00536}, QualityCase{TensorType::kQ4_0, 0.0859},
                      QualityCase{TensorType::kQ4_K, 0.0714}, QualityCase{TensorType::kQ5_K, 0.0361},
                      QualityCase{TensorType::kQ6_K, 0.0177}),
    [](const auto& info) { return std::string(gguf::TensorTypeName(info.param.type)); });

// Per-value error bounds implied by each format: half a quantization step of the block's scale.
TEST(QuantRoundTrip, PerValueErrorBounds) {
  const auto x = GaussianData(16 * 1024, 7);
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(RowSize(TensorType::kQ4_K, n) * 4);
  std::vector<float> y(x.size());
  // Q8_0: |err| <= d/2 (+ fp16 rounding of d scaled by 127).
  ASSERT_TRUE(QuantizeRow(TensorType::kQ8_0, x.data(), q.data(), n).ok());
  ASSERT_TRUE(DequantizeRow(TensorType::kQ8_0, q.data(), y.data(), n).ok());
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float d = amax / 127;
    for (int j = 0; j < 32; ++j) {
      ASSERT_LE(std::fabs(x[b * 32 + j] - y[b * 32 + j]), 0.5f * d + amax * 1e-3f);
    }
  }
  // Q4_0: |err| <= d/2 except the clamped top end (value +8 d rounds to 7 d): <= d.
  ASSERT_TRUE(QuantizeRow(TensorType::kQ4_0, x.data(), q.data(), n).ok());
  ASSERT_TRUE(DequantizeRow(TensorType::kQ4_0, q.data(), y.data(), n).ok());
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float d = amax / 8;
    for (int j = 0; j < 32; ++j) ASSERT_LE(std::fabs(x[b * 32 + j] - y[b * 32 + j]), d * 1.01f);
  }
  // K-quants: bounded by the super-block range / levels (loose, catches layout bugs).
  for (auto [t, levels] : {std::pair{TensorType::kQ4_K, 15}, std::pair{TensorType::kQ5_K, 31},
                           std::pair{TensorType::kQ6_K, 63}}) {
    ASSERT_TRUE(QuantizeRow(t, x.data(), q.data(), n).ok());
    ASSERT_TRUE(DequantizeRow(t, q.data(), y.data(), n).ok());
    for (int64_t b = 0; b < n / 256; ++b) {
      float lo = 0, hi = 0;
      for (int j = 0; j < 256; ++j) {
        lo = std::min(lo, x[b * 256 + j]);
        hi = std::max(hi, x[b * 256 + j]);
      }
      const float step = (hi - lo) / static_cast<float>(levels);
      for (int j = 0; j < 256; ++j) {
        ASSERT_LE(std::fabs(x[b * 256 + j] - y[b * 256 + j]), step)
            << gguf::TensorTypeName(t) << " block " << b << " elem " << j;
      }
    }
  }
  // F16 / BF16: relative error <= 2^-11 / 2^-8 for normal values.
  for (auto [t, rel] : {std::pair{TensorType::kF16, 1.0f / 2048}, std::pair{TensorType::kBF16, 1.0f / 256}}) {
    ASSERT_TRUE(QuantizeRow(t, x.data(), q.data(), n).ok());
    ASSERT_TRUE(DequantizeRow(t, q.data(), y.data(), n).ok());
    for (int64_t i = 0; i < n; ++i) {
      if (std::fabs(x[i]) > 1e-4f) {
        ASSERT_LE(std::fabs(x[i] - y[i]), std::fabs(x[i]) * rel);
      }
    }
  }
}

// Zero blocks, constant blocks, all-positive and tiny inputs stay finite and reproduce exactly
// where the format can represent the input.
TEST(QuantRoundTrip, DegenerateBlocks) {
  for (auto t : {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ4_K, TensorType::kQ5_K,
                 TensorType::kQ6_K}) {
    std::vector<float> zeros(512, 0.0f), y(512, 1.0f);
    std::vector<uint8_t> q(RowSize(t, 512));
    ASSERT_TRUE(QuantizeRow(t, zeros.data(), q.data(), 512).ok());
    ASSERT_TRUE(DequantizeRow(t, q.data(), y.data(), 512).ok());
    for (float v : y) ASSERT_EQ(v, 0.0f) << gguf::TensorTypeName(t);
    for (float scale : {1e-30f, 1e-8f, 3.0f, 1000.0f}) {
      std::vector<float> x(512);
      for (int i = 0; i < 512; ++i) x[i] = scale * static_cast<float>((i * 37) % 23 + 1);
      ASSERT_TRUE(QuantizeRow(t, x.data(), q.data(), 512).ok());
      ASSERT_TRUE(DequantizeRow(t, q.data(), y.data(), 512).ok());
      for (float v : y) ASSERT_TRUE(std::isfinite(v)) << gguf::TensorTypeName(t) << " " << scale;
    }
  }
}

TEST(QuantApi, MisalignedBuffersAndThreadsGiveSameBytes) {
  constexpr int64_t kRows = 37, kCols = 512;
  const auto x = GaussianData(kRows * kCols, 99);
  ThreadPool pool(3);
  for (auto t : {TensorType::kF16, TensorType::kBF16, TensorType::kQ8_0, TensorType::kQ4_0,
                 TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K}) {
    const size_t rb = RowSize(t, kCols);
    std::vector<uint8_t> a(rb * kRows), b(rb * kRows + 1);
    ASSERT_TRUE(QuantizeTensor(t, x.data(), a.data(), kRows, kCols, nullptr).ok());
    ASSERT_TRUE(QuantizeTensor(t, x.data(), b.data() + 1, kRows, kCols, &pool).ok());
    ASSERT_EQ(0, std::memcmp(a.data(), b.data() + 1, a.size())) << gguf::TensorTypeName(t);
    std::vector<float> ya(x.size()), yb(x.size() + 1);
    ASSERT_TRUE(DequantizeTensor(t, a.data(), ya.data(), kRows, kCols, nullptr).ok());
    ASSERT_TRUE(DequantizeTensor(t, b.data() + 1, yb.data() + 1, kRows, kCols, &pool).ok());
    ASSERT_EQ(0, std::memcmp(ya.data(), yb.data() + 1, ya.size() * sizeof(float)));
  }
}

TEST(QuantFormats, NearestIntRoundsHalfToEven) {
  EXPECT_EQ(NearestInt(0.5f), 0);
  EXPECT_EQ(NearestInt(1.5f), 2);
  EXPECT_EQ(NearestInt(2.5f), 2);
  EXPECT_EQ(NearestInt(-0.5f), 0);
  EXPECT_EQ(NearestInt(-1.5f), -2);
  EXPECT_EQ(NearestInt(-2.49f), -2);
  EXPECT_EQ(NearestInt(4194303.f), 4194303);
  EXPECT_EQ(NearestInt(-4194303.f), -4194303);
}

// Q8_0 rounds half away from zero (roundf) and Q4_0 rounds half up via +8.5 truncation, as the
// reference quantizer does; hand-made blocks with exact ties pin both.
TEST(QuantFormats, SimpleFormatTieRounding) {
  float x[32] = {};
  x[0] = 127.0f;   // d = 1
  x[1] = 2.5f;     // -> 3 (half away from zero)
  x[2] = -2.5f;    // -> -3
  x[3] = 0.5f;     // -> 1
  BlockQ8_0 b8;
  QuantizeRowQ8_0(x, &b8, 32);
  EXPECT_EQ(Fp16ToFp32(b8.d), 1.0f);
  EXPECT_EQ(b8.qs[0], 127);
  EXPECT_EQ(b8.qs[1], 3);
  EXPECT_EQ(b8.qs[2], -3);
  EXPECT_EQ(b8.qs[3], 1);
  float z[32] = {};
  z[0] = -8.0f;   // max magnitude, negative: d = 1, q = 0
  z[1] = 7.5f;    // 7.5 + 8.5 = 16 -> clamp 15
  z[2] = -2.5f;   // -2.5 + 8.5 = 6 -> 6 (half up)
  z[16] = 2.5f;   // 2.5 + 8.5 = 11 -> 11
  BlockQ4_0 b4;
  QuantizeRowQ4_0(z, &b4, 32);
  EXPECT_EQ(Fp16ToFp32(b4.d), 1.0f);
  EXPECT_EQ(b4.qs[0] & 0xF, 0);
  EXPECT_EQ(b4.qs[1] & 0xF, 15);
  EXPECT_EQ(b4.qs[2] & 0xF, 6);
  EXPECT_EQ(b4.qs[0] >> 4, 11);
  EXPECT_EQ(b4.qs[3], 8 | (8 << 4));  // zeros map to 8
}

}  // namespace
}  // namespace qwenmux::quant
