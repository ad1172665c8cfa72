// Broken and lying GGUF files must give a clear Status naming the field: never a crash, hang or
// huge allocation (ASan/UBSan run these).
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gguf/gguf.h"

namespace qwenmux::gguf {
namespace {

// Builds GGUF bytes by hand, so tests can lie in any field.
class Bytes {
 public:
  template <typename T>
  Bytes& Put(T x) {
    const auto* p = reinterpret_cast<const uint8_t*>(&x);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& Str(const std::string& s) {
    Put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& Header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return Put<uint32_t>(kMagic).Put<uint32_t>(version).Put<uint64_t>(n_tensors).Put<uint64_t>(n_kv);
  }
  Bytes& KvU32(const std::string& key, uint32_t v) { return Str(key).Put<uint32_t>(4).Put<uint32_t>(v); }
  Bytes& Tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    Str(name).Put<uint32_t>(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) Put<uint64_t>(d);
    return Put<uint32_t>(type).Put<uint64_t>(offset);
  }
  Bytes& PadTo(size_t align) {
    while (b.size() % align) b.push_back(0);
    return *this;
  }
  Bytes& Zeros(size_t n) {
    b.insert(b.end(), n, 0);
    return *this;
  }
  std::vector<uint8_t> b;
};

Status ParseStatus(const std::vector<uint8_t>& b) {
  auto r = File::Parse(b, "hostile.gguf");
  return r.ok() ? Status::Ok() : r.status();
}

void ExpectError(const std::vector<uint8_t>& b, const std::string& needle) {
  const Status s = ParseStatus(b);
  ASSERT_FALSE(s.ok()) << "expected an error mentioning: " << needle;
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("hostile.gguf"), std::string::npos) << s.message();
}

// A small valid file: two kvs (one string array), two F32 tensors.
Bytes ValidFile() {
  Bytes x;
  x.Header(2, 3).KvU32("general.alignment", 32);
  x.Str("tokenizer.ggml.tokens").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(2).Str("a").Str("bc");
  x.Str("nested").Put<uint32_t>(9).Put<uint32_t>(9).Put<uint64_t>(1).Put<uint32_t>(4).Put<uint64_t>(2)
      .Put<uint32_t>(7).Put<uint32_t>(8);
  x.Tensor("a.weight", {4, 2}, 0, 0).Tensor("b.weight", {8}, 0, 32);
  x.PadTo(32).Zeros(64);
  return x;
}

TEST(GgufHostile, ValidBaselineParses) {
  auto r = File::Parse(ValidFile().b, "hostile.gguf");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tensors().size(), 2u);
  auto nested = r->Find("nested");
  ASSERT_NE(nested, nullptr);
  const auto& outer = std::get<Array>(nested->v);
  ASSERT_EQ(outer.items.size(), 1u);
  const auto& inner = std::get<Array>(outer.items[0].v);
  EXPECT_EQ(std::get<uint32_t>(inner.items[1].v), 8u);
}

TEST(GgufHostile, TruncatedAtEveryByte) {
  const std::vector<uint8_t> full = ValidFile().b;
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(n));
    const Status s = ParseStatus(cut);
    EXPECT_FALSE(s.ok()) << "truncated to " << n << " bytes parsed";
    EXPECT_EQ(s.code(), StatusCode::kCorrupt) << n << ": " << s.message();
  }
}

TEST(GgufHostile, BadMagicAndVersion) {
  Bytes bad;
  bad.Put<uint32_t>(0x12345678).Put<uint32_t>(3).Put<uint64_t>(0).Put<uint64_t>(0);
  ExpectError(bad.b, "bad magic");
  Bytes v1;
  v1.Header(0, 0, 1);
  ExpectError(v1.b, "unsupported version 1");
  Bytes v9;
  v9.Header(0, 0, 9);
  EXPECT_EQ(ParseStatus(v9.b).code(), StatusCode::kUnsupported);
  Bytes v2;
  v2.Header(0, 0, 2);
  EXPECT_TRUE(ParseStatus(v2.b).ok());
}

TEST(GgufHostile, HugeCounts) {
  Bytes kv;
  kv.Header(0, uint64_t{1} << 63);
  ExpectError(kv.b, "metadata_kv_count");
  Bytes t;
  t.Header(uint64_t{1} << 63, 0);
  ExpectError(t.b, "tensor_count");
  Bytes arr;
  arr.Header(0, 1).Str("arr").Put<uint32_t>(9).Put<uint32_t>(0).Put<uint64_t>(uint64_t{1} << 63);
  ExpectError(arr.b, "array count");
  Bytes sarr;  // count * 8 overflows 64 bits
  sarr.Header(0, 1).Str("arr").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(~uint64_t{0} / 4);
  ExpectError(sarr.b, "array count");
}

TEST(GgufHostile, StringLengthsPastTheEnd) {
  Bytes key;
  key.Header(0, 1).Put<uint64_t>(uint64_t{1} << 63).Zeros(32);
  ExpectError(key.b, "key length");
  Bytes val;
  val.Header(0, 1).Str("k").Put<uint32_t>(8).Put<uint64_t>(1000).Zeros(10);
  ExpectError(val.b, "string length 1000");
  Bytes name;
  name.Header(1, 0).Put<uint64_t>(~uint64_t{0}).Zeros(40);
  ExpectError(name.b, "name length");
}

