// Device selection: --device cpu|cuda|auto parsed by one parser, and resolved against what the
// GPU query reported (a fake here: this machine has no GPU), with the reason.
#include <gtest/gtest.h>

#include "runtime/device_select.h"

namespace qwenmux::runtime {
namespace {

CudaDeviceInfo Gpu() {
  CudaDeviceInfo g;
  g.available = true;
  g.name = "NVIDIA H100 80GB HBM3";
  g.total_bytes = uint64_t{80} << 30;
  g.free_bytes = uint64_t{79} << 30;
  return g;
}

CudaDeviceInfo NoGpu(const char* why) {
  CudaDeviceInfo g;
  g.why = why;
  return g;
}

TEST(DeviceSelect, ParsesTheThreeChoices) {
  EXPECT_EQ(*ParseDeviceChoice("cpu"), DeviceChoice::kCpu);
  EXPECT_EQ(*ParseDeviceChoice("cuda"), DeviceChoice::kCuda);
  EXPECT_EQ(*ParseDeviceChoice("auto"), DeviceChoice::kAuto);
  for (const char* bad : {"gpu", "CUDA", "", "cuda:0", "metal"}) {
    auto r = ParseDeviceChoice(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("cpu, cuda, auto"), std::string::npos);
  }
  for (DeviceChoice c : {DeviceChoice::kCpu, DeviceChoice::kCuda, DeviceChoice::kAuto}) {
    EXPECT_EQ(*ParseDeviceChoice(DeviceChoiceName(c)), c);  // names round-trip
  }
}

TEST(DeviceSelect, AutoPicksTheGpuWhenUsable) {
  auto s = SelectDevice(DeviceChoice::kAuto, Gpu());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->device, Device::kCuda);
  EXPECT_EQ(s->why, "auto chose cuda: cuda:0 NVIDIA H100 80GB HBM3 (79.0 GiB free of 80.0 GiB)");
  s = SelectDevice(DeviceChoice::kAuto, NoGpu("built without CUDA"));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->device, Device::kCpu);
  EXPECT_EQ(s->why, "auto chose cpu: no usable GPU: cuda:0 unavailable: built without CUDA");
}

TEST(DeviceSelect, CudaWithoutAGpuNamesWhy) {
  auto s = SelectDevice(DeviceChoice::kCuda, NoGpu("CUDA driver version is insufficient for CUDA runtime version"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(s.status().message().find("no usable GPU"), std::string::npos);
  EXPECT_NE(s.status().message().find("driver version is insufficient"), std::string::npos);
  EXPECT_NE(s.status().message().find("--device cpu or auto"), std::string::npos);
  s = SelectDevice(DeviceChoice::kCuda, Gpu());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->device, Device::kCuda);
}

TEST(DeviceSelect, CpuNeverAsksTheDriver) {
  auto s = SelectDeviceNow(DeviceChoice::kCpu, 0);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->device, Device::kCpu);
  EXPECT_FALSE(SelectDeviceNow(DeviceChoice::kAuto, -1).ok());
}

TEST(DeviceSelect, ThisBuildWithoutAGpu) {
  const CudaDeviceInfo g = QueryCudaDevice(0);
  if (g.available) GTEST_SKIP() << "a GPU is present: " << DescribeCudaDevice(g);
  EXPECT_FALSE(g.why.empty());
  auto a = SelectDeviceNow(DeviceChoice::kAuto, 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->device, Device::kCpu);
  EXPECT_FALSE(SelectDeviceNow(DeviceChoice::kCuda, 0).ok());
}

}  // namespace
}  // namespace qwenmux::runtime
