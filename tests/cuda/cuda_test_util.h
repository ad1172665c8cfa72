// Helpers of the CUDA tests: skip without a device, upload a host GGUF-layout matrix.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "runtime/cuda/cuda_device.h"
#include "runtime/cuda/cuda_kernels.h"

namespace qwenmux::runtime::cuda {

#define QWENMUX_REQUIRE_CUDA_DEVICE()                                      \
  do {                                                                     \
    const auto info_ = ::qwenmux::runtime::QueryCudaDevice(0);             \
    if (!info_.available) GTEST_SKIP() << "no CUDA device: " << info_.why; \
  } while (0)

// Device buffer freed at scope exit.
template <class T>
struct DevBuf {
  T* p = nullptr;
  explicit DevBuf(size_t n) { EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess); }
  DevBuf(const std::vector<T>& v) : DevBuf(v.size()) {
    EXPECT_EQ(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DevBuf() { cudaFree(p); }
  std::vector<T> Read(size_t n) const {
    std::vector<T> v(n);
    EXPECT_EQ(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
};

// A GGUF-layout matrix (rows * row_bytes bytes) repacked into device planes.
struct DevUpload {
  DevMatrix m;
  uint8_t* base = nullptr;
  DevUpload(DType type, int64_t rows, int64_t cols, const std::vector<uint8_t>& raw) {
    m.type = type;
    m.rows = rows;
    m.cols = cols;
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&base), DevMatrixBytes(type, rows, cols)), cudaSuccess);
    SetPlanes(m, base);
    DevBuf<uint8_t> r(raw);
    EXPECT_EQ(LaunchRepack(m, r.p, 0, rows, nullptr), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  ~DevUpload() { cudaFree(base); }
};

}  // namespace qwenmux::runtime::cuda
