#include "runtime/backend.h"

namespace qwenmux::runtime {

std::string_view DeviceName(Device d) { return d == Device::kCuda ? "cuda" : "cpu"; }

Result<DeviceChoice> ParseDeviceChoice(std::string_view s) {
  if (s == "cpu") return DeviceChoice::kCpu;
  if (s == "cuda") return DeviceChoice::kCuda;
  if (s == "auto") return DeviceChoice::kAuto;
  return Error(StatusCode::kInvalidArgument, "device: '{}' is not one of cpu, cuda, auto", s);
}

}  // namespace qwenmux::runtime
