// safetensors reader (the format of PEFT adapters): an 8-byte little-endian header length, a JSON
// header {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the
// data section. Like the GGUF reader it is hostile-input code: the header length, every shape, dtype
// and offset pair is checked (overflow-safe) against the file before use, and tensors may not
// overlap or leave the data section; a file that lies gets a Status naming the field.
//
// Thread-safety: a SafetensorsFile is immutable after Open/Parse; concurrent const access is safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/mapped_file.h"
#include "base/status.h"

namespace qwenmux::gguf {

enum class SafetensorsDType { kF32, kF16, kBF16, kF64 };
const char* SafetensorsDTypeName(SafetensorsDType t);

struct SafetensorsTensor {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::kF32;
  std::vector<uint64_t> shape;  // torch order (last dimension contiguous)
  uint64_t begin = 0, end = 0;  // byte offsets relative to the data section

  uint64_t n_elements() const;
};

class SafetensorsFile {
 public:
  // Maps `path` and parses it.
  static Result<SafetensorsFile> Open(const std::string& path);
  // Parses caller-owned bytes (not copied: `bytes` must outlive the file).
  static Result<SafetensorsFile> Parse(std::span<const uint8_t> bytes, std::string name = "<memory>");

  const std::string& name() const { return name_; }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* Find(std::string_view name) const;
  std::span<const uint8_t> Data(const SafetensorsTensor& t) const {
    return bytes_.subspan(data_offset_ + t.begin, t.end - t.begin);
  }
  // The tensor's elements converted to f32 (f32, f16, bf16, f64).
  std::vector<float> ToF32(const SafetensorsTensor& t) const;

 private:
  std::string name_;
  std::shared_ptr<MappedFile> map_;
  std::span<const uint8_t> bytes_;
  uint64_t data_offset_ = 0;
  std::vector<SafetensorsTensor> tensors_;
};

}  // namespace qwenmux::gguf
