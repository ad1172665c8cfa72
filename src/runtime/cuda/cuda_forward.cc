#include "runtime/cuda/cuda_forward.h"
#include "runtime/forward.h"  // RopeFrequencies

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <numeric>

namespace qwenmux::runtime::cuda {

namespace {

std::string CudaWhy(cudaError_t e) { return fmt::format("{} ({})", cudaGetErrorString(e), cudaGetErrorName(e)); }

Status KernelStatus(cudaError_t e, const char* kernel) {
  if (e == cudaSuccess) return Status::Ok();
  cudaGetLastError();
  return Error(StatusCode::kInternal, "cuda: kernel {} failed: {}", kernel, CudaWhy(e));
}

#define QWENMUX_TRY(expr)              \
  do {                                 \
    if (Status s_ = (expr); !s_.ok()) return s_; \
  } while (0)
#define QWENMUX_KERNEL(call, name) QWENMUX_TRY(KernelStatus((call), name))

struct ProfileTotals {
  std::mutex mu;
  std::map<std::string, std::pair<double, int64_t>> steps;  // label -> (ms, calls)
};
ProfileTotals& Profile() {
  static ProfileTotals p;
  return p;
}

}  // namespace

std::string CudaForward::ProfileJson() {
  ProfileTotals& p = Profile();
  std::lock_guard lk(p.mu);
  std::string out = "{";
  for (const auto& [label, v] : p.steps) {
    out += fmt::format("{}\"{}\": {{\"ms\": {:.3f}, \"calls\": {}}}", out.size() > 1 ? ", " : "", label, v.first,
                       v.second);
  }
  return out + "}";
}

void CudaForward::ProfileReset() {
  ProfileTotals& p = Profile();
  std::lock_guard lk(p.mu);
  p.steps.clear();
}

void CudaForward::Mark(const char* label) {
  if (!profile_) return;
  const size_t i = marks_.size() + 1;
  if (events_.size() <= i) {
    events_.resize(i + 1, nullptr);
  }
  for (size_t j = 0; j <= i; ++j) {
    if (!events_[j]) cudaEventCreate(&events_[j]);
  }
  if (marks_.empty()) cudaEventRecord(events_[0], stream_);
  cudaEventRecord(events_[i], stream_);
  marks_.push_back(label);
}

void CudaForward::CollectProfile() {
  if (!profile_ || marks_.empty()) return;
  cudaEventSynchronize(events_[marks_.size()]);
  ProfileTotals& p = Profile();
  std::lock_guard lk(p.mu);
  for (size_t i = 0; i < marks_.size(); ++i) {
    float ms = 0;
    cudaEventElapsedTime(&ms, events_[i], events_[i + 1]);
    auto& v = p.steps[marks_[i]];
    v.first += ms;
    v.second += 1;
  }
  marks_.clear();
}

Status CudaForward::Alloc(void** p, size_t bytes, const char* what) {
  const cudaError_t e = cudaMalloc(p, std::max<size_t>(bytes, 256));
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    return Error(StatusCode::kResourceExhausted, "cuda: out of device memory for {} ({:.1f} MiB; {:.1f} MiB free): {}",
                 what, bytes / 1048576.0, free_b / 1048576.0, CudaWhy(e));
  }
  allocs_.push_back(*p);
  bytes_ += bytes;
  return Status::Ok();
}

CudaForward::~CudaForward() {
  if (stream_) cudaStreamSynchronize(stream_);
  for (cudaGraphExec_t g : graph_exec_) {
    if (g) cudaGraphExecDestroy(g);
  }
  if (h_top_) cudaFreeHost(h_top_);
  for (cudaEvent_t ev : events_) {
    if (ev) cudaEventDestroy(ev);
  }
  if (h_logits_) cudaFreeHost(h_logits_);
  for (void* p : allocs_) cudaFree(p);
  if (h_batch_) cudaFreeHost(h_batch_);
  if (h_blocks_) cudaFreeHost(h_blocks_);
  if (stream_) cudaStreamDestroy(stream_);
}

