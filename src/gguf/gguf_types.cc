#include <fmt/format.h>

#include "base/checked_math.h"
#include "gguf/gguf.h"

namespace qwenmux::gguf {

const char* ValueTypeName(ValueType t) {
  switch (t) {
    case ValueType::kU8: return "u8";
    case ValueType::kI8: return "i8";
    case ValueType::kU16: return "u16";
    case ValueType::kI16: return "i16";
    case ValueType::kU32: return "u32";
    case ValueType::kI32: return "i32";
    case ValueType::kF32: return "f32";
    case ValueType::kBool: return "bool";
    case ValueType::kString: return "string";
    case ValueType::kArray: return "array";
    case ValueType::kU64: return "u64";
    case ValueType::kI64: return "i64";
    case ValueType::kF64: return "f64";
  }
  return "unknown";
}

const TensorTypeTraits* GetTensorTypeTraits(uint32_t type) {
  // Indexed by ggml type id; {nullptr, 0, 0} for ids that ggml retired or never used.
  static const TensorTypeTraits kTraits[] = {
      {"f32", 1, 4},        {"f16", 1, 2},        {"q4_0", 32, 18},      {"q4_1", 32, 20},
      {nullptr, 0, 0},      {nullptr, 0, 0},      {"q5_0", 32, 22},      {"q5_1", 32, 24},
      {"q8_0", 32, 34},     {"q8_1", 32, 36},     {"q2_K", 256, 84},     {"q3_K", 256, 110},
      {"q4_K", 256, 144},   {"q5_K", 256, 176},   {"q6_K", 256, 210},    {"q8_K", 256, 292},
      {"iq2_xxs", 256, 66}, {"iq2_xs", 256, 74},  {"iq3_xxs", 256, 98},  {"iq1_s", 256, 50},
      {"iq4_nl", 32, 18},   {"iq3_s", 256, 110},  {"iq2_s", 256, 82},    {"iq4_xs", 256, 136},
      {"i8", 1, 1},         {"i16", 1, 2},        {"i32", 1, 4},         {"i64", 1, 8},
      {"f64", 1, 8},        {"iq1_m", 256, 56},   {"bf16", 1, 2},        {nullptr, 0, 0},
      {nullptr, 0, 0},      {nullptr, 0, 0},      {"tq1_0", 256, 54},    {"tq2_0", 256, 66},
  };
  if (type >= std::size(kTraits) || kTraits[type].name == nullptr) return nullptr;
  return &kTraits[type];
}

const char* TensorTypeName(TensorType t) {
  const TensorTypeTraits* tr = GetTensorTypeTraits(static_cast<uint32_t>(t));
  return tr ? tr->name : "unknown";
}

std::optional<uint64_t> RowBytes(TensorType t, uint64_t ne0) {
  const TensorTypeTraits* tr = GetTensorTypeTraits(static_cast<uint32_t>(t));
  if (tr == nullptr || ne0 % tr->block_size != 0) return std::nullopt;
  return CheckedMul(ne0 / tr->block_size, tr->type_size);
}

std::string TensorInfo::ShapeString() const {
  std::string s = "[";
  for (uint32_t i = 0; i < n_dims; ++i) {
    if (i) s += ", ";
    s += std::to_string(ne[i]);
  }
  return s + "]";
}

}  // namespace qwenmux::gguf
