#include "gguf/safetensors.h"

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "base/checked_math.h"
#include "base/fp16.h"

namespace qwenmux::gguf {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit (100 MB)
constexpr size_t kMaxDims = 8;

struct DTypeInfo {
  const char* name;
  SafetensorsDType dtype;
  uint32_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {"F32", SafetensorsDType::kF32, 4},
    {"F16", SafetensorsDType::kF16, 2},
    {"BF16", SafetensorsDType::kBF16, 2},
    {"F64", SafetensorsDType::kF64, 8},
};

}  // namespace

const char* SafetensorsDTypeName(SafetensorsDType t) {
  for (const DTypeInfo& d : kDTypes)
    if (d.dtype == t) return d.name;
  return "?";
}

uint64_t SafetensorsTensor::n_elements() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;  // checked when parsed
  return n;
}

Result<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  QM_ASSIGN_OR_RETURN(MappedFile m, MappedFile::Open(path));
  auto map = std::make_shared<MappedFile>(std::move(m));
  QM_ASSIGN_OR_RETURN(SafetensorsFile f, Parse(map->bytes(), path));
  f.map_ = std::move(map);
  return f;
}

Result<SafetensorsFile> SafetensorsFile::Parse(std::span<const uint8_t> bytes, std::string name) {
  SafetensorsFile f;
  f.name_ = std::move(name);
  f.bytes_ = bytes;
  auto corrupt = [&](std::string_view what) {
    return Status(StatusCode::kCorrupt, fmt::format("safetensors: {}: {}", f.name_, what));
  };
  if (bytes.size() < 8) return corrupt(fmt::format("file of {} bytes is too short for the header length", bytes.size()));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[static_cast<size_t>(i)];
  if (header_len > kMaxHeaderBytes) return corrupt(fmt::format("header length {} exceeds the limit of {} bytes", header_len, kMaxHeaderBytes));
  if (header_len > bytes.size() - 8) {
    return corrupt(fmt::format("header of {} bytes ends past the end of the file ({} bytes)", header_len, bytes.size()));
  }
  f.data_offset_ = 8 + header_len;
  const uint64_t data_size = bytes.size() - f.data_offset_;
  const auto* hp = reinterpret_cast<const char*>(bytes.data() + 8);
  const nlohmann::json header = nlohmann::json::parse(hp, hp + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) return corrupt("header is not valid JSON");
  if (!header.is_object()) return corrupt("header is not a JSON object");
  for (const auto& item : header.items()) {
    const std::string& key = item.key();  // not a structured binding: lambdas below capture it
    const auto& v = item.value();
    if (key == "__metadata__") {
      if (!v.is_object()) return corrupt("__metadata__ is not an object");
      continue;
    }
    auto bad = [&](std::string_view what) { return corrupt(fmt::format("tensor {}: {}", key, what)); };
    if (!v.is_object()) return bad("entry is not an object");
    SafetensorsTensor t;
    t.name = key;
    const auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) return bad("dtype missing or not a string");
    const std::string& dts = dt->get_ref<const std::string&>();
    const DTypeInfo* info = nullptr;
    for (const DTypeInfo& d : kDTypes)
      if (dts == d.name) info = &d;
    if (info == nullptr) {
      return Status(StatusCode::kUnsupported,
                    fmt::format("safetensors: {}: tensor {}: dtype {} is not supported (F32, F16, BF16, F64)", f.name_, key, dts));
    }
    t.dtype = info->dtype;
    const auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) return bad("shape missing or not an array");
    if (sh->size() > kMaxDims) return bad(fmt::format("{} dimensions (at most {})", sh->size(), kMaxDims));
    uint64_t n = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) return bad("shape has an entry that is not a non-negative integer");
      const uint64_t x = d.get<uint64_t>();
      const auto m = CheckedMul(n, x);
      if (!m) return bad("element count overflows");
      n = *m;
      t.shape.push_back(x);
    }
    const auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned()) {
      return bad("data_offsets missing or not two non-negative integers");
    }
    t.begin = (*off)[0].get<uint64_t>();
    t.end = (*off)[1].get<uint64_t>();
    if (t.begin > t.end) return bad(fmt::format("data_offsets [{}, {}] run backwards", t.begin, t.end));
    if (t.end > data_size) {
      return bad(fmt::format("data [{}, {}) ends past the end of the data section ({} bytes)", t.begin, t.end, data_size));
    }
    const auto want = CheckedMul(n, info->size);
    if (!want || *want != t.end - t.begin) {
      return bad(fmt::format("{} bytes of data for {} elements of {}", t.end - t.begin, n, info->name));
    }
    f.tensors_.push_back(std::move(t));
  }
  std::vector<const SafetensorsTensor*> by_offset;
  for (const auto& t : f.tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->begin < by_offset[i - 1]->end && by_offset[i]->begin != by_offset[i]->end) {
      return corrupt(fmt::format("tensors {} and {} overlap", by_offset[i - 1]->name, by_offset[i]->name));
    }
  }
  return f;
}

const SafetensorsTensor* SafetensorsFile::Find(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<float> SafetensorsFile::ToF32(const SafetensorsTensor& t) const {
  const std::span<const uint8_t> d = Data(t);
  const uint64_t n = t.n_elements();
  std::vector<float> out(n);
  switch (t.dtype) {
    case SafetensorsDType::kF32:
      std::memcpy(out.data(), d.data(), n * 4);
      break;
    case SafetensorsDType::kF16:
    case SafetensorsDType::kBF16:
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, d.data() + i * 2, 2);
        out[i] = t.dtype == SafetensorsDType::kF16 ? Fp16ToFp32(h) : Bf16ToFp32(h);
      }
      break;
    case SafetensorsDType::kF64:
      for (uint64_t i = 0; i < n; ++i) {
        double x;
        std::memcpy(&x, d.data() + i * 8, 8);
        out[i] = static_cast<float>(x);
      }
      break;
  }
  return out;
}

}  // namespace qwenmux::gguf
