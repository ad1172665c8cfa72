// The Qwen3 forward pass on an NVIDIA GPU (dense `qwen3` and sparse `qwen3moe`), with the step
// names of runtime/forward.cc. Activations are f32 on the device; matrices are read through the
// matrix-vector kernel for small batches and through f16/bf16 tensor-core GEMMs for large ones.
// The KV cache is f16 on the device, [layer][seq][kv_head][pos][head_dim] like the CPU's.
//
// Thread-safety: one thread at a time (the engine serialises steps).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "model/config.h"
#include "runtime/backend.h"
#include "runtime/cuda/cuda_blas.h"
#include "runtime/cuda/cuda_lora.h"
#include "runtime/lora.h"
#include "runtime/cuda/cuda_weights.h"

namespace qwenmux::runtime::cuda {

class CudaForward {
 public:
  // Allocates the KV cache (n_ctx positions for each of n_seq sequences) and scratch for
  // batches of n_batch tokens (larger batches run in slices of n_batch).
  // kv_blocks: cache blocks of kKvBlock positions shared by all sequences (0: enough for every
  // sequence to reach n_ctx). A step that needs a block when none is free fails with
  // kResourceExhausted naming the cache; a sequence's blocks go back when set_length shrinks it.
  static Result<std::unique_ptr<CudaForward>> Create(const model::ModelConfig& c, const DeviceWeights& w,
                                                     int32_t n_ctx, int32_t n_seq, int32_t n_batch,
                                                     int32_t kv_blocks = 0);
  ~CudaForward();
  CudaForward(const CudaForward&) = delete;
  CudaForward& operator=(const CudaForward&) = delete;

  // As Backend::Run: host outputs, KV written, lengths untouched. With out_top (and top_k in
  // 1..kDevTop): each output row's top_k largest logits, selected on the device, into
  // out_top [n_out][top_k] (as Backend::RunTop), instead of out_logits.
  Status Run(std::span<const BatchEntry> batch, float* out_logits, float* out_hidden, TopLogit* out_top = nullptr,
             int32_t top_k = 0);
  // Whether Run can select top lists here (the kernel's vocabulary range).
  bool selects_top() const { return d_top_ != nullptr; }

  int32_t n_ctx() const { return n_ctx_; }
  int32_t n_seq() const { return n_seq_; }
  uint64_t device_bytes() const { return bytes_ + (loras_ ? loras_->bytes() : 0); }
  uint64_t kv_bytes() const { return kv_bytes_; }
  // Positions [0, n) of `seq` stay cached; its blocks past them return to the pool.
  void TrimKv(int32_t seq, int32_t n);
  int32_t kv_blocks_free() const { return static_cast<int32_t>(free_blocks_.size()); }
  // What runs the large-batch products: "cublas <version>" or "own (<why not cuBLAS>)".
  const std::string& gemm_name() const { return gemm_name_; }

  // Batches of at most this many tokens use the matrix-vector kernel; larger ones the GEMM.
  // Their results are batch-invariant: a token gets the same arithmetic (matrix-vector kernel,
  // attention split at fixed positions) whatever else shares its step.
  static constexpr int64_t kMatVecMaxTokens = 32;

  // QWENMUX_CUDA_PROFILE=1 (set before the first forward; graphs then stay off): device time
  // of each step of the forward, summed over every Run of every forward in the process, as JSON
  // {"step": {"ms": total, "calls": n}, ...}. For cuda_bench; costs a sync per Run.
  static std::string ProfileJson();
  static void ProfileReset();

