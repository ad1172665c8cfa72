#include "runtime/cuda/cuda_weights.h"

#include <fmt/format.h>

#include "kernels/matmul.h"

#include <algorithm>
#include <cstring>

namespace qwenmux::runtime::cuda {

static_assert(static_cast<uint32_t>(DType::kQ8_0) == static_cast<uint32_t>(gguf::TensorType::kQ8_0));
static_assert(static_cast<uint32_t>(DType::kQ4_0) == static_cast<uint32_t>(gguf::TensorType::kQ4_0));
static_assert(static_cast<uint32_t>(DType::kQ4_K) == static_cast<uint32_t>(gguf::TensorType::kQ4_K));
static_assert(static_cast<uint32_t>(DType::kQ5_K) == static_cast<uint32_t>(gguf::TensorType::kQ5_K));
static_assert(static_cast<uint32_t>(DType::kQ6_K) == static_cast<uint32_t>(gguf::TensorType::kQ6_K));
static_assert(static_cast<uint32_t>(DType::kF16) == static_cast<uint32_t>(gguf::TensorType::kF16));
static_assert(static_cast<uint32_t>(DType::kBF16) == static_cast<uint32_t>(gguf::TensorType::kBF16));
static_assert(static_cast<uint32_t>(DType::kF32) == static_cast<uint32_t>(gguf::TensorType::kF32));

Result<DType> ToDType(gguf::TensorType t, int64_t cols, const std::string& tensor) {
  // The CPU engine's type set (kernels::MatMulSupports) is the CUDA kernels' too.
  if (!kernels::MatMulSupports(t)) {
    return Error(StatusCode::kUnsupported, "cuda: tensor {}: type {} has no CUDA kernel", tensor,
                 static_cast<uint32_t>(t));
  }
  const DType d = static_cast<DType>(static_cast<uint32_t>(t));
  if (!DeviceSupports(d, cols)) {
    return Error(StatusCode::kUnsupported, "cuda: tensor {}: {} columns are not a multiple of the kernels' unit",
                 tensor, cols);
  }
  return d;
}

namespace {

std::string CudaWhy(cudaError_t e) { return fmt::format("{} ({})", cudaGetErrorString(e), cudaGetErrorName(e)); }

}  // namespace

// Copies tensors to the device a chunk of rows at a time through two pinned staging buffers:
// the host copy of chunk i+1 overlaps the DMA and repack of chunk i.
class Uploader {
 public:
  static constexpr size_t kStage = 32u << 20;

  explicit Uploader(DeviceWeights* w) : w_(w) {}
  ~Uploader() {
    if (stream_) cudaStreamSynchronize(stream_);
    for (int i = 0; i < 2; ++i) {
      if (pinned_[i]) cudaFreeHost(pinned_[i]);
      if (raw_[i]) cudaFree(raw_[i]);
      if (done_[i]) cudaEventDestroy(done_[i]);
    }
    if (stream_) cudaStreamDestroy(stream_);
  }

  Status Init() {
    cudaError_t e = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
    for (int i = 0; i < 2 && e == cudaSuccess; ++i) {
      e = cudaHostAlloc(&pinned_[i], kStage, cudaHostAllocDefault);
      if (e == cudaSuccess) e = cudaMalloc(&raw_[i], kStage);
      if (e == cudaSuccess) e = cudaEventCreateWithFlags(&done_[i], cudaEventDisableTiming);
    }
    if (e != cudaSuccess) return Error(StatusCode::kResourceExhausted, "cuda: upload staging: {}", CudaWhy(e));
    return Status::Ok();
  }

