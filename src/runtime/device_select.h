// Turning a DeviceChoice (--device cpu|cuda|auto, a model's `device:` in qwenmux.yaml) into the
// device a model runs on, with the reason, from what QueryCudaDevice reported:
//   cpu  -> cpu
//   cuda -> cuda when the GPU is usable, else kFailedPrecondition naming why ("built without
//           CUDA", "no CUDA device", the driver's error)
//   auto -> cuda when the GPU is usable, else cpu; `why` says which and why (callers log it)
// Memory budgets (does the model fit the GPU?) are the model manager's business, on top of this.
//
// Thread-safety: pure functions (SelectDeviceNow queries the driver, which is thread-safe).
#pragma once

#include <string>

#include "base/status.h"
#include "runtime/backend.h"
#include "runtime/cuda/cuda_device.h"

namespace qwenmux::runtime {

struct DeviceSelection {
  Device device = Device::kCpu;
  std::string why;  // "auto: cuda:0 NVIDIA H100 80GB HBM3 (79.1 GiB free of 79.6 GiB)"
};

std::string_view DeviceChoiceName(DeviceChoice c);  // "cpu" | "cuda" | "auto"

// One line about a GPU: "cuda:0 NAME (X GiB free of Y GiB)" or "cuda:0 unavailable: WHY".
std::string DescribeCudaDevice(const CudaDeviceInfo& gpu);

Result<DeviceSelection> SelectDevice(DeviceChoice choice, const CudaDeviceInfo& gpu);
// The same against QueryCudaDevice(index) now (cpu never queries the driver).
Result<DeviceSelection> SelectDeviceNow(DeviceChoice choice, int index);

}  // namespace qwenmux::runtime