Result<std::unique_ptr<CudaForward>> CudaForward::Create(const model::ModelConfig& c, const DeviceWeights& w,
                                                         int32_t n_ctx, int32_t n_seq, int32_t n_batch,
                                                         int32_t kv_blocks) {
  if (c.head_dim != 128) {
    return Error(StatusCode::kUnsupported, "cuda: head_dim {} (the attention kernels need 128)", c.head_dim);
  }
  if (n_ctx <= 0 || n_seq <= 0 || n_batch <= 0) {
    return Error(StatusCode::kInvalidArgument, "cuda: n_ctx {}, n_seq {}, n_batch {} must be positive", n_ctx, n_seq,
                 n_batch);
  }
  std::unique_ptr<CudaForward> f(new CudaForward(c, w));
  f->n_ctx_ = n_ctx;
  f->n_seq_ = n_seq;
  f->n_batch_ = n_batch;
  cudaError_t e = cudaStreamCreateWithFlags(&f->stream_, cudaStreamNonBlocking);
  if (e != cudaSuccess) return Error(StatusCode::kInternal, "cuda: stream: {}", CudaWhy(e));
  e = cudaHostAlloc(reinterpret_cast<void**>(&f->h_batch_), sizeof(int32_t) * 6 * n_batch, cudaHostAllocDefault);
  if (e != cudaSuccess) return Error(StatusCode::kResourceExhausted, "cuda: pinned batch buffer: {}", CudaWhy(e));

  const size_t E = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), nb = static_cast<size_t>(n_batch);
  const size_t ff = c.is_moe() ? c.n_ff_exp : c.n_ff;
  // The KV cache in blocks of kKvBlock positions, handed to sequences as they reach them.
  f->max_blocks_ = (n_ctx + kKvBlock - 1) / kKvBlock;
  f->n_blocks_ = kv_blocks > 0 ? kv_blocks : n_seq * f->max_blocks_;
  const size_t kv_elems = static_cast<size_t>(c.n_layer) * f->n_blocks_ * kvd * kKvBlock;
  auto alloc = [&](auto** p, size_t bytes, const char* what) {
    return f->Alloc(reinterpret_cast<void**>(p), bytes, what);
  };
  QWENMUX_TRY(alloc(&f->k_cache_, kv_elems * 2, "the KV cache (keys)"));
  QWENMUX_TRY(alloc(&f->v_cache_, kv_elems * 2, "the KV cache (values)"));
  f->kv_bytes_ = kv_elems * 4;
  const size_t table = static_cast<size_t>(n_seq) * f->max_blocks_;
  QWENMUX_TRY(alloc(&f->d_blocks_, table * 4, "the KV block table"));
  e = cudaHostAlloc(reinterpret_cast<void**>(&f->h_blocks_), table * 4, cudaHostAllocDefault);
  if (e != cudaSuccess) return Error(StatusCode::kResourceExhausted, "cuda: pinned KV block table: {}", CudaWhy(e));
  std::fill(f->h_blocks_, f->h_blocks_ + table, -1);
  f->free_blocks_.resize(static_cast<size_t>(f->n_blocks_));
  for (int32_t b = 0; b < f->n_blocks_; ++b) f->free_blocks_[static_cast<size_t>(b)] = f->n_blocks_ - 1 - b;
  f->blocks_dirty_ = true;
  QWENMUX_TRY(alloc(&f->d_tok_, nb * 4, "batch tokens"));
  QWENMUX_TRY(alloc(&f->d_pos_, nb * 4, "batch positions"));
  QWENMUX_TRY(alloc(&f->d_seq_, nb * 4, "batch sequences"));
  QWENMUX_TRY(alloc(&f->d_rows_, nb * 4, "output rows"));
  QWENMUX_TRY(alloc(&f->d_tiles_, nb * 8, "attention tiles"));
  QWENMUX_TRY(alloc(&f->x_, nb * E * 4, "activations x"));
  QWENMUX_TRY(alloc(&f->a_, nb * E * 4, "activations a"));
  QWENMUX_TRY(alloc(&f->q_, nb * qd * 4, "activations q"));
  QWENMUX_TRY(alloc(&f->attn_, nb * qd * 4, "activations attn"));
  QWENMUX_TRY(alloc(&f->k_, nb * kvd * 4, "activations k"));
  QWENMUX_TRY(alloc(&f->v_, nb * kvd * 4, "activations v"));
  QWENMUX_TRY(alloc(&f->gate_, nb * ff * 4, "activations gate"));
  QWENMUX_TRY(alloc(&f->up_, nb * ff * 4, "activations up"));
  QWENMUX_TRY(alloc(&f->logits_, static_cast<size_t>(std::min<int64_t>(kOutRows, n_batch)) * c.n_vocab * 4, "logits"));
  // Split-KV attention for steps of at most kMatVecMaxTokens tokens, in chunks fixed per forward
  // (at most 64 of them over the context): a token's result does not depend on its batch.
  f->attn_chunk_ = std::max<int32_t>(32, (n_ctx + 63) / 64 + 31) / 32 * 32;
  f->partial_floats_ = AttentionScratchFloats(std::min<int64_t>(kMatVecMaxTokens, n_batch),
                                              static_cast<int32_t>(c.n_head), n_ctx, f->attn_chunk_);
  QWENMUX_TRY(alloc(&f->partial_, f->partial_floats_ * 4, "attention scratch"));
  {
    const char* mv = std::getenv("QWENMUX_CUDA_MATVEC");  // perunit / lane8: the f32 kernels
    f->int8_ = !(mv && (std::strcmp(mv, "perunit") == 0 || std::strcmp(mv, "lane8") == 0));
    const size_t rows = static_cast<size_t>(std::min<int64_t>(kMatVecMaxTokens, n_batch));
    f->xq_.ld = static_cast<int64_t>((std::max({E, qd, ff}) + 31) / 32 * 32);
    QWENMUX_TRY(alloc(&f->xq_.q, rows * f->xq_.ld, "8-bit activations"));
    QWENMUX_TRY(alloc(&f->xq_.ds, rows * (f->xq_.ld / 32) * 8, "8-bit activation scales"));
  }
  if (c.is_moe()) {
    QWENMUX_TRY(alloc(&f->router_, nb * c.n_expert * 4, "router logits"));
    QWENMUX_TRY(alloc(&f->moe_in_, nb * E * 4, "expert inputs"));
    QWENMUX_TRY(alloc(&f->moe_out_, nb * E * 4, "expert outputs"));
    QWENMUX_TRY(alloc(&f->d_route_idx_, nb * c.n_expert_used * 4, "routing indices"));
    QWENMUX_TRY(alloc(&f->d_route_w_, nb * c.n_expert_used * 4, "routing weights"));
  }
  if (n_batch > kMatVecMaxTokens) {
    const size_t max_cols = std::max({E, qd, ff});
    QWENMUX_TRY(alloc(&f->xh_, nb * max_cols * 2, "GEMM activations"));
    // The largest matrix of the model, capped at 64 Mi elements (the LM head goes in slices).
    int64_t biggest = 0;
    auto see = [&](const DevMatrix& m) {
      if (m.type != DType::kF16 && m.type != DType::kBF16) biggest = std::max(biggest, m.rows * m.cols);
    };
    see(w.output);
    for (const DevLayer& l : w.layers) {
      for (const DevMatrix* m : {&l.attn_q, &l.attn_k, &l.attn_v, &l.attn_output, &l.ffn_gate, &l.ffn_up, &l.ffn_down}) see(*m);
      if (c.is_moe()) {
        see(l.ffn_gate_exps.Slice(0, c.n_ff_exp));
        see(l.ffn_down_exps.Slice(0, c.n_embd));
      }
    }
    std::string why;
    f->blas_ = Blas::Create(f->stream_, &why);
    f->gemm_name_ = f->blas_ ? fmt::format("cublas {}", f->blas_->version()) : fmt::format("own ({})", why);
    f->wh_elems_ = std::min<int64_t>(biggest, int64_t{64} << 20);
    if (f->wh_elems_ > 0) QWENMUX_TRY(alloc(&f->wh_, static_cast<size_t>(f->wh_elems_) * 2, "GEMM weight slice"));
  }
  float mscale = 1.0f;
  const std::vector<float> freq = RopeFrequencies(c, &mscale);
  f->rope_mscale_ = mscale;
  QWENMUX_TRY(alloc(&f->rope_freq_, freq.size() * 4, "RoPE frequencies"));
  e = cudaMemcpy(f->rope_freq_, freq.data(), freq.size() * 4, cudaMemcpyHostToDevice);
  if (e != cudaSuccess) return Error(StatusCode::kInternal, "cuda: RoPE frequencies: {}", CudaWhy(e));
  f->h_router_.resize(c.is_moe() ? nb * c.n_expert : 0);
  const char* g = std::getenv("QWENMUX_CUDA_GRAPHS");
  const char* prof = std::getenv("QWENMUX_CUDA_PROFILE");
  const char* flash = std::getenv("QWENMUX_CUDA_FLASH");
  f->flash_ = !(flash && std::strcmp(flash, "0") == 0);
  f->profile_ = prof && std::strcmp(prof, "1") == 0;
  // MoE decode steps run as graphs where every layer routes on the device (no host sync).
  bool moe_graph = true;
  for (const DevLayer& l : w.layers) moe_graph = moe_graph && (!c.is_moe() || f->MoeOnDevice(l, 1));
  f->graphs_ = moe_graph && !f->profile_ && !(g && std::strcmp(g, "0") == 0);
  if (f->graphs_) {
    e = cudaHostAlloc(reinterpret_cast<void**>(&f->h_logits_), sizeof(float) * c.n_vocab, cudaHostAllocDefault);
    if (e != cudaSuccess) return Error(StatusCode::kResourceExhausted, "cuda: pinned logits buffer: {}", CudaWhy(e));
  }
  if (c.n_vocab >= kDevTop && TopLogitsScratchWords(1, c.n_vocab) <= 4096) {
    const int64_t rows = std::min<int64_t>(kOutRows, n_batch);
    QWENMUX_TRY(alloc(&f->top_scratch_, TopLogitsScratchWords(rows, c.n_vocab) * 8, "top-list scratch"));
    QWENMUX_TRY(alloc(&f->d_top_, nb * kDevTop * sizeof(DevTop), "top lists"));
    e = cudaHostAlloc(reinterpret_cast<void**>(&f->h_top_), nb * kDevTop * sizeof(DevTop), cudaHostAllocDefault);
    if (e != cudaSuccess) return Error(StatusCode::kResourceExhausted, "cuda: pinned top lists: {}", CudaWhy(e));
  }
  return f;
}

