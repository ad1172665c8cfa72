#include "quant/quant.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>

#include "quant/blocks.h"
#include "quant/formats.h"

namespace qwenmux::quant {

namespace {

using gguf::TensorType;

struct Format {
  int64_t block_size;
  size_t block_bytes;
};

bool GetFormat(TensorType type, Format* f) {
  switch (type) {
    case TensorType::kF32: *f = {1, 4}; return true;
    case TensorType::kF16: *f = {1, 2}; return true;
    case TensorType::kBF16: *f = {1, 2}; return true;
    case TensorType::kQ8_0: *f = {kQK8_0, sizeof(BlockQ8_0)}; return true;
    case TensorType::kQ4_0: *f = {kQK4_0, sizeof(BlockQ4_0)}; return true;
    case TensorType::kQ4_K: *f = {kQK_K, sizeof(BlockQ4_K)}; return true;
    case TensorType::kQ5_K: *f = {kQK_K, sizeof(BlockQ5_K)}; return true;
    case TensorType::kQ6_K: *f = {kQK_K, sizeof(BlockQ6_K)}; return true;
    default: return false;
  }
}

std::string TypeLabel(TensorType type) {
  const auto* traits = gguf::GetTensorTypeTraits(static_cast<uint32_t>(type));
  if (traits != nullptr) return traits->name;
  return fmt::format("type {}", static_cast<uint32_t>(type));
}

// Calls fn(block_ptr, i) over nb blocks of T at `p`; when p is not aligned for T, each block goes
// through an aligned local copy (copy-in for reading, copy-out for writing).
template <typename T, typename Fn>
void ForAlignedBlocks(const void* p, int64_t nb, Fn&& fn) {
  if (reinterpret_cast<uintptr_t>(p) % alignof(T) == 0) {
    fn(static_cast<const T*>(p), nb, int64_t{0});
    return;
  }
  T tmp;
  for (int64_t i = 0; i < nb; ++i) {
    std::memcpy(&tmp, static_cast<const uint8_t*>(p) + i * sizeof(T), sizeof(T));
    fn(&tmp, int64_t{1}, i);
  }
}

template <typename T, typename Quant>
void QuantizeBlocks(const float* src, void* dst, int64_t n, int64_t block, Quant quant) {
  const int64_t nb = n / block;
  if (reinterpret_cast<uintptr_t>(dst) % alignof(T) == 0) {
    quant(src, static_cast<T*>(dst), n);
    return;
  }
  T tmp;
  for (int64_t i = 0; i < nb; ++i) {
    quant(src + i * block, &tmp, block);
    std::memcpy(static_cast<uint8_t*>(dst) + i * sizeof(T), &tmp, sizeof(T));
  }
}

template <typename T, typename Dequant>
void DequantizeBlocks(const void* src, float* dst, int64_t n, int64_t block, Dequant dequant) {
  ForAlignedBlocks<T>(src, n / block, [&](const T* b, int64_t count, int64_t first) {
    dequant(b, dst + first * block, count * block);
  });
}

}  // namespace

bool IsSupported(TensorType type) {
  Format f;
  return GetFormat(type, &f);
}

int64_t BlockSize(TensorType type) {
  Format f;
  return GetFormat(type, &f) ? f.block_size : 0;
}

size_t RowSize(TensorType type, int64_t n) {
  Format f;
  if (!GetFormat(type, &f) || n < 0 || n % f.block_size != 0) return 0;
  return static_cast<size_t>(n / f.block_size) * f.block_bytes;
}

Status CheckRow(TensorType type, int64_t n) {
  Format f;
  if (!GetFormat(type, &f)) {
    return Error(StatusCode::kUnsupported, "quant: tensor type {} is not supported",
                 TypeLabel(type));
  }
  if (n < 0) return Error(StatusCode::kInvalidArgument, "quant: negative row length {}", n);
  if (n % f.block_size != 0) {
    return Error(StatusCode::kInvalidArgument,
                 "quant: row length {} is not a multiple of the {} block size {}", n,
                 TypeLabel(type), f.block_size);
  }
  return Status::Ok();
}

Status QuantizeRow(TensorType type, const float* src, void* dst, int64_t n) {
  QM_RETURN_IF_ERROR(CheckRow(type, n));
  switch (type) {
    case TensorType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return Status::Ok();
    case TensorType::kF16:
      QuantizeBlocks<uint16_t>(src, dst, n, 1, QuantizeRowF16);
      return Status::Ok();
    case TensorType::kBF16:
      QuantizeBlocks<uint16_t>(src, dst, n, 1, QuantizeRowBF16);
      return Status::Ok();
    default:
      break;
  }
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(src[i])) {
      return Error(StatusCode::kInvalidArgument,
                   "quant: cannot quantize non-finite value {} at element {} to {}", src[i], i,
                   TypeLabel(type));
    }
  }
  switch (type) {
    case TensorType::kQ8_0: QuantizeBlocks<BlockQ8_0>(src, dst, n, kQK8_0, QuantizeRowQ8_0); break;
    case TensorType::kQ4_0: QuantizeBlocks<BlockQ4_0>(src, dst, n, kQK4_0, QuantizeRowQ4_0); break;
    case TensorType::kQ4_K: QuantizeBlocks<BlockQ4_K>(src, dst, n, kQK_K, QuantizeRowQ4_K); break;
    case TensorType::kQ5_K: QuantizeBlocks<BlockQ5_K>(src, dst, n, kQK_K, QuantizeRowQ5_K); break;
    case TensorType::kQ6_K: QuantizeBlocks<BlockQ6_K>(src, dst, n, kQK_K, QuantizeRowQ6_K); break;
    default:
      return Error(StatusCode::kInternal, "quant: no quantizer for {}", TypeLabel(type));
  }
  return Status::Ok();
}

