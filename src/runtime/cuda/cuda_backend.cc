#include "runtime/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "runtime/cuda/cuda_device.h"
#include "runtime/cuda/cuda_forward.h"
#include "runtime/cuda/cuda_weights.h"

namespace qwenmux::runtime {

namespace {

class CudaBackend final : public Backend {
 public:
  CudaBackend(const model::ModelConfig& c, CudaDeviceInfo info, int32_t n_seq)
      : config_(c), info_(std::move(info)), lengths_(static_cast<size_t>(n_seq), 0) {}
  ~CudaBackend() override {
    cudaSetDevice(info_.index);
    forward_.reset();
    weights_.reset();
  }

  Status Init(const ModelWeights& w, const CudaBackendOptions& o, int32_t n_ctx) {
    auto dw = cuda::DeviceWeights::Upload(config_, w);
    if (!dw.ok()) return dw.status();
    weights_ = std::move(*dw);
    auto f = cuda::CudaForward::Create(config_, *weights_, n_ctx, o.n_seq, std::max(1, o.n_batch), o.kv_blocks);
    if (!f.ok()) return f.status();
    forward_ = std::move(*f);
    return Status::Ok();
  }

  Device device() const override { return Device::kCuda; }
  std::string Describe() const override { return fmt::format("cuda:{} {}", info_.index, info_.name); }

  Status Run(std::span<const BatchEntry> batch, float* out_logits, float* out_hidden) override {
    QM_RETURN_IF_ERROR(UseDevice());
    return forward_->Run(batch, out_logits, out_hidden);
  }

  Status RunTop(std::span<const BatchEntry> batch, int32_t k, TopLogit* out_top) override {
    if (!forward_->selects_top()) return Backend::RunTop(batch, k, out_top);
    QM_RETURN_IF_ERROR(UseDevice());
    return forward_->Run(batch, nullptr, nullptr, out_top, k);
  }
  bool selects_top_on_device() const override { return forward_->selects_top(); }

  int32_t n_ctx() const override { return forward_->n_ctx(); }
  int32_t n_seq() const override { return forward_->n_seq(); }
  int32_t length(int32_t seq) const override { return lengths_[static_cast<size_t>(seq)]; }
  void set_length(int32_t seq, int32_t n) override {
    lengths_[static_cast<size_t>(seq)] = n;
    forward_->TrimKv(seq, n);  // blocks past the new length go back to the pool
  }

  BackendMemory memory() const override {
    BackendMemory m;
    m.device_bytes = weights_->bytes() + forward_->device_bytes();
    return m;
  }

 protected:
  int32_t n_vocab() const override { return static_cast<int32_t>(config_.n_vocab); }

 private:
  Status UseDevice() const {
    const cudaError_t e = cudaSetDevice(info_.index);
    if (e != cudaSuccess) {
      return Error(StatusCode::kInternal, "cuda: cudaSetDevice({}): {}", info_.index, cudaGetErrorString(e));
    }
    return Status::Ok();
  }

  model::ModelConfig config_;  // owned copy: the forward keeps a reference
  CudaDeviceInfo info_;
  std::vector<int32_t> lengths_;
  std::unique_ptr<cuda::DeviceWeights> weights_;
  std::unique_ptr<cuda::CudaForward> forward_;
};

}  // namespace

Result<std::unique_ptr<Backend>> MakeCudaBackend(const model::ModelConfig& config, const ModelWeights& weights,
                                                 const CudaBackendOptions& options) {
  CudaDeviceInfo info = QueryCudaDevice(options.device_index);
  if (!info.available) return Error(StatusCode::kUnavailable, "cuda: {}", info.why);
  if (options.n_seq <= 0) return Error(StatusCode::kInvalidArgument, "cuda: n_seq {} must be positive", options.n_seq);
  int32_t n_ctx = options.n_ctx;
  if (n_ctx <= 0) n_ctx = static_cast<int32_t>(std::min<uint32_t>(config.n_ctx_train ? config.n_ctx_train : 4096, 4096));
  const cudaError_t e = cudaSetDevice(options.device_index);
  if (e != cudaSuccess) {
    return Error(StatusCode::kUnavailable, "cuda: cudaSetDevice({}): {}", options.device_index, cudaGetErrorString(e));
  }
  auto b = std::make_unique<CudaBackend>(config, std::move(info), options.n_seq);
  if (Status s = b->Init(weights, options, n_ctx); !s.ok()) return s;
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace qwenmux::runtime
