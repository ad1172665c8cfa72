#include "runtime/device_select.h"

#include <fmt/format.h>

namespace qwenmux::runtime {

namespace {

std::string GiB(uint64_t b) { return fmt::format("{:.1f} GiB", static_cast<double>(b) / (1ull << 30)); }

}  // namespace

std::string_view DeviceChoiceName(DeviceChoice c) {
  switch (c) {
    case DeviceChoice::kCpu: return "cpu";
    case DeviceChoice::kCuda: return "cuda";
    case DeviceChoice::kAuto: return "auto";
  }
  return "auto";
}

std::string DescribeCudaDevice(const CudaDeviceInfo& gpu) {
  if (!gpu.available) return fmt::format("cuda:{} unavailable: {}", gpu.index, gpu.why.empty() ? "unknown reason" : gpu.why);
  return fmt::format("cuda:{} {} ({} free of {})", gpu.index, gpu.name, GiB(gpu.free_bytes), GiB(gpu.total_bytes));
}

Result<DeviceSelection> SelectDevice(DeviceChoice choice, const CudaDeviceInfo& gpu) {
  switch (choice) {
    case DeviceChoice::kCpu:
      return DeviceSelection{Device::kCpu, "cpu: asked for"};
    case DeviceChoice::kCuda:
      if (!gpu.available) {
        return Error(StatusCode::kUnsupported, "device cuda: no usable GPU: {} (use --device cpu or auto)",
                     DescribeCudaDevice(gpu));
      }
      return DeviceSelection{Device::kCuda, "cuda: asked for, " + DescribeCudaDevice(gpu)};
    case DeviceChoice::kAuto:
      if (!gpu.available) return DeviceSelection{Device::kCpu, "auto chose cpu: no usable GPU: " + DescribeCudaDevice(gpu)};
      return DeviceSelection{Device::kCuda, "auto chose cuda: " + DescribeCudaDevice(gpu)};
  }
  return Error(StatusCode::kInvalidArgument, "device: unknown choice");
}

Result<DeviceSelection> SelectDeviceNow(DeviceChoice choice, int index) {
  if (choice == DeviceChoice::kCpu) return SelectDevice(choice, CudaDeviceInfo{});
  if (index < 0) return Error(StatusCode::kInvalidArgument, "device: index {} is negative", index);
  return SelectDevice(choice, QueryCudaDevice(index));
}

}  // namespace qwenmux::runtime