KvLayer CudaForward::Kv(int32_t layer) const {
  const size_t per_layer = static_cast<size_t>(n_blocks_) * c_.kv_dim() * kKvBlock;
  KvLayer kv;
  kv.k = k_cache_ + per_layer * layer;
  kv.v = v_cache_ + per_layer * layer;
  kv.blocks = d_blocks_;
  kv.max_blocks = max_blocks_;
  kv.n_head_kv = static_cast<int32_t>(c_.n_head_kv);
  return kv;
}

Status CudaForward::EnsureKvBlocks(std::span<const BatchEntry> batch) {
  for (const BatchEntry& e : batch) {
    int32_t* row = h_blocks_ + static_cast<size_t>(e.seq) * max_blocks_;
    for (int32_t b = e.pos / kKvBlock; b >= 0 && row[b] < 0; --b) {
      if (free_blocks_.empty()) {
        return Error(StatusCode::kResourceExhausted,
                     "cuda: the KV cache is full: all {} blocks of {} positions are in use (sequence {} needs one "
                     "for position {})",
                     n_blocks_, kKvBlock, e.seq, e.pos);
      }
      row[b] = free_blocks_.back();
      free_blocks_.pop_back();
      blocks_dirty_ = true;
    }
  }
  if (!blocks_dirty_) return Status::Ok();
  const cudaError_t err = cudaMemcpyAsync(d_blocks_, h_blocks_, static_cast<size_t>(n_seq_) * max_blocks_ * 4,
                                          cudaMemcpyHostToDevice, stream_);
  if (err != cudaSuccess) return KernelStatus(err, "KV block table upload");
  blocks_dirty_ = false;
  return Status::Ok();
}