 private:
  CudaForward(const model::ModelConfig& c, const DeviceWeights& w) : c_(c), w_(w) {}
  Status Alloc(void** p, size_t bytes, const char* what);
  // Outputs of one Run: host rows (one of logits/top, or neither) and the next row to fill.
  struct Outputs {
    float* logits = nullptr;
    float* hidden = nullptr;
    TopLogit* top = nullptr;
    int32_t top_k = 0;
    int64_t row = 0;
    bool pinned_logits = false;  // graph capture: logits into h_logits_ (logits and top null)
  };
  Status RunSlice(std::span<const BatchEntry> batch, Outputs& out);
  // Output rows [g, g + m) of the step, from the final hidden state in x_: norm, hidden copy,
  // LM head, and the logits or the top lists copied to the host (pinned h_top_ for top lists).
  Status EnqueueOutputs(int64_t g, int64_t m, const Outputs& out, const int32_t* rows);
  // After the sync: the step's n_out top lists from h_top_ into out.top (top_k of each).
  void CopyTopLists(const Outputs& out, int64_t n_out) const;
  // Batch upload (from h_batch_: n tokens, n_out output rows), embedding and every layer.
  Status EnqueueLayers(int64_t n, int64_t n_out, int32_t max_len);
  // One decode step of one sequence with logits (or the top list) out, as a CUDA graph
  // (captured on first use, one graph for each of the two).
  Status RunGraphStep(const Outputs& out);

  // int8: also the 8-bit copy of y that MatMul(..., Src::kInt8) of y reads.
  Status RmsNormRows(const float* x, const float* w, float* y, int64_t n, int64_t dim, const int32_t* rows = nullptr,
                     bool int8 = false);
  // The 8-bit buffer a kernel writing y [n, cols] should fill beside y, recorded as y's copy; null
  // (and nothing recorded) where the integer kernels are off or the step is not decode-sized.
  const QActs* Int8Out(const float* y, int64_t n, int64_t cols);
  Status QkNormRope(int64_t n, const DevLayer& l, int32_t layer);  // + KV write (fused)
  Status Attention(int64_t n, int32_t layer, int32_t max_len);
  Status DenseFfn(const DevLayer& l, int32_t layer, int64_t n);
  // y[t, :out] += the LoRA delta of (layer, target) for x[t, :in] of each token with an adapter
  // (steps with adapters only).
  Status LoraDelta(int32_t layer, LoraTarget target, const float* x, int64_t in, float* y, int64_t ldy, int64_t out,
                   int64_t n);
  Status MoeFfn(const DevLayer& l, int64_t n);
  // Whether a step of n tokens runs layer l's experts with the router on the device (the integer
  // kernels read every expert type, and the n * k (token, choice) slots fit the 8-bit rows).
  bool MoeOnDevice(const DevLayer& l, int64_t n) const;
  Status MoeFfnOnDevice(const DevLayer& l, int64_t n);
  // How MatMul reads x for steps of at most kMatVecMaxTokens tokens: kInt8, the 8-bit copy
  // QuantizeActs just made of this x (integer kernels, where the weight type has them; others
  // read x in f32); kF32, x itself; kExact, always the f32 matrix-vector kernel (the MoE router,
  // where rounding could flip an expert choice).
  enum class Src { kF32, kInt8, kExact };
  Status MatMul(const DevMatrix& w, const float* x, float* y, int64_t ldy, int64_t n, bool accumulate,
                Src src = Src::kF32);
  // y_i = W_i x for matrices reading the same x (q/k/v, gate/up), as MatMul(..., Src::kInt8)
  // each; where the integer kernels run, one launch per run of matrices of one type.
  Status MatMulShared(std::span<const MatVecOut> outs, const float* x, int64_t n);
  // The 8-bit copy of x [n, cols] that MatMul(..., Src::kInt8) of x reads (decode-sized steps;
  // nothing for larger ones, or with QWENMUX_CUDA_MATVEC naming an f32 layout).
  Status QuantizeActs(const float* x, int64_t n, int64_t cols);
  KvLayer Kv(int32_t layer) const;
  // Gives every entry's sequence the blocks up to its position and uploads the block table when
  // it changed.
  Status EnsureKvBlocks(std::span<const BatchEntry> batch);
  // Profiling (QWENMUX_CUDA_PROFILE): an event after the step named `label`; Run sums them up.
  void Mark(const char* label);
  void CollectProfile();

