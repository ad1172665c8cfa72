// What the process can see of NVIDIA GPUs. Built with QWENMUX_CUDA this asks the CUDA runtime
// (cuda_device.cc); without it, QueryCudaDevice reports "built without CUDA" and the program runs
// on the CPU. Never aborts: no driver, an old driver or no device all come back as a reason.
#pragma once

#include <cstdint>
#include <string>

namespace qwenmux::runtime {

struct CudaDeviceInfo {
  bool available = false;
  std::string why;   // when not available: "built without CUDA", "no CUDA device", driver error
  int index = 0;
  std::string name;  // "NVIDIA H100 80GB HBM3"
  int cc_major = 0, cc_minor = 0;
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;  // cudaMemGetInfo at the time of the query
};

// Whether this binary was built with the CUDA backend.
bool BuiltWithCuda();
CudaDeviceInfo QueryCudaDevice(int index = 0);

}  // namespace qwenmux::runtime