void CudaForward::TrimKv(int32_t seq, int32_t n) {
  if (seq < 0 || seq >= n_seq_) return;
  int32_t* row = h_blocks_ + static_cast<size_t>(seq) * max_blocks_;
  for (int32_t b = std::max(0, (n + kKvBlock - 1) / kKvBlock); b < max_blocks_; ++b) {
    if (row[b] < 0) continue;
    free_blocks_.push_back(row[b]);
    row[b] = -1;
    blocks_dirty_ = true;
  }
}

const QActs* CudaForward::Int8Out(const float* y, int64_t n, int64_t cols) {
  xq_of_ = nullptr;
  if (!int8_ || n > kMatVecMaxTokens || cols % 32 != 0 || cols > xq_.ld) return nullptr;
  xq_of_ = y, xq_n_ = n, xq_cols_ = cols;
  return &xq_;
}

Status CudaForward::QuantizeActs(const float* x, int64_t n, int64_t cols) {
  if (const QActs* q = Int8Out(x, n, cols)) {
    QWENMUX_KERNEL(LaunchQuantizeActs(x, cols, n, cols, *q, stream_), "quantize_acts");
  }
  return Status::Ok();
}

// y[t, :] (+)= W x[t, :]; x has row stride w.cols.
Status CudaForward::MatMul(const DevMatrix& w, const float* x, float* y, int64_t ldy, int64_t n, bool accumulate,
                           Src src) {
  if (src == Src::kInt8 && xq_of_ == x && xq_n_ == n && xq_cols_ == w.cols && MatVecQ8Supports(w.type)) {
    return KernelStatus(LaunchMatVecQ8(w, xq_, y, ldy, n, accumulate, stream_), "matvec_q8");
  }
  if (n <= kMatVecMaxTokens || xh_ == nullptr || src == Src::kExact) {
    return KernelStatus(LaunchMatVec(w, x, w.cols, y, ldy, n, accumulate, stream_), "matvec");
  }
  const bool bf16 = w.type == DType::kBF16;
  QWENMUX_KERNEL(LaunchToHalf(x, xh_, n * w.cols, bf16, stream_), "to_half");
  // y[:, r0 .. r0 + nr) (+)= x W[r0 .. r0 + nr, :]^T with W's rows in half precision at wp.
  auto gemm = [&](const uint16_t* wp, int64_t r0, int64_t nr, bool half_bf16) -> Status {
    if (blas_ && blas_->Gemm(xh_, w.cols, wp, w.cols, y + r0, ldy, n, nr, w.cols, accumulate, half_bf16)) {
      return Status::Ok();
    }
    return KernelStatus(LaunchGemm(xh_, w.cols, wp, w.cols, y + r0, ldy, n, nr, w.cols, accumulate, half_bf16, stream_),
                        "gemm");
  };
  if (w.type == DType::kF16 || w.type == DType::kBF16) {
    return gemm(reinterpret_cast<const uint16_t*>(w.qs), 0, w.rows, bf16);
  }
  const int64_t chunk = std::max<int64_t>(1, wh_elems_ / w.cols);
  for (int64_t r0 = 0; r0 < w.rows; r0 += chunk) {
    const int64_t nr = std::min(chunk, w.rows - r0);
    QWENMUX_KERNEL(LaunchDequantize(w, r0, nr, wh_, false, stream_), "dequantize");
    QWENMUX_TRY(gemm(wh_, r0, nr, false));
  }
  return Status::Ok();
}

Status CudaForward::MatMulShared(std::span<const MatVecOut> outs, const float* x, int64_t n) {
  for (size_t i = 0; i < outs.size();) {
    const DevMatrix& w = *outs[i].w;
    if (!(xq_of_ == x && xq_n_ == n && xq_cols_ == w.cols && MatVecQ8Supports(w.type))) {
      QWENMUX_TRY(MatMul(w, x, outs[i].y, outs[i].ldy, n, false, Src::kInt8));
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < outs.size() && j - i < 3 && outs[j].w->type == w.type && outs[j].w->cols == w.cols) ++j;
    QWENMUX_KERNEL(LaunchMatVecQ8Group(outs.data() + i, static_cast<int>(j - i), xq_, n, false, stream_),
                   "matvec_q8");
    i = j;
  }
  return Status::Ok();
}

Status CudaForward::RmsNormRows(const float* x, const float* w, float* y, int64_t n, int64_t dim, const int32_t* rows,
                                bool int8) {
  const QActs* q = int8 ? Int8Out(y, n, dim) : nullptr;
  return KernelStatus(LaunchRmsNorm(x, w, y, n, dim, c_.rms_eps, rows, stream_, q), "rms_norm");
}

Status CudaForward::QkNormRope(int64_t n, const DevLayer& l, int32_t layer) {
  return KernelStatus(LaunchQkNormRopeKv(q_, k_, v_, n, static_cast<int32_t>(c_.n_head), l.q_norm, l.k_norm,
                                         c_.rms_eps, rope_freq_, rope_mscale_, d_pos_, d_seq_, Kv(layer), stream_),
                      "qk_norm_rope_kv");
}

