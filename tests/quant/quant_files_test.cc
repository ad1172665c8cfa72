// Dequantization and re-quantization of the real GGUF test models (made by the reference
// toolchain). The dequantizer is checked against an element-by-element decoder written from the
// layout description (docs: qwen3-reference.md §3.7) that reads raw bytes, independent of the
// block structs and of src/quant.
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/fp16.h"
#include "common/testdata.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

namespace qwenmux::quant {
namespace {

using gguf::TensorType;

float HalfAt(const uint8_t* p) { return Fp16ToFp32(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

// Scale and min of sub-block s of a Q4_K/Q5_K 12-byte scales field (§3.7).
void ScaleMin(const uint8_t* sc, int s, int* scale, int* min) {
  if (s < 4) {
    *scale = sc[s] & 63;
    *min = sc[s + 4] & 63;
  } else {
    *scale = (sc[s + 4] & 0xF) | ((sc[s - 4] >> 6) << 4);
    *min = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
  }
}

// Value of element e of a row, decoded from raw bytes.
float DecodeElement(TensorType t, const uint8_t* row, int64_t e) {
  switch (t) {
    case TensorType::kF32: {
      float f;
      std::memcpy(&f, row + 4 * e, 4);
      return f;
    }
    case TensorType::kF16: return HalfAt(row + 2 * e);
    case TensorType::kBF16:
      return Bf16ToFp32(static_cast<uint16_t>(row[2 * e] | (row[2 * e + 1] << 8)));
    case TensorType::kQ8_0: {
      const uint8_t* b = row + 34 * (e / 32);
      return static_cast<float>(static_cast<int8_t>(b[2 + e % 32])) * HalfAt(b);
    }
    case TensorType::kQ4_0: {
      const uint8_t* b = row + 18 * (e / 32);
      const int j = static_cast<int>(e % 32);
      const int q = j < 16 ? (b[2 + j] & 0xF) : (b[2 + j - 16] >> 4);
      return static_cast<float>(q - 8) * HalfAt(b);
    }
    case TensorType::kQ4_K:
    case TensorType::kQ5_K: {
      const bool five = t == TensorType::kQ5_K;
      const uint8_t* b = row + (five ? 176 : 144) * (e / 256);
      const int r = static_cast<int>(e % 256);
      const int c = r / 64, hi = (r % 64) / 32, l = r % 32;
      const uint8_t* scales = b + 4;
      const uint8_t* qh = b + 16;
      const uint8_t* qs = b + (five ? 48 : 16);
      int q = hi ? (qs[32 * c + l] >> 4) : (qs[32 * c + l] & 0xF);
      if (five && ((qh[l] >> (2 * c + hi)) & 1)) q += 16;
      int sc, m;
      ScaleMin(scales, 2 * c + hi, &sc, &m);
      const float d1 = HalfAt(b) * static_cast<float>(sc);
      const float m1 = HalfAt(b + 2) * static_cast<float>(m);
      return d1 * static_cast<float>(q) - m1;
    }
    case TensorType::kQ6_K: {
      const uint8_t* b = row + 210 * (e / 256);
      const int r = static_cast<int>(e % 256);
      const int h = r / 128, k = (r % 128) / 32, l = r % 32;
      const uint8_t* L = b + 64 * h;           // ql
      const uint8_t* Q = b + 128 + 32 * h;     // qh
      const int8_t scale = static_cast<int8_t>(b[192 + r / 16]);
      const int low = (k == 0) ? (L[l] & 0xF) : (k == 1) ? (L[l + 32] & 0xF)
                     : (k == 2) ? (L[l] >> 4) : (L[l + 32] >> 4);
      const int q = low | (((Q[l] >> (2 * k)) & 3) << 4);
      return HalfAt(b + 208) * static_cast<float>(scale) * static_cast<float>(q - 32);
    }
    default: return std::nanf("");
  }
}

struct FileStats {
  std::map<std::string, int> tensors_by_type;
  std::map<std::string, std::pair<int64_t, int64_t>> requant_blocks;  // identical, total
};

FileStats CheckFile(const std::string& name) {
  FileStats st;
  auto f = gguf::File::Open(qwenmux::testing::ModelPath(name));
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  if (!f.ok()) return st;
  for (const auto& t : f->tensors()) {
    const char* tname = gguf::TensorTypeName(t.type);
    SCOPED_TRACE(t.name + " " + tname);
    EXPECT_TRUE(IsSupported(t.type));
    if (!IsSupported(t.type)) continue;
    ++st.tensors_by_type[tname];
    const int64_t n = static_cast<int64_t>(t.ne[0]);
    const int64_t rows = static_cast<int64_t>(t.rows());
    const size_t rb = RowSize(t.type, n);
    auto data = f->TensorData(t);
    EXPECT_EQ(data.size(), rb * static_cast<size_t>(rows));
    std::vector<float> y(static_cast<size_t>(n * rows));
    Status s = DequantizeTensor(t.type, data.data(), y.data(), rows, n, nullptr);
    EXPECT_TRUE(s.ok()) << s.ToString();
    int64_t mismatches = 0, nonfinite = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t e = 0; e < n; ++e) {
        const float got = y[r * n + e];
        if (!std::isfinite(got)) ++nonfinite;
        const float want = DecodeElement(t.type, data.data() + r * rb, e);
        if (BitsFromFp32(got) != BitsFromFp32(want)) ++mismatches;
      }
    }
    EXPECT_EQ(nonfinite, 0);
    EXPECT_EQ(mismatches, 0);
    if (t.type == TensorType::kF32) continue;
    // Re-quantize the dequantized rows and compare block by block.
    const int64_t bs = BlockSize(t.type);
    const size_t block_bytes = rb / static_cast<size_t>(n / bs);
    std::vector<uint8_t> q(rb);
    auto& [same, total] = st.requant_blocks[tname];
    for (int64_t r = 0; r < rows; ++r) {
      const Status qs = QuantizeRow(t.type, y.data() + r * n, q.data(), n);
      EXPECT_TRUE(qs.ok()) << qs.ToString();
      if (!qs.ok()) return st;
      for (int64_t b = 0; b < n / bs; ++b) {
        ++total;
        same += std::memcmp(q.data() + b * block_bytes, data.data() + r * rb + b * block_bytes,
                            block_bytes) == 0;
      }
    }
  }
  for (const auto& [type, c] : st.requant_blocks) {
    std::printf("%s %s: %lld / %lld blocks re-quantize identically (%.2f%%)\n", name.c_str(),
                type.c_str(), static_cast<long long>(c.first), static_cast<long long>(c.second),
                100.0 * static_cast<double>(c.first) / static_cast<double>(c.second));
  }
  return st;
}

TEST(QuantFiles, DenseQ8_0DequantizesAndIsAFixedPoint) {
  FileStats st = CheckFile("tiny-dense.q8_0.gguf");
  EXPECT_GT(st.tensors_by_type["q8_0"], 0);
  EXPECT_GT(st.tensors_by_type["f32"], 0);
  // Q8_0 quantization of Q8_0-representable values reproduces the original bytes.
  const auto& [same, total] = st.requant_blocks["q8_0"];
  EXPECT_GT(total, 0);
  EXPECT_EQ(same, total);
}

TEST(QuantFiles, MoeQ4KMDequantizesAndRequantizes) {
  FileStats st = CheckFile("tiny-moe.q4_k_m.gguf");
  for (const char* t : {"q4_K", "q5_K", "q6_K", "q8_0", "f32"}) {
    EXPECT_GT(st.tensors_by_type[t], 0) << t;
  }
  const auto& [same8, total8] = st.requant_blocks["q8_0"];
  EXPECT_EQ(same8, total8);
  // Measured with this quantizer: every Q4_K block of the reference file is a fixed point of
  // dequantize -> quantize (strong evidence the scale search is the reference one); Q5_K 96.5%,
  // Q6_K 43.7% (its per-16 scale search is not idempotent). The floors below guard regressions.
  const auto& [same4, total4] = st.requant_blocks["q4_K"];
  EXPECT_EQ(same4, total4);
  const auto& [same5, total5] = st.requant_blocks["q5_K"];
  EXPECT_GE(static_cast<double>(same5), 0.9 * static_cast<double>(total5));
  const auto& [same6, total6] = st.requant_blocks["q6_K"];
  EXPECT_GE(static_cast<double>(same6), 0.35 * static_cast<double>(total6));
}

// A hand-decoded block: the first Q4_K block of the MoE file, decoded here with explicit
// arithmetic (no helper shared with the code under test), must match DequantizeRow.
TEST(QuantFiles, FirstQ4KBlockByHand) {
  auto f = gguf::File::Open(qwenmux::testing::ModelPath("tiny-moe.q4_k_m.gguf"));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const gguf::TensorInfo* t = nullptr;
  for (const auto& ti : f->tensors()) {
    if (ti.type == TensorType::kQ4_K) {
      t = &ti;
      break;
    }
  }
  ASSERT_NE(t, nullptr);
  const uint8_t* b = f->TensorData(*t).data();
  float y[256];
  ASSERT_TRUE(DequantizeRow(TensorType::kQ4_K, b, y, 256).ok());
  const float d = HalfAt(b), dmin = HalfAt(b + 2);
  // Sub-block 0: scale = scales[0] & 63, min = scales[4] & 63; element 0 = low nibble of qs[0].
  EXPECT_EQ(y[0], d * static_cast<float>(b[4] & 63) * static_cast<float>(b[16] & 0xF) -
                      dmin * static_cast<float>(b[8] & 63));
  // Element 32 (sub-block 1) = high nibble of qs[0].
  EXPECT_EQ(y[32], d * static_cast<float>(b[5] & 63) * static_cast<float>(b[16] >> 4) -
                       dmin * static_cast<float>(b[9] & 63));
  // Element 255 (sub-block 7): scale = (scales[11] & 15) | (scales[3] >> 6) << 4,
  // min = (scales[11] >> 4) | (scales[7] >> 6) << 4; high nibble of qs[127].
  const int sc7 = (b[4 + 11] & 15) | ((b[4 + 3] >> 6) << 4);
  const int m7 = (b[4 + 11] >> 4) | ((b[4 + 7] >> 6) << 4);
  EXPECT_EQ(y[255], d * static_cast<float>(sc7) * static_cast<float>(b[16 + 127] >> 4) -
                        dmin * static_cast<float>(m7));
}

}  // namespace
}  // namespace qwenmux::quant