  Result<void*> Alloc(size_t bytes, const std::string& tensor) {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 256));
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      return Error(StatusCode::kResourceExhausted,
                   "cuda: out of device memory uploading {} ({:.1f} MiB; {:.1f} MiB free of {:.1f} MiB): {}", tensor,
                   bytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0, CudaWhy(e));
    }
    w_->allocs_.push_back(p);
    w_->bytes_ += bytes;
    return p;
  }

  Result<const float*> Vector(const std::vector<float>& v, const std::string& tensor) {
    auto p = Alloc(v.size() * sizeof(float), tensor);
    if (!p.ok()) return p.status();
    const cudaError_t e = cudaMemcpy(*p, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice);
    if (e != cudaSuccess) return Error(StatusCode::kInternal, "cuda: copying {}: {}", tensor, CudaWhy(e));
    return static_cast<const float*>(*p);
  }

  Result<DevMatrix> Matrix(const WeightView& v, const std::string& tensor) {
    DevMatrix m;
    if (v.data == nullptr || v.rows == 0) return m;  // absent (dense vs MoE tensors)
    auto dt = ToDType(v.type, v.cols, tensor);
    if (!dt.ok()) return dt.status();
    m.type = *dt;
    m.rows = v.rows;
    m.cols = v.cols;
    auto base = Alloc(DevMatrixBytes(m.type, m.rows, m.cols), tensor);
    if (!base.ok()) return base.status();
    SetPlanes(m, static_cast<uint8_t*>(*base));
    const int64_t chunk_rows = std::max<int64_t>(1, static_cast<int64_t>(kStage / v.row_bytes));
    if (v.row_bytes > kStage) {
      return Error(StatusCode::kUnsupported, "cuda: tensor {}: a row of {} bytes exceeds the staging buffer", tensor,
                   v.row_bytes);
    }
    for (int64_t r0 = 0; r0 < v.rows; r0 += chunk_rows) {
      const int64_t nr = std::min(chunk_rows, v.rows - r0);
      const size_t bytes = static_cast<size_t>(nr) * v.row_bytes;
      const int b = slot_;
      slot_ ^= 1;
      cudaError_t e = cudaEventSynchronize(done_[b]);  // the copy that last used this buffer is over
      if (e == cudaSuccess) {
        std::memcpy(pinned_[b], v.data + static_cast<size_t>(r0) * v.row_bytes, bytes);
        e = cudaMemcpyAsync(raw_[b], pinned_[b], bytes, cudaMemcpyHostToDevice, stream_);
      }
      if (e == cudaSuccess) e = LaunchRepack(m, static_cast<const uint8_t*>(raw_[b]), r0, nr, stream_);
      if (e == cudaSuccess) e = cudaEventRecord(done_[b], stream_);
      if (e != cudaSuccess) return Error(StatusCode::kInternal, "cuda: uploading {}: {}", tensor, CudaWhy(e));
    }
    return m;
  }

  Status Finish() {
    const cudaError_t e = cudaStreamSynchronize(stream_);
    if (e != cudaSuccess) return Error(StatusCode::kInternal, "cuda: weight upload: {}", CudaWhy(e));
    return Status::Ok();
  }

 private:
  DeviceWeights* w_;
  cudaStream_t stream_ = nullptr;
  void* pinned_[2] = {nullptr, nullptr};
  void* raw_[2] = {nullptr, nullptr};
  cudaEvent_t done_[2] = {nullptr, nullptr};
  int slot_ = 0;
};

DeviceWeights::~DeviceWeights() {
  for (void* p : allocs_) cudaFree(p);
}

Result<std::unique_ptr<DeviceWeights>> DeviceWeights::Upload(const model::ModelConfig& c, const ModelWeights& w) {
  std::unique_ptr<DeviceWeights> d(new DeviceWeights());
  Uploader up(d.get());
  if (Status s = up.Init(); !s.ok()) return s;
#define QWENMUX_UP(dst, expr)          \
  do {                                 \
    auto r_ = (expr);                  \
    if (!r_.ok()) return r_.status();  \
    dst = *r_;                         \
  } while (0)
  QWENMUX_UP(d->token_embd, up.Matrix(w.token_embd, "token_embd.weight"));
  if (w.output.data == w.token_embd.data) {
    d->output = d->token_embd;
  } else {
    QWENMUX_UP(d->output, up.Matrix(w.output, "output.weight"));
  }
  QWENMUX_UP(d->output_norm, up.Vector(w.output_norm, "output_norm.weight"));
  d->layers.resize(w.layers.size());
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& l = w.layers[i];
    DevLayer& o = d->layers[i];
    auto name = [&](const char* t) { return fmt::format("blk.{}.{}.weight", i, t); };
    QWENMUX_UP(o.attn_norm, up.Vector(l.attn_norm, name("attn_norm")));
    QWENMUX_UP(o.q_norm, up.Vector(l.q_norm, name("attn_q_norm")));
    QWENMUX_UP(o.k_norm, up.Vector(l.k_norm, name("attn_k_norm")));
    QWENMUX_UP(o.ffn_norm, up.Vector(l.ffn_norm, name("ffn_norm")));
    QWENMUX_UP(o.attn_q, up.Matrix(l.attn_q, name("attn_q")));
    QWENMUX_UP(o.attn_k, up.Matrix(l.attn_k, name("attn_k")));
    QWENMUX_UP(o.attn_v, up.Matrix(l.attn_v, name("attn_v")));
    QWENMUX_UP(o.attn_output, up.Matrix(l.attn_output, name("attn_output")));
    if (c.is_moe()) {
      QWENMUX_UP(o.ffn_gate_inp, up.Matrix(l.ffn_gate_inp, name("ffn_gate_inp")));
      QWENMUX_UP(o.ffn_gate_exps, up.Matrix(l.ffn_gate_exps, name("ffn_gate_exps")));
      QWENMUX_UP(o.ffn_up_exps, up.Matrix(l.ffn_up_exps, name("ffn_up_exps")));
      QWENMUX_UP(o.ffn_down_exps, up.Matrix(l.ffn_down_exps, name("ffn_down_exps")));
    } else {
      QWENMUX_UP(o.ffn_gate, up.Matrix(l.ffn_gate, name("ffn_gate")));
      QWENMUX_UP(o.ffn_up, up.Matrix(l.ffn_up, name("ffn_up")));
      QWENMUX_UP(o.ffn_down, up.Matrix(l.ffn_down, name("ffn_down")));
    }
  }
#undef QWENMUX_UP
  if (Status s = up.Finish(); !s.ok()) return s;
  return d;
}

}  // namespace qwenmux::runtime::cuda