Status CudaForward::Attention(int64_t n, int32_t layer, int32_t max_len) {
  const int32_t chunk = n <= kMatVecMaxTokens ? attn_chunk_ : 0;
  if (chunk == 0 && n_tiles_ > 0) {
    return KernelStatus(LaunchFlashPrefill(q_, static_cast<int32_t>(c_.n_head), d_pos_, d_seq_, d_tiles_, n_tiles_,
                                           Kv(layer), attn_, stream_),
                        "flash attention");
  }
  if (AttentionScratchFloats(n, static_cast<int32_t>(c_.n_head), max_len, chunk) > partial_floats_) {
    return Error(StatusCode::kInternal, "cuda: attention scratch too small");
  }
  const QActs* oq = chunk > 0 ? Int8Out(attn_, n, c_.q_dim()) : nullptr;  // for attn_output
  return KernelStatus(LaunchAttention(q_, n, static_cast<int32_t>(c_.n_head), d_pos_, d_seq_, max_len, chunk,
                                      Kv(layer), partial_, attn_, stream_, oq),
                      "attention");
}

Status CudaForward::LoraDelta(int32_t layer, LoraTarget target, const float* x, int64_t in, float* y, int64_t ldy,
                              int64_t out, int64_t n) {
  if (!lora_on_) return Status::Ok();
  const int32_t entry = layer * kLoraTargets + static_cast<int32_t>(target);
  return KernelStatus(LaunchLoraDelta(lora_step_, entry, x, in, in, y, ldy, out, n, lora_mid_, stream_), "lora_delta");
}

// x += down(silu(gate a) * up a)
Status CudaForward::DenseFfn(const DevLayer& l, int32_t layer, int64_t n) {
  const int64_t ff = c_.n_ff;
  const MatVecOut gate_up[] = {{&l.ffn_gate, gate_, ff}, {&l.ffn_up, up_, ff}};  // [n, n_ff] each
  QWENMUX_TRY(MatMulShared(gate_up, a_, n));
  QWENMUX_TRY(LoraDelta(layer, LoraTarget::kFfnGate, a_, c_.n_embd, gate_, ff, ff, n));
  QWENMUX_TRY(LoraDelta(layer, LoraTarget::kFfnUp, a_, c_.n_embd, up_, ff, ff, n));
  Mark("ffn_gate_up");
  QWENMUX_KERNEL(LaunchSwiGlu(gate_, up_, gate_, n * ff, stream_, ff, Int8Out(gate_, n, ff)), "swiglu");
  Mark("swiglu");
  QWENMUX_TRY(MatMul(l.ffn_down, gate_, x_, c_.n_embd, n, true, Src::kInt8));  // x += [n, n_embd]
  QWENMUX_TRY(LoraDelta(layer, LoraTarget::kFfnDown, gate_, ff, x_, c_.n_embd, c_.n_embd, n));
  Mark("ffn_down");
  return Status::Ok();
}

bool CudaForward::MoeOnDevice(const DevLayer& l, int64_t n) const {
  const int64_t slots = n * c_.n_expert_used, ff = c_.n_ff_exp;
  return int8_ && slots <= std::min<int64_t>(kMatVecMaxTokens, n_batch_) && c_.n_expert <= kMaxDeviceExperts &&
         c_.n_expert_used <= 32 && ff % 32 == 0 && ff <= xq_.ld && c_.n_embd <= xq_.ld &&
         MatVecQ8Supports(l.ffn_gate_exps.type) && MatVecQ8Supports(l.ffn_up_exps.type) &&
         MatVecQ8Supports(l.ffn_down_exps.type);
}

// Decode-sized steps (MoeOnDevice): the router, the choice of experts and the weighted sum all on
// the device, each (token, choice) slot one row of the expert kernels: no sync with the host.
Status CudaForward::MoeFfnOnDevice(const DevLayer& l, int64_t n) {
  const int64_t E = c_.n_embd, ne = c_.n_expert, k = c_.n_expert_used, ff = c_.n_ff_exp, slots = n * k;
  if (!(xq_of_ == a_ && xq_n_ == n && xq_cols_ == E)) return Error(StatusCode::kInternal, "cuda: moe input not quantized");
  QWENMUX_TRY(MatMul(l.ffn_gate_inp, a_, router_, ne, n, false, Src::kExact));  // [n, n_expert]
  QWENMUX_KERNEL(LaunchMoeRoute(router_, n, static_cast<int>(ne), static_cast<int>(k), d_route_idx_, d_route_w_,
                                stream_), "moe route");
  // gate, up [slots, n_ff_exp] from the 8-bit a (the router read a in f32; xq_ still holds a).
  const QActs xa = xq_;
  QWENMUX_KERNEL(LaunchMatVecQ8Experts(l.ffn_gate_exps, ff, xa, d_route_idx_, slots, static_cast<int>(k), gate_, ff,
                                       stream_), "moe gate");
  QWENMUX_KERNEL(LaunchMatVecQ8Experts(l.ffn_up_exps, ff, xa, d_route_idx_, slots, static_cast<int>(k), up_, ff,
                                       stream_), "moe up");
  QWENMUX_KERNEL(LaunchSwiGlu(gate_, up_, gate_, slots * ff, stream_, ff, Int8Out(gate_, slots, ff)), "swiglu");
  QWENMUX_KERNEL(LaunchMatVecQ8Experts(l.ffn_down_exps, E, xq_, d_route_idx_, slots, 1, moe_out_, E, stream_),
                 "moe down");  // [slots, n_embd]
  QWENMUX_KERNEL(LaunchMoeCombine(moe_out_, d_route_w_, n, static_cast<int>(k), E, x_, stream_), "moe combine");
  return Status::Ok();
}