  const model::ModelConfig& c_;
  const DeviceWeights& w_;
  int32_t n_ctx_ = 0, n_seq_ = 0, n_batch_ = 0;
  cudaStream_t stream_ = nullptr;
  std::vector<void*> allocs_;
  uint64_t bytes_ = 0, kv_bytes_ = 0;
  float rope_mscale_ = 1.0f;
  float* rope_freq_ = nullptr;  // [head_dim / 2]
  uint16_t* k_cache_ = nullptr;  // [layer][block][kv_head][kKvBlock][head_dim] f16
  uint16_t* v_cache_ = nullptr;
  int32_t max_blocks_ = 0, n_blocks_ = 0;  // blocks a sequence can reach; blocks in the pool
  int32_t* d_blocks_ = nullptr;            // block table [n_seq][max_blocks] (device)
  int32_t* h_blocks_ = nullptr;            // its pinned host copy, the one the host edits
  std::vector<int32_t> free_blocks_;
  bool blocks_dirty_ = false;
  // Batch on the device: token, pos, seq [n_batch] each; output rows [n_batch].
  int32_t* d_tok_ = nullptr;
  int32_t* d_pos_ = nullptr;
  int32_t* d_seq_ = nullptr;
  int32_t* d_rows_ = nullptr;
  int32_t* d_tiles_ = nullptr;  // flash attention tiles of a prompt-sized step [n_batch][2]
  int32_t n_tiles_ = 0;
  bool flash_ = true;           // flash attention for prompt-sized steps (QWENMUX_CUDA_FLASH=0: off)
  int32_t* h_batch_ = nullptr;  // pinned [6][n_batch]: tokens, positions, sequences, output rows, tiles
  // Activations (f32): x, a [n_batch, n_embd]; q, attn [n_batch, q_dim]; k, v [n_batch, kv_dim];
  // gate, up [n_batch, n_ff (or n_ff_exp)]; logits [kOutRows, n_vocab].
  float *x_ = nullptr, *a_ = nullptr, *q_ = nullptr, *k_ = nullptr, *v_ = nullptr, *attn_ = nullptr;
  float *gate_ = nullptr, *up_ = nullptr, *logits_ = nullptr, *partial_ = nullptr;
  size_t partial_floats_ = 0;
  // 8-bit activations [kMatVecMaxTokens, max cols] of the integer kernels, and what they hold.
  QActs xq_;
  bool int8_ = true;
  const float* xq_of_ = nullptr;
  int64_t xq_n_ = 0, xq_cols_ = 0;
  int32_t attn_chunk_ = 32;  // KV positions per attention split (decode-sized steps)
  // MoE: router [n_batch, n_expert]; moe_in, moe_out [n_batch, n_embd]; routing idx/weight [n_batch * k].
  float *router_ = nullptr, *moe_in_ = nullptr, *moe_out_ = nullptr, *d_route_w_ = nullptr;
  int32_t* d_route_idx_ = nullptr;
  std::vector<float> h_router_;
  // GEMM operands: xh [n_batch, max cols] and a weight slice wh [kWeightChunk] (f16/bf16).
  uint16_t* xh_ = nullptr;
  uint16_t* wh_ = nullptr;
  std::unique_ptr<Blas> blas_;  // null: LaunchGemm
  // LoRA: the adapters' device copies, and this step's tables (lora_on_: some token has one).
  std::unique_ptr<DeviceLoras> loras_;
  LoraStep lora_step_;
  float* lora_mid_ = nullptr;
  bool lora_on_ = false;
  std::string gemm_name_;
  int64_t wh_elems_ = 0;
  static constexpr int64_t kOutRows = 64;  // output rows per LM-head pass
  // CUDA graph of a batch-1 decode step (dense models; QWENMUX_CUDA_GRAPHS=0 turns it off).
  bool graphs_ = true;
  cudaGraphExec_t graph_exec_[2] = {nullptr, nullptr};  // [0]: logits out, [1]: top list out
  float* h_logits_ = nullptr;  // pinned [n_vocab]
  // Top lists: device scratch and lists [n_batch][kDevTop], pinned host copy [n_batch][kDevTop];
  // null where the vocabulary is outside the kernel's range.
  uint64_t* top_scratch_ = nullptr;
  DevTop* d_top_ = nullptr;
  DevTop* h_top_ = nullptr;
  bool profile_ = false;
  std::vector<cudaEvent_t> events_;  // events_[0] marks the start of a Run
  std::vector<const char*> marks_;   // label of events_[i + 1]
};

}  // namespace qwenmux::runtime::cuda
