// QueryCudaDevice for builds without QWENMUX_CUDA (the CUDA build compiles cuda_device.cc instead).
#ifndef QWENMUX_CUDA
#include "runtime/cuda/cuda_device.h"

namespace qwenmux::runtime {

bool BuiltWithCuda() { return false; }

CudaDeviceInfo QueryCudaDevice(int index) {
  CudaDeviceInfo info;
  info.index = index;
  info.why = "built without CUDA (configure with -DQWENMUX_CUDA=ON and nvcc)";
  return info;
}

}  // namespace qwenmux::runtime
#endif
