// QueryCudaDevice through the CUDA runtime (built with QWENMUX_CUDA). Never aborts: a missing
// driver, a driver older than the runtime or no device come back as `why`.
#include <cuda_runtime_api.h>

#include <fmt/format.h>

#include "runtime/cuda/cuda_device.h"

namespace qwenmux::runtime {

bool BuiltWithCuda() { return true; }

CudaDeviceInfo QueryCudaDevice(int index) {
  CudaDeviceInfo info;
  info.index = index;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    info.why = fmt::format("{} ({})", cudaGetErrorString(err), cudaGetErrorName(err));
    cudaGetLastError();  // clear the sticky-free error so later queries start clean
    return info;
  }
  if (count == 0) {
    info.why = "no CUDA device";
    return info;
  }
  if (index < 0 || index >= count) {
    info.why = fmt::format("CUDA device {} out of range ({} device{})", index, count, count == 1 ? "" : "s");
    return info;
  }
  cudaDeviceProp prop{};
  err = cudaGetDeviceProperties(&prop, index);
  if (err != cudaSuccess) {
    info.why = fmt::format("cudaGetDeviceProperties({}): {}", index, cudaGetErrorString(err));
    cudaGetLastError();
    return info;
  }
  info.name = prop.name;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.total_bytes = prop.totalGlobalMem;
  int prev = 0;
  cudaGetDevice(&prev);
  size_t free_b = 0, total_b = 0;
  err = cudaSetDevice(index);
  if (err == cudaSuccess) err = cudaMemGetInfo(&free_b, &total_b);
  cudaSetDevice(prev);
  if (err != cudaSuccess) {
    info.why = fmt::format("cudaMemGetInfo on device {}: {}", index, cudaGetErrorString(err));
    cudaGetLastError();
    return info;
  }
  info.free_bytes = free_b;
  info.total_bytes = total_b;
  info.available = true;
  return info;
}

}  // namespace qwenmux::runtime
