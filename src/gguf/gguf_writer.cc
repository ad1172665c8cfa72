// GGUF v3 writer. Layout matches the reference writer (gguf-py): header, metadata in order,
// tensor infos in order, zero padding to the alignment, then each tensor's data at an aligned
// offset with zero padding between tensors and after the last one.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/checked_math.h"
#include "gguf/gguf.h"

namespace qwenmux::gguf {

namespace {

template <typename T>
void Put(std::vector<uint8_t>& out, T x) {
  const auto* p = reinterpret_cast<const uint8_t*>(&x);
  out.insert(out.end(), p, p + sizeof(T));
}

void PutString(std::vector<uint8_t>& out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

void PutValue(std::vector<uint8_t>& out, const Value& v) {
  std::visit(
      [&](const auto& x) {
        using X = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<X, std::string>) {
          PutString(out, x);
        } else if constexpr (std::is_same_v<X, Array>) {
          Put<uint32_t>(out, static_cast<uint32_t>(x.type));
          Put<uint64_t>(out, x.items.size());
          for (const Value& item : x.items) PutValue(out, item);
        } else if constexpr (std::is_same_v<X, bool>) {
          Put<uint8_t>(out, x ? 1 : 0);
        } else {
          Put<X>(out, x);
        }
      },
      v.v);
}

}  // namespace

Writer::~Writer() { Abort(); }

void Writer::Abort() {
  if (out_ != nullptr) {
    std::fclose(out_);
    out_ = nullptr;
    std::remove(tmp_path_.c_str());
  }
}

void Writer::AddKeyValue(std::string key, Value value) {
  metadata_.push_back({std::move(key), std::move(value)});
}

void Writer::SetKeyValue(std::string_view key, Value value) {
  for (KeyValue& kv : metadata_) {
    if (kv.key == key) {
      kv.value = std::move(value);
      return;
    }
  }
  metadata_.push_back({std::string(key), std::move(value)});
}

Result<size_t> Writer::AddTensor(std::string name, TensorType type, std::span<const uint64_t> ne) {
  if (ne.empty() || ne.size() > kMaxDims) {
    return Error(StatusCode::kInvalidArgument, "gguf writer: tensor {}: {} dimensions", name, ne.size());
  }
  TensorInfo t;
  t.name = std::move(name);
  t.type = type;
  t.n_dims = static_cast<uint32_t>(ne.size());
  for (size_t i = 0; i < ne.size(); ++i) t.ne[i] = ne[i];
  const auto row = RowBytes(type, t.ne[0]);
  if (!row) {
    return Error(StatusCode::kInvalidArgument, "gguf writer: tensor {}: row of {} is not a whole number of {} blocks",
                 t.name, t.ne[0], TensorTypeName(type));
  }
  const auto bytes = CheckedMul(*row, t.rows());
  if (!bytes) return Error(StatusCode::kInvalidArgument, "gguf writer: tensor {}: size overflows", t.name);
  t.n_bytes = *bytes;
  t.offset = *CheckedAlignUp(data_size_, alignment_);
  data_size_ = t.offset + t.n_bytes;
  tensors_.push_back(std::move(t));
  return tensors_.size() - 1;
}

std::vector<uint8_t> Writer::SerializeHeader() const {
  std::vector<uint8_t> out;
  Put<uint32_t>(out, kMagic);
  Put<uint32_t>(out, 3);
  Put<uint64_t>(out, tensors_.size());
  Put<uint64_t>(out, metadata_.size());
  for (const KeyValue& kv : metadata_) {
    PutString(out, kv.key);
    Put<uint32_t>(out, static_cast<uint32_t>(kv.value.type()));
    PutValue(out, kv.value);
  }
  for (const TensorInfo& t : tensors_) {
    PutString(out, t.name);
    Put<uint32_t>(out, t.n_dims);
    for (uint32_t d = 0; d < t.n_dims; ++d) Put<uint64_t>(out, t.ne[d]);
    Put<uint32_t>(out, static_cast<uint32_t>(t.type));
    Put<uint64_t>(out, t.offset);
  }
  // The reference writer pads to the data section only when there is one.
  if (!tensors_.empty()) out.resize(*CheckedAlignUp(out.size(), alignment_), 0);
  return out;
}

Status Writer::WriteBytes(const void* p, size_t n) {
  if (n > 0 && std::fwrite(p, 1, n, out_) != n) {
    return Error(StatusCode::kIo, "gguf writer: {}: write failed: {}", tmp_path_, std::strerror(errno));
  }
  return Status::Ok();
}

Status Writer::WriteZeros(uint64_t n) {
  static const uint8_t kZeros[256] = {};
  while (n > 0) {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof(kZeros)));
    QM_RETURN_IF_ERROR(WriteBytes(kZeros, k));
    n -= k;
  }
  return Status::Ok();
}