// Sparse MoE: router on the device, softmax / top-k / renormalise on the host exactly as
// runtime/forward.cc does, then each selected expert on its tokens, added into x with the
// token's weight.
Status CudaForward::MoeFfn(const DevLayer& l, int64_t n) {
  if (MoeOnDevice(l, n)) return MoeFfnOnDevice(l, n);
  const int64_t E = c_.n_embd, ne = c_.n_expert, k = c_.n_expert_used, ff = c_.n_ff_exp;
  QWENMUX_TRY(MatMul(l.ffn_gate_inp, a_, router_, ne, n, false, Src::kExact));  // [n, n_expert]
  cudaError_t e = cudaMemcpyAsync(h_router_.data(), router_, sizeof(float) * n * ne, cudaMemcpyDeviceToHost, stream_);
  if (e == cudaSuccess) e = cudaStreamSynchronize(stream_);
  if (e != cudaSuccess) return KernelStatus(e, "moe router");
  std::vector<std::vector<std::pair<int32_t, float>>> routed(ne);
  std::vector<int64_t> order(ne);
  for (int64_t t = 0; t < n; ++t) {
    float* r = h_router_.data() + t * ne;
    const float mx = *std::max_element(r, r + ne);
    float sum = 0;
    for (int64_t x = 0; x < ne; ++x) sum += (r[x] = std::exp(r[x] - mx));
    for (int64_t x = 0; x < ne; ++x) r[x] /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int64_t a, int64_t b) { return r[a] > r[b] || (r[a] == r[b] && a < b); });
    float sel = 0;
    for (int64_t j = 0; j < k; ++j) sel += r[order[j]];
    for (int64_t j = 0; j < k; ++j) routed[order[j]].push_back({static_cast<int32_t>(t), r[order[j]] / sel});
  }
  std::vector<int32_t> idx;
  std::vector<float> wt;
  idx.reserve(n * k);
  wt.reserve(n * k);
  for (const auto& toks : routed) {
    for (const auto& [t, w] : toks) idx.push_back(t), wt.push_back(w);
  }
  e = cudaMemcpyAsync(d_route_idx_, idx.data(), idx.size() * 4, cudaMemcpyHostToDevice, stream_);
  if (e == cudaSuccess) e = cudaMemcpyAsync(d_route_w_, wt.data(), wt.size() * 4, cudaMemcpyHostToDevice, stream_);
  if (e != cudaSuccess) return KernelStatus(e, "moe routing upload");
  int64_t off = 0;
  for (int64_t x = 0; x < ne; ++x) {
    const int64_t m = static_cast<int64_t>(routed[x].size());
    if (m == 0) continue;
    QWENMUX_KERNEL(LaunchGatherRows(a_, d_route_idx_ + off, m, E, moe_in_, stream_), "moe gather");
    QWENMUX_TRY(QuantizeActs(moe_in_, m, E));
    QWENMUX_TRY(MatMul(l.ffn_gate_exps.Slice(x * ff, ff), moe_in_, gate_, ff, m, false, Src::kInt8));
    QWENMUX_TRY(MatMul(l.ffn_up_exps.Slice(x * ff, ff), moe_in_, up_, ff, m, false, Src::kInt8));
    QWENMUX_KERNEL(LaunchSwiGlu(gate_, up_, gate_, m * ff, stream_, ff, Int8Out(gate_, m, ff)), "swiglu");
    QWENMUX_TRY(MatMul(l.ffn_down_exps.Slice(x * E, E), gate_, moe_out_, E, m, false, Src::kInt8));
    QWENMUX_KERNEL(LaunchScatterAddRows(moe_out_, d_route_idx_ + off, d_route_w_ + off, m, E, x_, stream_),
                   "moe scatter");
    off += m;
  }
  // The host vectors are read by the copies above before they return (pageable memory).
  return Status::Ok();
}

static_assert(sizeof(DevTop) == sizeof(TopLogit) && offsetof(DevTop, logit) == offsetof(TopLogit, logit) &&
              offsetof(DevTop, token) == offsetof(TopLogit, token) && kDevTop == kMaxTopLogits);

Status CudaForward::Run(std::span<const BatchEntry> batch, float* out_logits, float* out_hidden, TopLogit* out_top,
                        int32_t top_k) {
  if (out_top && (!selects_top() || top_k < 1 || top_k > kDevTop || out_logits)) {
    return Error(StatusCode::kInvalidArgument, "cuda: top lists of {} logits{}", top_k,
                 selects_top() ? "" : " (not for this vocabulary size)");
  }
  for (const BatchEntry& e : batch) {
    if (e.token < 0 || e.token >= static_cast<int32_t>(c_.n_vocab)) {
      return Error(StatusCode::kInvalidArgument, "forward: token id {} out of range [0, {})", e.token, c_.n_vocab);
    }
    if (e.seq < 0 || e.seq >= n_seq_) {
      return Error(StatusCode::kInvalidArgument, "forward: sequence {} out of range [0, {})", e.seq, n_seq_);
    }
    if (e.pos < 0 || e.pos >= n_ctx_) {
      return Error(StatusCode::kOutOfRange, "forward: position {} is past the context size {}", e.pos, n_ctx_);
    }
  }
  Outputs out{out_logits, out_hidden, out_top, top_k, 0};
  for (size_t b = 0; b < batch.size(); b += static_cast<size_t>(n_batch_)) {
    const size_t len = std::min(batch.size() - b, static_cast<size_t>(n_batch_));
    QWENMUX_TRY(RunSlice(batch.subspan(b, len), out));
  }
  return Status::Ok();
}

