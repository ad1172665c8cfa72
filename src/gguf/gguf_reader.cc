// GGUF parser. Every read goes through Cursor, which checks bounds; every size is computed with
// checked arithmetic. Errors name the field: "gguf: FILE: metadata[3] (key \"x\"): string length
// 2^63 runs past the end of the file".
#include <cstring>
#include <limits>

#include "base/checked_math.h"
#include "gguf/gguf.h"

namespace qwenmux::gguf {
namespace {
// A metadata field's name for error messages: "key" or "key[index]".
struct FieldName {
  const std::string& base;
  int64_t index;
};
}  // namespace
}  // namespace qwenmux::gguf

template <>
struct fmt::formatter<qwenmux::gguf::FieldName> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(const qwenmux::gguf::FieldName& f, Ctx& ctx) const {
    if (f.index < 0) return fmt::formatter<std::string_view>::format(f.base, ctx);
    return fmt::format_to(ctx.out(), "{}[{}]", f.base, f.index);
  }
};

namespace qwenmux::gguf {

namespace {

constexpr uint64_t kMaxKeyLength = 65535;
constexpr uint64_t kMaxTensorNameLength = 4096;  // ggml uses 64; be lenient but bounded
constexpr int kMaxArrayDepth = 8;

class Cursor {
 public:
  explicit Cursor(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  template <typename T>
  bool Read(T* out) {
    if (remaining() < sizeof(T)) return false;
    std::memcpy(out, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool ReadString(std::string* out, uint64_t max_len, uint64_t* len_out) {
    uint64_t len;
    if (!Read(&len)) return false;
    *len_out = len;
    if (len > remaining() || len > max_len) return false;
    out->assign(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return true;
  }

 private:
  std::span<const uint8_t> bytes_;
  uint64_t pos_ = 0;
};

// Smallest number of bytes one element of this type can take (for count sanity checks).
uint64_t MinElementBytes(ValueType t) {
  switch (t) {
    case ValueType::kU8: case ValueType::kI8: case ValueType::kBool: return 1;
    case ValueType::kU16: case ValueType::kI16: return 2;
    case ValueType::kU32: case ValueType::kI32: case ValueType::kF32: return 4;
    case ValueType::kU64: case ValueType::kI64: case ValueType::kF64: return 8;
    case ValueType::kString: return 8;
    case ValueType::kArray: return 12;
  }
  return 1;
}

bool ValidValueType(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::kF64); }

}  // namespace

class Parser {
 public:
  Parser(std::span<const uint8_t> bytes, const std::string& name) : cur_(bytes), name_(name) {}

  Status Fail(const std::string& what) const {
    return Status(StatusCode::kCorrupt, fmt::format("gguf: {}: {}", name_, what));
  }

  // `index` >= 0: the value is element `index` of array `field` (the name is formatted only for an
  // error message: a vocabulary holds 150k strings).
  Status ReadValue(ValueType type, Value* out, const std::string& field_base, int depth, int64_t index = -1) {
    const FieldName field{field_base, index};
    auto truncated = [&] { return Fail(fmt::format("{}: truncated {} value", field, ValueTypeName(type))); };
    switch (type) {
#define QM_SCALAR(VT, CT)                          \
  case ValueType::VT: {                            \
    CT x;                                          \
    if (!cur_.Read(&x)) return truncated();        \
    out->v.emplace<CT>(x);                         \
    return Status::Ok();                           \
  }
      QM_SCALAR(kU8, uint8_t)
      QM_SCALAR(kI8, int8_t)
      QM_SCALAR(kU16, uint16_t)
      QM_SCALAR(kI16, int16_t)
      QM_SCALAR(kU32, uint32_t)
      QM_SCALAR(kI32, int32_t)
      QM_SCALAR(kF32, float)
      QM_SCALAR(kU64, uint64_t)
      QM_SCALAR(kI64, int64_t)
      QM_SCALAR(kF64, double)
#undef QM_SCALAR
      case ValueType::kBool: {
        uint8_t b;
        if (!cur_.Read(&b)) return truncated();
        if (b > 1) return Fail(fmt::format("{}: bool value {} is not 0 or 1", field, b));
        out->v.emplace<bool>(b != 0);
        return Status::Ok();
      }
      case ValueType::kString: {
        std::string s;
        uint64_t len = 0;
        if (!cur_.ReadString(&s, std::numeric_limits<uint64_t>::max(), &len)) {
          return Fail(fmt::format("{}: string length {} runs past the end of the file", field, len));
        }
        out->v.emplace<std::string>(std::move(s));
        return Status::Ok();
      }
      case ValueType::kArray: {
        if (depth >= kMaxArrayDepth) return Fail(fmt::format("{}: arrays nested deeper than {}", field, kMaxArrayDepth));
        uint32_t elem_type;
        uint64_t count;
        if (!cur_.Read(&elem_type) || !cur_.Read(&count)) return Fail(fmt::format("{}: truncated array header", field));
        if (!ValidValueType(elem_type)) return Fail(fmt::format("{}: unknown array element type {}", field, elem_type));
        const ValueType et = static_cast<ValueType>(elem_type);
        const auto need = CheckedMul(count, MinElementBytes(et));
        if (!need || *need > cur_.remaining()) {
          return Fail(fmt::format("{}: array count {} runs past the end of the file", field, count));
        }
        Array arr;
        arr.type = et;
        arr.items.resize(count);
        if (et == ValueType::kArray) {
          for (uint64_t i = 0; i < count; ++i) {
            QM_RETURN_IF_ERROR(ReadValue(et, &arr.items[i], fmt::format("{}[{}]", field, i), depth + 1));
          }
        } else {
          const std::string name = fmt::format("{}", field);
          for (uint64_t i = 0; i < count; ++i) {
            QM_RETURN_IF_ERROR(ReadValue(et, &arr.items[i], name, depth + 1, static_cast<int64_t>(i)));
          }
        }
        out->v.emplace<Array>(std::move(arr));
        return Status::Ok();
      }
    }
    return Fail(fmt::format("{}: unknown value type {}", field, static_cast<uint32_t>(type)));
  }

  Status Parse(File* f) {
    uint32_t magic;
    if (!cur_.Read(&magic)) return Fail("truncated header: file too short for the magic");
    if (magic != kMagic) return Fail(fmt::format("bad magic 0x{:08x} (not a GGUF file)", magic));
    if (!cur_.Read(&f->version_)) return Fail("truncated header: no version");
    if (f->version_ != 2 && f->version_ != 3) {
      return Status(StatusCode::kUnsupported,
                    fmt::format("gguf: {}: unsupported version {} (supported: 2, 3)", name_, f->version_));
    }
    uint64_t n_tensors, n_kv;
    if (!cur_.Read(&n_tensors)) return Fail("truncated header: no tensor_count");
    if (!cur_.Read(&n_kv)) return Fail("truncated header: no metadata_kv_count");
    // Each kv needs at least 8 (key len) + 4 (type) + 1 bytes; each tensor info at least 8+4+8+4+8.
    if (n_kv > cur_.remaining() / 13) return Fail(fmt::format("metadata_kv_count {} runs past the end of the file", n_kv));
    if (n_tensors > cur_.remaining() / 32) return Fail(fmt::format("tensor_count {} runs past the end of the file", n_tensors));

    f->metadata_.resize(n_kv);
    for (uint64_t i = 0; i < n_kv; ++i) {
      KeyValue& kv = f->metadata_[i];
      uint64_t len = 0;
      if (!cur_.ReadString(&kv.key, kMaxKeyLength, &len)) {
        return Fail(fmt::format("metadata[{}]: key length {} is past the end of the file or over {}", i, len, kMaxKeyLength));
      }
      const std::string field = fmt::format("metadata[{}] (key \"{}\")", i, kv.key);
      uint32_t type;
      if (!cur_.Read(&type)) return Fail(field + ": truncated value type");
      if (!ValidValueType(type)) return Fail(fmt::format("{}: unknown value type {}", field, type));
      QM_RETURN_IF_ERROR(ReadValue(static_cast<ValueType>(type), &kv.value, field, 0));
    }
    for (size_t i = 0; i < f->metadata_.size(); ++i) {
      if (!f->metadata_index_.emplace(f->metadata_[i].key, i).second) {
        return Fail(fmt::format("duplicate metadata key \"{}\"", f->metadata_[i].key));
      }
    }
    if (const Value* a = f->Find("general.alignment")) {
      if (a->type() != ValueType::kU32) {
        return Fail(fmt::format("general.alignment has type {}, expected u32", ValueTypeName(a->type())));
      }
      const uint32_t align = std::get<uint32_t>(a->v);
      if (align == 0 || align % 8 != 0) return Fail(fmt::format("general.alignment {} is not a positive multiple of 8", align));
      f->alignment_ = align;
    }

    f->tensors_.resize(n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) {
      TensorInfo& t = f->tensors_[i];
      uint64_t len = 0;
      if (!cur_.ReadString(&t.name, kMaxTensorNameLength, &len)) {
        return Fail(fmt::format("tensor[{}]: name length {} is past the end of the file or over {}", i, len, kMaxTensorNameLength));
      }
      const std::string field = fmt::format("tensor {}", t.name);
      if (!cur_.Read(&t.n_dims)) return Fail(field + ": truncated n_dims");
      if (t.n_dims == 0 || t.n_dims > kMaxDims) return Fail(fmt::format("{}: n_dims {} not in 1..{}", field, t.n_dims, kMaxDims));
      uint64_t n_elem = 1;
      for (uint32_t d = 0; d < t.n_dims; ++d) {
        if (!cur_.Read(&t.ne[d])) return Fail(field + ": truncated dimensions");
        if (t.ne[d] == 0) return Fail(fmt::format("{}: dimension {} is zero", field, d));
        const auto m = CheckedMul(n_elem, t.ne[d]);
        if (!m || *m > (uint64_t{1} << 50)) return Fail(fmt::format("{}: absurd shape (dimension {} = {})", field, d, t.ne[d]));
        n_elem = *m;
      }
      uint32_t type;
      if (!cur_.Read(&type)) return Fail(field + ": truncated type");
      const TensorTypeTraits* tr = GetTensorTypeTraits(type);
      if (tr == nullptr) {
        return Status(StatusCode::kUnsupported, fmt::format("gguf: {}: {}: unknown tensor type {}", name_, field, type));
      }
      t.type = static_cast<TensorType>(type);
      if (t.ne[0] % tr->block_size != 0) {
        return Fail(fmt::format("{}: row length {} is not a multiple of the {} block size {}", field, t.ne[0], tr->name, tr->block_size));
      }
      if (!cur_.Read(&t.offset)) return Fail(field + ": truncated offset");
      if (t.offset % f->alignment_ != 0) {
        return Fail(fmt::format("{}: offset {} is not a multiple of the alignment {}", field, t.offset, f->alignment_));
      }
      t.n_bytes = n_elem / tr->block_size * tr->type_size;  // n_elem <= 2^50: no overflow
    }
    for (size_t i = 0; i < f->tensors_.size(); ++i) {
      if (!f->tensor_index_.emplace(f->tensors_[i].name, i).second) {
        return Fail(fmt::format("duplicate tensor name \"{}\"", f->tensors_[i].name));
      }
    }

    const auto data_start = CheckedAlignUp(cur_.pos(), f->alignment_);
    const uint64_t size = f->bytes_.size();
    if (!data_start || (n_tensors > 0 && *data_start > size)) {
      return Fail("truncated: tensor data section starts past the end of the file");
    }
    f->data_offset_ = *data_start;
    for (const TensorInfo& t : f->tensors_) {
      const auto begin = CheckedAdd(f->data_offset_, t.offset);
      const auto end = begin ? CheckedAdd(*begin, t.n_bytes) : std::nullopt;
      if (!end || *end > size) {
        return Fail(fmt::format("tensor {}: data ends past end of file (offset {}, {} bytes, file {} bytes)", t.name,
                                t.offset, t.n_bytes, size));
      }
    }
    return Status::Ok();
  }

 private:
  Cursor cur_;
  const std::string& name_;
};

Result<File> File::Parse(std::span<const uint8_t> bytes, std::string name) {
  File f;
  f.name_ = std::move(name);
  f.bytes_ = bytes;
  Parser p(bytes, f.name_);
  QM_RETURN_IF_ERROR(p.Parse(&f));
  return f;
}

Result<File> File::Open(const std::string& path) {
  auto map = MappedFile::Open(path);
  if (!map.ok()) return map.status().WithContext("gguf");
  auto shared = std::make_shared<MappedFile>(std::move(map).value());
  QM_ASSIGN_OR_RETURN(File f, Parse(shared->bytes(), path));
  f.map_ = std::move(shared);
  return f;
}

const Value* File::Find(std::string_view key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].value;
}

const TensorInfo* File::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
template <typename T>
constexpr ValueType TypeOf() {
  return static_cast<ValueType>(Value::Storage(T{}).index());
}
}  // namespace

template <typename T>
Result<std::optional<T>> File::GetOptional(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return std::optional<T>();
  if (!std::holds_alternative<T>(v->v)) {
    return Error(StatusCode::kInvalidArgument, "gguf: {}: key {} has type {}, expected {}", name_, key,
                 ValueTypeName(v->type()), ValueTypeName(TypeOf<T>()));
  }
  return std::optional<T>(std::get<T>(v->v));
}

template <typename T>
Result<T> File::Get(std::string_view key) const {
  QM_ASSIGN_OR_RETURN(std::optional<T> v, GetOptional<T>(key));
  if (!v) return Error(StatusCode::kNotFound, "gguf: {}: missing key {}", name_, key);
  return std::move(*v);
}

#define QM_INSTANTIATE(T)                                                         \
  template Result<T> File::Get<T>(std::string_view) const;                        \
  template Result<std::optional<T>> File::GetOptional<T>(std::string_view) const;
QM_INSTANTIATE(uint8_t)
QM_INSTANTIATE(int8_t)
QM_INSTANTIATE(uint16_t)
QM_INSTANTIATE(int16_t)
QM_INSTANTIATE(uint32_t)
QM_INSTANTIATE(int32_t)
QM_INSTANTIATE(float)
QM_INSTANTIATE(bool)
QM_INSTANTIATE(std::string)
QM_INSTANTIATE(uint64_t)
QM_INSTANTIATE(int64_t)
QM_INSTANTIATE(double)
#undef QM_INSTANTIATE

Result<uint64_t> File::GetUInt(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Error(StatusCode::kNotFound, "gguf: {}: missing key {}", name_, key);
  auto bad = [&] {
    return Error(StatusCode::kInvalidArgument, "gguf: {}: key {} has type {}, expected an unsigned integer", name_, key,
                 ValueTypeName(v->type()));
  };
  return std::visit(
      [&](const auto& x) -> Result<uint64_t> {
        using X = std::decay_t<decltype(x)>;
        if constexpr (std::is_integral_v<X> && !std::is_same_v<X, bool>) {
          if constexpr (std::is_signed_v<X>) {
            if (x < 0) {
              return Error(StatusCode::kInvalidArgument, "gguf: {}: key {} is negative ({})", name_, key,
                           static_cast<int64_t>(x));
            }
          }
          return static_cast<uint64_t>(x);
        } else {
          return bad();
        }
      },
      v->v);
}

Result<double> File::GetFloat(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Error(StatusCode::kNotFound, "gguf: {}: missing key {}", name_, key);
  if (auto* f = std::get_if<float>(&v->v)) return static_cast<double>(*f);
  if (auto* d = std::get_if<double>(&v->v)) return *d;
  return Error(StatusCode::kInvalidArgument, "gguf: {}: key {} has type {}, expected f32 or f64", name_, key,
               ValueTypeName(v->type()));
}

Result<const Array*> File::GetArray(std::string_view key, ValueType elem) const {
  const Value* v = Find(key);
  if (v == nullptr) return Error(StatusCode::kNotFound, "gguf: {}: missing key {}", name_, key);
  const Array* a = std::get_if<Array>(&v->v);
  if (a == nullptr) {
    return Error(StatusCode::kInvalidArgument, "gguf: {}: key {} has type {}, expected array", name_, key,
                 ValueTypeName(v->type()));
  }
  if (a->type != elem) {
    return Error(StatusCode::kInvalidArgument, "gguf: {}: key {} is an array of {}, expected array of {}", name_, key,
                 ValueTypeName(a->type), ValueTypeName(elem));
  }
  return a;
}

}  // namespace qwenmux::gguf
