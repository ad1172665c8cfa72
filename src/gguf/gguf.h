// GGUF v2/v3 reader and v3 writer.
//
// The reader parses a read-only memory map (or any caller-owned byte span) and checks every count,
// length, offset and size with overflow-safe arithmetic before using it: a file that lies gets a
// Status naming the field, never a crash, hang or huge allocation. Tensor data is never copied;
// TensorData() returns a span into the mapping.
//
// Thread-safety: a File is immutable after Open/Parse; concurrent const access is safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "base/mapped_file.h"
#include "base/status.h"

namespace qwenmux::gguf {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
inline constexpr uint64_t kDefaultAlignment = 32;
inline constexpr uint32_t kMaxDims = 4;

// Metadata value types, numbered as in the GGUF spec. The order of Value::Storage matches.
enum class ValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};
const char* ValueTypeName(ValueType t);

// ggml tensor types (ids as in ggml.h).
enum class TensorType : uint32_t {
  kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ8_1 = 9,
  kQ2_K = 10, kQ3_K = 11, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14, kQ8_K = 15,
  kIQ2_XXS = 16, kIQ2_XS = 17, kIQ3_XXS = 18, kIQ1_S = 19, kIQ4_NL = 20, kIQ3_S = 21,
  kIQ2_S = 22, kIQ4_XS = 23, kI8 = 24, kI16 = 25, kI32 = 26, kI64 = 27, kF64 = 28,
  kIQ1_M = 29, kBF16 = 30, kTQ1_0 = 34, kTQ2_0 = 35,
};

struct TensorTypeTraits {
  const char* name;     // "q4_K", as ggml names it
  uint32_t block_size;  // elements per block
  uint32_t type_size;   // bytes per block
};
// nullptr for an id this build does not know.
const TensorTypeTraits* GetTensorTypeTraits(uint32_t type);
const char* TensorTypeName(TensorType t);
// Bytes of a row of `ne0` elements; nullopt if ne0 is not a multiple of the block size or the
// type is unknown.
std::optional<uint64_t> RowBytes(TensorType t, uint64_t ne0);

struct Value;
struct Array {
  ValueType type = ValueType::kU8;  // element type (may itself be kArray)
  std::vector<Value> items;
};

struct Value {
  using Storage = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool,
                               std::string, Array, uint64_t, int64_t, double>;
  Storage v;

  ValueType type() const { return static_cast<ValueType>(v.index()); }

  Value() = default;
  template <typename T>
  explicit Value(T x) : v(std::move(x)) {}
};

struct KeyValue {
  std::string key;
  Value value;
};

struct TensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  uint64_t ne[kMaxDims] = {1, 1, 1, 1};  // ne[0] is contiguous
  TensorType type = TensorType::kF32;
  uint64_t offset = 0;   // relative to the start of the data section
  uint64_t n_bytes = 0;  // computed from type and shape

  uint64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  uint64_t rows() const { return ne[1] * ne[2] * ne[3]; }
  std::string ShapeString() const;  // "[256, 151936]"
};

class File {
 public:
  File() = default;
  File(File&&) noexcept = default;
  File& operator=(File&&) noexcept = default;
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  // Maps `path` and parses it.
  static Result<File> Open(const std::string& path);
  // Parses caller-owned bytes; the File keeps no copy, so `bytes` must outlive it.
  static Result<File> Parse(std::span<const uint8_t> bytes, std::string name = "<memory>");

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute start of tensor data
  uint64_t file_size() const { return bytes_.size(); }

  const std::vector<KeyValue>& metadata() const { return metadata_; }
  const Value* Find(std::string_view key) const;

  // Typed look-ups. T is one of the scalar storage types or std::string. The error names the key
  // and, for a type mismatch, both types.
  template <typename T>
  Result<T> Get(std::string_view key) const;
  // Like Get, but nullopt when the key is absent (still an error for a wrong type).
  template <typename T>
  Result<std::optional<T>> GetOptional(std::string_view key) const;
  // Any integer type (u8..i64, bool excluded) converted to uint64 / int64 with range checks.
  Result<uint64_t> GetUInt(std::string_view key) const;
  // f32 or f64.
  Result<double> GetFloat(std::string_view key) const;
  // Array whose elements have type `elem`.
  Result<const Array*> GetArray(std::string_view key, ValueType elem) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* FindTensor(std::string_view name) const;
  std::span<const uint8_t> TensorData(const TensorInfo& t) const {
    return bytes_.subspan(data_offset_ + t.offset, t.n_bytes);
  }
  std::span<const uint8_t> bytes() const { return bytes_; }

 private:
  friend class Parser;
  std::string name_;
  std::shared_ptr<MappedFile> map_;  // set by Open; shared so File stays movable cheaply
  std::span<const uint8_t> bytes_;
  uint32_t version_ = 0;
  uint64_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<KeyValue> metadata_;
  std::unordered_map<std::string_view, size_t> metadata_index_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string_view, size_t> tensor_index_;
};

// Writes GGUF v3. Metadata and tensors are written in the order given. Offsets follow the
// reference writer: each tensor's data starts at the next multiple of the alignment.
//
// Usage: add metadata and tensor infos, then Open(path) (writes the header to a temporary file
// beside `path`), WriteTensorData() once per tensor in order (or WriteTensorChunk() several times
// per tensor, pieces in order), and Finish() (renames into place).
// If Finish() is never called the temporary file is removed, so `path` is never half-written.
class Writer {
 public:
  Writer() = default;
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void SetAlignment(uint64_t alignment) { alignment_ = alignment; }
  void AddKeyValue(std::string key, Value value);
  void SetKeyValue(std::string_view key, Value value);  // replaces or appends
  std::vector<KeyValue>& metadata() { return metadata_; }
  // Returns the tensor's index. Shape is in ne order (ne[0] contiguous).
  Result<size_t> AddTensor(std::string name, TensorType type, std::span<const uint64_t> ne);
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

  Status Open(const std::string& path);
  Status WriteTensorData(size_t index, std::span<const uint8_t> data);
  // Appends the next piece of tensor `index`'s data, so a big tensor can be produced and written
  // a few rows at a time. The tensor is complete once its n_bytes have been given; pieces of the
  // next tensor may only start then. Mixing with WriteTensorData is fine between tensors.
  Status WriteTensorChunk(size_t index, std::span<const uint8_t> data);
  Status Finish();

  // Serialises header + metadata + tensor infos + padding (no tensor data).
  std::vector<uint8_t> SerializeHeader() const;

 private:
  Status WriteBytes(const void* p, size_t n);
  Status WriteZeros(uint64_t n);
  void Abort();

  uint64_t alignment_ = kDefaultAlignment;
  std::vector<KeyValue> metadata_;
  std::vector<TensorInfo> tensors_;
  uint64_t data_size_ = 0;
  std::string path_, tmp_path_;
  std::FILE* out_ = nullptr;
  size_t next_tensor_ = 0;
  uint64_t written_data_ = 0;    // end of the data written so far, relative to the data section
  uint64_t tensor_written_ = 0;  // bytes of tensor next_tensor_ written so far
};

// Copies everything from `in` into `w` (metadata, alignment, tensor infos); the caller then
// writes the data. Used by round-trip and by tools that rewrite a file.
Status CopyLayout(const File& in, Writer& w);

}  // namespace qwenmux::gguf