Status Writer::Open(const std::string& path) {
  if (out_ != nullptr) return Error(StatusCode::kInternal, "gguf writer: already open");
  if (alignment_ == 0 || alignment_ % 8 != 0) {
    return Error(StatusCode::kInvalidArgument, "gguf writer: alignment {} is not a positive multiple of 8", alignment_);
  }
  path_ = path;
  tmp_path_ = fmt::format("{}.tmp.{}", path, ::getpid());
  out_ = std::fopen(tmp_path_.c_str(), "wb");
  if (out_ == nullptr) {
    return Error(StatusCode::kIo, "gguf writer: {}: cannot create: {}", tmp_path_, std::strerror(errno));
  }
  const std::vector<uint8_t> header = SerializeHeader();
  next_tensor_ = 0;
  written_data_ = 0;
  tensor_written_ = 0;
  Status s = WriteBytes(header.data(), header.size());
  if (!s.ok()) Abort();
  return s;
}

Status Writer::WriteTensorData(size_t index, std::span<const uint8_t> data) {
  if (out_ == nullptr) return Error(StatusCode::kInternal, "gguf writer: not open");
  if (index < tensors_.size() && index == next_tensor_ && tensor_written_ == 0 &&
      data.size() != tensors_[index].n_bytes) {
    return Error(StatusCode::kInvalidArgument, "gguf writer: tensor {}: {} bytes given, {} expected",
                 tensors_[index].name, data.size(), tensors_[index].n_bytes);
  }
  if (index < tensors_.size() && tensor_written_ != 0) {
    return Error(StatusCode::kInternal, "gguf writer: tensor {}: whole data given after {} bytes in pieces",
                 tensors_[index].name, tensor_written_);
  }
  return WriteTensorChunk(index, data);
}

Status Writer::WriteTensorChunk(size_t index, std::span<const uint8_t> data) {
  if (out_ == nullptr) return Error(StatusCode::kInternal, "gguf writer: not open");
  if (index != next_tensor_ || index >= tensors_.size()) {
    return Error(StatusCode::kInternal, "gguf writer: tensor data written out of order (got {}, expected {})", index,
                 next_tensor_);
  }
  const TensorInfo& t = tensors_[index];
  if (data.size() > t.n_bytes - tensor_written_) {
    return Error(StatusCode::kInvalidArgument, "gguf writer: tensor {}: {} more bytes given, {} of {} left", t.name,
                 data.size(), t.n_bytes - tensor_written_, t.n_bytes);
  }
  if (tensor_written_ == 0) {
    QM_RETURN_IF_ERROR(WriteZeros(t.offset - written_data_));
    written_data_ = t.offset;
  }
  QM_RETURN_IF_ERROR(WriteBytes(data.data(), data.size()));
  tensor_written_ += data.size();
  written_data_ += data.size();
  if (tensor_written_ == t.n_bytes) {
    tensor_written_ = 0;
    ++next_tensor_;
  }
  return Status::Ok();
}

Status Writer::Finish() {
  if (out_ == nullptr) return Error(StatusCode::kInternal, "gguf writer: not open");
  if (next_tensor_ != tensors_.size()) {
    return Error(StatusCode::kInternal, "gguf writer: {} of {} tensors written", next_tensor_, tensors_.size());
  }
  const uint64_t end = tensors_.empty() ? 0 : *CheckedAlignUp(written_data_, alignment_);
  QM_RETURN_IF_ERROR(WriteZeros(end - written_data_));
  if (std::fflush(out_) != 0 || ::fsync(fileno(out_)) != 0) {
    const Status s = Error(StatusCode::kIo, "gguf writer: {}: flush failed: {}", tmp_path_, std::strerror(errno));
    Abort();
    return s;
  }
  std::fclose(out_);
  out_ = nullptr;
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    const Status s = Error(StatusCode::kIo, "gguf writer: cannot rename {} to {}: {}", tmp_path_, path_, std::strerror(errno));
    std::remove(tmp_path_.c_str());
    return s;
  }
  return Status::Ok();
}

Status CopyLayout(const File& in, Writer& w) {
  w.SetAlignment(in.alignment());
  for (const KeyValue& kv : in.metadata()) w.AddKeyValue(kv.key, kv.value);
  for (const TensorInfo& t : in.tensors()) {
    auto r = w.AddTensor(t.name, t.type, std::span<const uint64_t>(t.ne, t.n_dims));
    if (!r.ok()) return r.status();
  }
  return Status::Ok();
}

}  // namespace qwenmux::gguf