Status DequantizeRow(TensorType type, const void* src, float* dst, int64_t n) {
  QM_RETURN_IF_ERROR(CheckRow(type, n));
  switch (type) {
    case TensorType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      break;
    case TensorType::kF16: DequantizeBlocks<uint16_t>(src, dst, n, 1, DequantizeRowF16); break;
    case TensorType::kBF16: DequantizeBlocks<uint16_t>(src, dst, n, 1, DequantizeRowBF16); break;
    case TensorType::kQ8_0:
      DequantizeBlocks<BlockQ8_0>(src, dst, n, kQK8_0, DequantizeRowQ8_0);
      break;
    case TensorType::kQ4_0:
      DequantizeBlocks<BlockQ4_0>(src, dst, n, kQK4_0, DequantizeRowQ4_0);
      break;
    case TensorType::kQ4_K:
      DequantizeBlocks<BlockQ4_K>(src, dst, n, kQK_K, DequantizeRowQ4_K);
      break;
    case TensorType::kQ5_K:
      DequantizeBlocks<BlockQ5_K>(src, dst, n, kQK_K, DequantizeRowQ5_K);
      break;
    case TensorType::kQ6_K:
      DequantizeBlocks<BlockQ6_K>(src, dst, n, kQK_K, DequantizeRowQ6_K);
      break;
    default:
      return Error(StatusCode::kInternal, "quant: no dequantizer for {}", TypeLabel(type));
  }
  return Status::Ok();
}

namespace {

template <typename RowFn>
Status ForRows(TensorType type, int64_t rows, int64_t n_per_row, ThreadPool* pool, RowFn row_fn) {
  QM_RETURN_IF_ERROR(CheckRow(type, n_per_row));
  if (rows < 0) return Error(StatusCode::kInvalidArgument, "quant: negative row count {}", rows);
  if (rows == 0) return Status::Ok();
  std::mutex mu;
  Status first_error;
  std::atomic<bool> failed{false};
  auto work = [&](size_t begin, size_t end, size_t /*thread*/) {
    for (size_t r = begin; r < end && !failed.load(std::memory_order_relaxed); ++r) {
      Status s = row_fn(static_cast<int64_t>(r));
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (!failed.exchange(true)) first_error = s.WithContext(fmt::format("row {}", r));
        return;
      }
    }
  };
  if (pool == nullptr || pool->size() <= 1) {
    work(0, static_cast<size_t>(rows), 0);
  } else {
    // Small rows: give each chunk enough work to amortise the hand-off.
    const size_t grain = std::max<size_t>(1, 4096 / static_cast<size_t>(std::max<int64_t>(1, n_per_row)));
    pool->ParallelFor(static_cast<size_t>(rows), grain, work);
  }
  return first_error;
}

}  // namespace

Status QuantizeTensor(TensorType type, const float* src, void* dst, int64_t rows,
                      int64_t n_per_row, ThreadPool* pool) {
  const size_t row_bytes = RowSize(type, n_per_row);
  return ForRows(type, rows, n_per_row, pool, [&](int64_t r) {
    return QuantizeRow(type, src + r * n_per_row, static_cast<uint8_t*>(dst) + r * row_bytes,
                       n_per_row);
  });
}

Status DequantizeTensor(TensorType type, const void* src, float* dst, int64_t rows,
                        int64_t n_per_row, ThreadPool* pool) {
  const size_t row_bytes = RowSize(type, n_per_row);
  return ForRows(type, rows, n_per_row, pool, [&](int64_t r) {
    return DequantizeRow(type, static_cast<const uint8_t*>(src) + r * row_bytes,
                         dst + r * n_per_row, n_per_row);
  });
}

}  // namespace qwenmux::quant