TEST(GgufHostile, UnknownValueAndArrayTypes) {
  Bytes v;
  v.Header(0, 1).Str("k").Put<uint32_t>(13).Put<uint32_t>(0);
  ExpectError(v.b, "unknown value type 13");
  Bytes a;
  a.Header(0, 1).Str("k").Put<uint32_t>(9).Put<uint32_t>(77).Put<uint64_t>(1).Zeros(8);
  ExpectError(a.b, "unknown array element type 77");
  Bytes b;
  b.Header(0, 1).Str("k").Put<uint32_t>(7).Put<uint8_t>(2);
  ExpectError(b.b, "bool value 2");
}

TEST(GgufHostile, DeeplyNestedArrays) {
  Bytes x;
  x.Header(0, 1).Str("k").Put<uint32_t>(9);
  for (int i = 0; i < 100; ++i) x.Put<uint32_t>(9).Put<uint64_t>(1);
  x.Put<uint32_t>(0).Put<uint64_t>(0);
  ExpectError(x.b, "nested deeper");
}

TEST(GgufHostile, DuplicateKeysAndTensorNames) {
  Bytes k;
  k.Header(0, 2).KvU32("a.b", 1).KvU32("a.b", 2);
  ExpectError(k.b, "duplicate metadata key \"a.b\"");
  Bytes t;
  t.Header(2, 0).Tensor("w", {8}, 0, 0).Tensor("w", {8}, 0, 32).PadTo(32).Zeros(64);
  ExpectError(t.b, "duplicate tensor name \"w\"");
}

TEST(GgufHostile, TensorDataPastTheEnd) {
  Bytes x;
  x.Header(1, 0).Tensor("big.weight", {1024, 1024}, 0, 0).PadTo(32).Zeros(64);
  ExpectError(x.b, "tensor big.weight: data ends past end of file");
  Bytes off;  // offset that overflows when added to the data start
  off.Header(1, 0).Tensor("w", {8}, 0, ~uint64_t{0} - 31).PadTo(32).Zeros(64);
  ExpectError(off.b, "tensor w: data ends past end of file");
}

TEST(GgufHostile, MisalignedOffsetsAndBadAlignment) {
  Bytes x;
  x.Header(1, 0).Tensor("w", {8}, 0, 4).PadTo(32).Zeros(64);
  ExpectError(x.b, "not a multiple of the alignment");
  Bytes a;
  a.Header(0, 1).KvU32("general.alignment", 12);
  ExpectError(a.b, "general.alignment 12");
  Bytes z;
  z.Header(0, 1).KvU32("general.alignment", 0);
  ExpectError(z.b, "general.alignment 0");
  Bytes wrong_type;
  wrong_type.Header(0, 1).Str("general.alignment").Put<uint32_t>(8).Str("32");
  ExpectError(wrong_type.b, "general.alignment has type string");
}

TEST(GgufHostile, UnknownTensorType) {
  Bytes x;
  x.Header(1, 0).Tensor("w", {8}, 99, 0).PadTo(32).Zeros(64);
  const Status s = ParseStatus(x.b);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_NE(s.message().find("unknown tensor type 99"), std::string::npos);
}

TEST(GgufHostile, ZeroAndAbsurdDimensions) {
  Bytes zero;
  zero.Header(1, 0).Tensor("w", {8, 0}, 0, 0).PadTo(32).Zeros(64);
  ExpectError(zero.b, "dimension 1 is zero");
  Bytes absurd;
  absurd.Header(1, 0).Tensor("w", {uint64_t{1} << 40, uint64_t{1} << 40}, 0, 0).PadTo(32).Zeros(64);
  ExpectError(absurd.b, "absurd shape");
  Bytes dims;
  dims.Header(1, 0).Tensor("w", {1, 1, 1, 1, 1}, 0, 0).PadTo(32).Zeros(64);
  ExpectError(dims.b, "n_dims 5");
  Bytes nodims;
  nodims.Header(1, 0).Tensor("w", {}, 0, 0).PadTo(32).Zeros(64);
  ExpectError(nodims.b, "n_dims 0");
  Bytes blocks;  // Q8_0 row of 33 elements is not whole blocks
  blocks.Header(1, 0).Tensor("w", {33}, 8, 0).PadTo(32).Zeros(64);
  ExpectError(blocks.b, "not a multiple of the q8_0 block size");
}

TEST(GgufWriter, RejectsBadShapesAndOutOfOrderData) {
  Writer w;
  const uint64_t ne[] = {33};
  EXPECT_FALSE(w.AddTensor("w", TensorType::kQ8_0, ne).ok());
  const uint64_t ok_ne[] = {32, 2};
  ASSERT_TRUE(w.AddTensor("a", TensorType::kQ8_0, ok_ne).ok());
  ASSERT_TRUE(w.AddTensor("b", TensorType::kF32, ok_ne).ok());
  const std::string path = ::testing::TempDir() + "/w.gguf";
  ASSERT_TRUE(w.Open(path).ok());
  std::vector<uint8_t> data(256);
  EXPECT_FALSE(w.WriteTensorData(1, data).ok());                          // out of order
  EXPECT_FALSE(w.WriteTensorData(0, std::span(data).first(10)).ok());    // wrong size
  ASSERT_TRUE(w.WriteTensorData(0, std::span(data).first(68)).ok());
  EXPECT_FALSE(w.Finish().ok());  // tensor b not written: nothing appears at `path`
  EXPECT_FALSE(File::Open(path).ok());
}

}  // namespace
}  // namespace qwenmux::gguf
