// Row quantization and dequantization for the GGUF block formats qwenmux reads and writes:
// F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K.
//
// The quantizers are scalar reference implementations that write the same bytes as the
// reference GGUF quantizer without an importance matrix (ggml's quantize_row_*_ref), so a file
// quantized here is byte-identical to one made by the reference toolchain from the same floats.
// The dequantizers follow the reference dequantizers' arithmetic order, so their output is
// bit-identical too. They are the oracle for the SIMD kernels (src/kernels/cpu).
//
// All functions are pure and thread-safe (no shared state).
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/status.h"
#include "base/thread_pool.h"
#include "gguf/gguf.h"

namespace qwenmux::quant {

// True for the types this module can quantize and dequantize.
bool IsSupported(gguf::TensorType type);

// Elements per block (1 for F32/F16/BF16); 0 for an unsupported type.
int64_t BlockSize(gguf::TensorType type);

// Bytes of one row of n elements; 0 if the type is unsupported, n < 0, or n is not a multiple
// of the type's block size.
size_t RowSize(gguf::TensorType type, int64_t n);

// Checks that `type` is supported and n a non-negative multiple of its block size; the error
// names the type and the numbers.
Status CheckRow(gguf::TensorType type, int64_t n);

// Quantizes n floats from src into RowSize(type, n) bytes at dst (any alignment). For the
// block formats, non-finite input is an InvalidArgument error (the reference quantizer has no
// defined result for it); F16/BF16 keep inf/nan.
Status QuantizeRow(gguf::TensorType type, const float* src, void* dst, int64_t n);

// Dequantizes a row of n elements (RowSize(type, n) bytes at src, any alignment) into dst.
Status DequantizeRow(gguf::TensorType type, const void* src, float* dst, int64_t n);

// Quantizes `rows` rows of n_per_row floats (row-major, contiguous) into rows * RowSize bytes,
// spreading the rows over `pool` (nullptr: the calling thread only). The output equals
// QuantizeRow applied to each row. The pool must not be running another job.
Status QuantizeTensor(gguf::TensorType type, const float* src, void* dst, int64_t rows,
                      int64_t n_per_row, ThreadPool* pool);

// Dequantizes `rows` rows likewise.
Status DequantizeTensor(gguf::TensorType type, const void* src, float* dst, int64_t rows,
                        int64_t n_per_row, ThreadPool* pool);

}  // namespace qwenmux::quant