Status CudaForward::RunSlice(std::span<const BatchEntry> batch, Outputs& out) {
  const int64_t n = static_cast<int64_t>(batch.size());
  if (n == 0) return Status::Ok();
  int32_t max_len = 0;
  int32_t* h = h_batch_;
  int64_t n_out = 0;
  for (int64_t t = 0; t < n; ++t) {
    h[t] = batch[t].token;
    h[n_batch_ + t] = batch[t].pos;
    h[2 * n_batch_ + t] = batch[t].seq;
    max_len = std::max(max_len, batch[t].pos + 1);
    if (batch[t].output) h[3 * n_batch_ + n_out++] = static_cast<int32_t>(t);
  }
  QWENMUX_TRY(EnsureKvBlocks(batch));  // before the (captured or not) step reads the table
  lora_on_ = false;
  for (const BatchEntry& e : batch) {
    if (e.lora != nullptr) {
      if (!loras_) loras_ = std::make_unique<DeviceLoras>();
      QWENMUX_TRY(loras_->Prepare(batch, static_cast<int32_t>(c_.n_layer), stream_, &lora_step_, &lora_mid_));
      lora_on_ = true;
      break;
    }
  }
  if (graphs_ && !lora_on_ && n == 1 && n_out == 1 && (out.logits || out.top) && !out.hidden) {
    QWENMUX_TRY(RunGraphStep(out));
    out.row += 1;
    return Status::Ok();
  }
  QWENMUX_TRY(EnqueueLayers(n, n_out, max_len));
  // Final norm and LM head for the output rows only, kOutRows at a time.
  for (int64_t g = 0; g < n_out; g += kOutRows) {
    QWENMUX_TRY(EnqueueOutputs(g, std::min<int64_t>(kOutRows, n_out - g), out, d_rows_ + g));
  }
  const cudaError_t e = cudaStreamSynchronize(stream_);
  if (e != cudaSuccess) return KernelStatus(e, "forward (stream sync)");
  CopyTopLists(out, n_out);
  out.row += n_out;
  CollectProfile();
  return Status::Ok();
}

Status CudaForward::EnqueueOutputs(int64_t g, int64_t m, const Outputs& out, const int32_t* rows) {
  const int64_t E = c_.n_embd, V = c_.n_vocab, row = out.row + g;
  const bool head = out.logits || out.top || out.pinned_logits;
  QWENMUX_TRY(RmsNormRows(x_, w_.output_norm, a_, m, E, rows, /*int8=*/head));
  cudaError_t e = cudaSuccess;
  if (out.hidden) {
    e = cudaMemcpyAsync(out.hidden + row * E, a_, m * E * 4, cudaMemcpyDeviceToHost, stream_);
    if (e != cudaSuccess) return KernelStatus(e, "hidden copy");
  }
  Mark("output_norm");
  if (!head) return Status::Ok();
  QWENMUX_TRY(MatMul(w_.output, a_, logits_, V, m, false, Src::kInt8));
  Mark("lm_head");
  if (out.top) {
    QWENMUX_KERNEL(LaunchTopLogits(logits_, V, m, V, top_scratch_, d_top_ + g * kDevTop, stream_), "top_logits");
    e = cudaMemcpyAsync(h_top_ + g * kDevTop, d_top_ + g * kDevTop, m * kDevTop * sizeof(DevTop),
                        cudaMemcpyDeviceToHost, stream_);
    if (e != cudaSuccess) return KernelStatus(e, "top-list copy");
    Mark("top_logits");
    return Status::Ok();
  }
  float* dst = out.pinned_logits ? h_logits_ : out.logits + row * V;
  e = cudaMemcpyAsync(dst, logits_, m * V * 4, cudaMemcpyDeviceToHost, stream_);
  if (e != cudaSuccess) return KernelStatus(e, "logits copy");
  Mark("logits_copy");
  return Status::Ok();
}

void CudaForward::CopyTopLists(const Outputs& out, int64_t n_out) const {
  if (!out.top) return;
  for (int64_t r = 0; r < n_out; ++r) {
    const DevTop* src = h_top_ + r * kDevTop;
    TopLogit* dst = out.top + (out.row + r) * out.top_k;
    for (int32_t j = 0; j < out.top_k; ++j) dst[j] = {src[j].logit, src[j].token};
  }
}

