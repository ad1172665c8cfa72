#include "runtime/backend_factory.h"

#include "runtime/cpu_backend.h"
#include "runtime/cuda/cuda_device.h"
#ifdef QWENMUX_CUDA
#include "runtime/cuda/cuda_backend.h"
#endif

namespace qwenmux::runtime {

namespace {

Result<std::unique_ptr<Backend>> CreateCpu(const model::ModelConfig& config, const ModelWeights& weights,
                                           const BackendOptions& o) {
  QM_ASSIGN_OR_RETURN(std::unique_ptr<CpuBackend> cpu, CpuBackend::Create(config, weights, o.n_ctx, o.n_seq, o.pool));
  return std::unique_ptr<Backend>(std::move(cpu));
}

Result<std::unique_ptr<Backend>> CreateCuda(const model::ModelConfig& config, const ModelWeights& weights,
                                            const BackendOptions& o) {
#ifdef QWENMUX_CUDA
  return MakeCudaBackend(config, weights, CudaBackendOptions{o.device_index, o.n_ctx, o.n_seq, o.n_batch});
#else
  (void)config;
  (void)weights;
  (void)o;
  return Error(StatusCode::kUnsupported, "backend: device cuda requested, but this qwenmux was built without CUDA");
#endif
}

}  // namespace

Result<std::unique_ptr<Backend>> CreateBackend(const model::ModelConfig& config, const ModelWeights& weights,
                                               const BackendOptions& options, std::string* note) {
  if (note) note->clear();
  switch (options.device) {
    case DeviceChoice::kCpu:
      return CreateCpu(config, weights, options);
    case DeviceChoice::kCuda: {
      Result<std::unique_ptr<Backend>> r = CreateCuda(config, weights, options);
      if (!r.ok()) return r.status().WithContext(fmt::format("backend: cuda:{}", options.device_index));
      return r;
    }
    case DeviceChoice::kAuto:
      break;
  }
  const CudaDeviceInfo info = QueryCudaDevice(options.device_index);
  if (!info.available) {
    if (note) *note = fmt::format("device auto: cpu, because cuda is not available ({})", info.why);
    return CreateCpu(config, weights, options);
  }
  Result<std::unique_ptr<Backend>> cuda = CreateCuda(config, weights, options);
  if (cuda.ok()) return cuda;
  if (note) {
    *note = fmt::format("device auto: cpu, because the cuda backend on cuda:{} ({}) failed: {}", options.device_index,
                        info.name, cuda.status().ToString());
  }
  return CreateCpu(config, weights, options);
}

}  // namespace qwenmux::runtime