Status CudaForward::EnqueueLayers(int64_t n, int64_t n_out, int32_t max_len) {
  const int64_t E = c_.n_embd, qd = c_.q_dim(), kvd = c_.kv_dim();
  const int32_t* h = h_batch_;
  cudaError_t e = cudaMemcpyAsync(d_tok_, h, n * 4, cudaMemcpyHostToDevice, stream_);
  if (e == cudaSuccess) e = cudaMemcpyAsync(d_pos_, h + n_batch_, n * 4, cudaMemcpyHostToDevice, stream_);
  if (e == cudaSuccess) e = cudaMemcpyAsync(d_seq_, h + 2 * n_batch_, n * 4, cudaMemcpyHostToDevice, stream_);
  if (e == cudaSuccess && n_out > 0) {
    e = cudaMemcpyAsync(d_rows_, h + 3 * n_batch_, n_out * 4, cudaMemcpyHostToDevice, stream_);
  }
  n_tiles_ = 0;
  if (e == cudaSuccess && flash_ && n > kMatVecMaxTokens) {  // runs of one sequence's positions
    int32_t* tiles = h_batch_ + 4 * n_batch_;
    n_tiles_ = FlashTiles(h + n_batch_, h + 2 * n_batch_, n, tiles);
    e = cudaMemcpyAsync(d_tiles_, tiles, n_tiles_ * 8, cudaMemcpyHostToDevice, stream_);
  }
  if (e != cudaSuccess) return KernelStatus(e, "batch upload");

  // x = embed(tokens)  [n, n_embd]
  Mark("upload");
  QWENMUX_KERNEL(LaunchEmbedRows(w_.token_embd, d_tok_, n, x_, stream_), "embed");
  Mark("embed");
  for (int32_t il = 0; il < static_cast<int32_t>(c_.n_layer); ++il) {
    const DevLayer& l = w_.layers[il];
    // Attention block.
    QWENMUX_TRY(RmsNormRows(x_, l.attn_norm, a_, n, E, nullptr, /*int8=*/true));  // a = norm(x)  [n, n_embd]
    Mark("attn_norm");
    // q [n, n_head * head_dim], k and v [n, n_head_kv * head_dim]
    const MatVecOut qkv[] = {{&l.attn_q, q_, qd}, {&l.attn_k, k_, kvd}, {&l.attn_v, v_, kvd}};
    QWENMUX_TRY(MatMulShared(qkv, a_, n));
    QWENMUX_TRY(LoraDelta(il, LoraTarget::kAttnQ, a_, E, q_, qd, qd, n));
    QWENMUX_TRY(LoraDelta(il, LoraTarget::kAttnK, a_, E, k_, kvd, kvd, n));
    QWENMUX_TRY(LoraDelta(il, LoraTarget::kAttnV, a_, E, v_, kvd, kvd, n));
    Mark("attn_qkv");
    QWENMUX_TRY(QkNormRope(n, l, il));                      // + StoreKv
    Mark("qk_norm_rope_kv");
    QWENMUX_TRY(Attention(n, il, max_len));                 // [n, n_head * head_dim]
    Mark("attention");
    QWENMUX_TRY(MatMul(l.attn_output, attn_, x_, E, n, true, Src::kInt8));  // x += [n, n_embd]
    QWENMUX_TRY(LoraDelta(il, LoraTarget::kAttnOutput, attn_, qd, x_, E, E, n));
    Mark("attn_output");
    // Feed-forward block.
    QWENMUX_TRY(RmsNormRows(x_, l.ffn_norm, a_, n, E, nullptr, /*int8=*/!c_.is_moe() || MoeOnDevice(l, n)));
    Mark("ffn_norm");
    QWENMUX_TRY(c_.is_moe() ? MoeFfn(l, n) : DenseFfn(l, il, n));  // x += ffn(a)
    if (c_.is_moe()) Mark("moe_ffn");
  }
  return Status::Ok();
}

// The graph reads the token and position from h_batch_ (pinned) when it runs, and sizes the
// attention split for the whole context (each item divides its own length), so one capture
// serves every step. Its output goes to pinned memory (h_logits_ or h_top_), copied out after.
Status CudaForward::RunGraphStep(const Outputs& out) {
  cudaGraphExec_t& exec = graph_exec_[out.top ? 1 : 0];
  if (!exec) {
    cudaError_t e = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) return KernelStatus(e, "graph capture");
    Status s = EnqueueLayers(1, 1, n_ctx_);
    Outputs captured{nullptr, nullptr, out.top, out.top_k, 0, !out.top};  // into the pinned buffers
    if (s.ok()) s = EnqueueOutputs(0, 1, captured, d_rows_);
    cudaGraph_t graph = nullptr;
    e = cudaStreamEndCapture(stream_, &graph);
    if (s.ok() && e != cudaSuccess) s = KernelStatus(e, "graph capture end");
    if (s.ok()) {
      e = cudaGraphInstantiate(&exec, graph, 0);
      if (e != cudaSuccess) s = KernelStatus(e, "graph instantiate");
    }
    if (graph) cudaGraphDestroy(graph);
    if (!s.ok()) {
      exec = nullptr;
      return s;
    }
  }
  cudaError_t e = cudaGraphLaunch(exec, stream_);
  if (e == cudaSuccess) e = cudaStreamSynchronize(stream_);
  if (e != cudaSuccess) return KernelStatus(e, "decode graph");
  if (out.top) {
    CopyTopLists(out, 1);
  } else {
    std::memcpy(out.logits + out.row * static_cast<int64_t>(c_.n_vocab), h_logits_, c_.n_vocab * 4);
  }
  return Status::Ok();
}

}  // namespace qwenmux::runtime::cuda
