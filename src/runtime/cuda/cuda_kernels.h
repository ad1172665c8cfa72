// Host entry points of the CUDA kernels (implemented in the *.cu files beside this header). Each
// Launch* enqueues on `stream` and returns cudaGetLastError() after the launch, so a bad launch
// is reported by the caller with the kernel's name; execution errors surface at the next sync.
//
// Weights live on the device "repacked": the GGUF blocks of a matrix are split into planes
// (quants, scales, high bits) so that every plane is 16-byte aligned and each lane of a warp
// reads its part of a row with wide loads. Planes are row-major, so rows [a, b) of every plane
// are contiguous (DevMatrix::Slice). Half-precision buffers are passed as uint16_t (IEEE
// binary16 or bfloat16 bits) so this header needs no CUDA headers beyond the runtime API.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>


namespace qwenmux::runtime::cuda {

// The GGUF tensor types the device kernels read, with DType's numbers (checked in
// cuda_weights.cc); a type of its own so that the .cu files need no C++20 project headers.
enum class DType : uint32_t { kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14, kBF16 = 30 };

// Plane layout per type (nb = blocks per row):
//   F32/F16/BF16  qs: the elements as stored
//   Q8_0          qs: int8 [cols]            aux: half d [nb]
//   Q4_0          qs: 16 B nibbles / block   aux: half d [nb]
//   Q4_K          qs: 128 B / block          aux: 16 B header (d, dmin, 12 scale bytes) / block
//   Q5_K          as Q4_K                    aux2: qh 32 B / block
//   Q6_K          qs: ql 128 B / block       aux: 16 int8 scales / block  aux2: qh 64 B / block
//                                            aux3: half d [nb]
struct DevMatrix {
  DType type = DType::kF32;
  int64_t rows = 0, cols = 0;
  uint8_t* qs = nullptr;
  uint8_t* aux = nullptr;
  uint8_t* aux2 = nullptr;
  uint8_t* aux3 = nullptr;

  // Rows [begin, begin + count) (one expert of a stacked MoE tensor).
  DevMatrix Slice(int64_t begin, int64_t count) const;
};

// Bytes per row of each plane: {qs, aux, aux2, aux3}.
struct PlaneRowBytes {
  size_t qs = 0, aux = 0, aux2 = 0, aux3 = 0;
};
PlaneRowBytes PlaneBytesPerRow(DType type, int64_t cols);
// True when the device kernels handle `type` with rows of `cols` elements.
bool DeviceSupports(DType type, int64_t cols);
// Total bytes of a repacked matrix (each plane rounded up to 256 bytes).
size_t DevMatrixBytes(DType type, int64_t rows, int64_t cols);
// Points the planes of `m` (type, rows, cols set) into `base` (DevMatrixBytes bytes).
void SetPlanes(DevMatrix& m, uint8_t* base);

// Activations quantized to 8 bits for the integer matrix-vector kernels: per 32 consecutive
// values of a row, int8 q and the pair (d, d * sum q), value ~ d * q with d = max |x| / 127.
struct QActs {
  int8_t* q = nullptr;   // [n, ld]
  float* ds = nullptr;   // [n, ld / 32] pairs (d, d * sum q); 8-byte aligned
  int64_t ld = 0;        // a multiple of 32 (q rows 32-byte aligned)
};
// Rows [row0, row0 + nrows) of the matrix in GGUF layout (raw, device memory, row-major) into
// the planes of `m`.
cudaError_t LaunchRepack(const DevMatrix& m, const uint8_t* raw, int64_t row0, int64_t nrows, cudaStream_t s);

// y[t, r] = sum_k W[r, k] * x[t, k] (+ y[t, r] when accumulate), t < n. x, y f32, ldx % 4 == 0.
// The matrix-vector kernel: dequantization in registers, one warp per row; any n (chunks of 8).
// Two layouts: kPerUnit (each lane a 32- or 64-value unit of the row) and kLane8 (the warp reads
// 256 adjacent columns per step, each lane 8; rows of cols % 256 == 0, others fall back to
// kPerUnit); kDefault is kPerUnit unless QWENMUX_CUDA_MATVEC=lane8.
enum class MatVecLayout { kDefault, kPerUnit, kLane8 };
cudaError_t LaunchMatVec(const DevMatrix& w, const float* x, int64_t ldx, float* y, int64_t ldy, int64_t n,
                         bool accumulate, cudaStream_t s, MatVecLayout layout = MatVecLayout::kDefault);

// x [n, cols] (row stride ldx) -> out; cols % 32 == 0, cols <= out.ld.
cudaError_t LaunchQuantizeActs(const float* x, int64_t ldx, int64_t n, int64_t cols, QActs out, cudaStream_t s);
// The types LaunchMatVecQ8 reads: Q8_0, Q4_0, Q4_K, Q5_K, Q6_K.
bool MatVecQ8Supports(DType t);
// y[t, r] = sum_k W[r, k] * xq[t, k] (+ y when accumulate), t < n: integer dot products
// (__dp4a) of the weight quants with the 8-bit activations, scales applied per block; one warp
// per row, any n (chunks of 8), batch-invariant.
cudaError_t LaunchMatVecQ8(const DevMatrix& w, const QActs& x, float* y, int64_t ldy, int64_t n, bool accumulate,
                           cudaStream_t s);
// The same for 1 to 3 matrices of one type and width reading the same x (q/k/v, gate/up), in
// one launch: y_i[t, r] (+)= W_i[r, :] . xq[t, :].
struct MatVecOut {
  const DevMatrix* w;
  float* y;
  int64_t ldy;
};
cudaError_t LaunchMatVecQ8Group(const MatVecOut* outs, int count, const QActs& x, int64_t n, bool accumulate,
                                cudaStream_t s);

// The experts of a MoE layer chosen per token, one (token, choice) slot each: for slot s < slots,
// y[s, r] = W[idx[s] * rows + r, :] . xq[s / act_div, :], r < rows, where W stacks the experts'
// matrices of `rows` rows each (ffn_gate_exps, ...). act_div = k reads each token's activations
// for its k slots (gate, up); 1 reads the slot's own row (down). Same arithmetic as
// LaunchMatVecQ8 of the expert's slice.
cudaError_t LaunchMatVecQ8Experts(const DevMatrix& stacked, int64_t rows, const QActs& x, const int32_t* idx,
                                  int64_t slots, int act_div, float* y, int64_t ldy, cudaStream_t s);
// The MoE router on the device, from its logits [n, n_expert]: softmax, the k most probable
// experts (ties: the lower id), their probabilities renormalised: idx, wt [n, k] (choice order:
// most probable first). n_expert <= kMaxDeviceExperts, k <= 32.
constexpr int kMaxDeviceExperts = 256;
cudaError_t LaunchMoeRoute(const float* logits, int64_t n, int n_expert, int k, int32_t* idx, float* wt,
                           cudaStream_t s);
// x[t, :] += sum_j wt[t, j] * y[t * k + j, :], t < n (y: the down products of the slots).
cudaError_t LaunchMoeCombine(const float* y, const float* wt, int64_t n, int k, int64_t dim, float* x,
                             cudaStream_t s);

// Rows [row0, row0 + nrows) of W dequantized to f16 (bf16 when `bf16`) into out [nrows, cols].
cudaError_t LaunchDequantize(const DevMatrix& w, int64_t row0, int64_t nrows, uint16_t* out, bool bf16,
                             cudaStream_t s);
// out[t, :] = W[ids[t], :] as f32, t < n (embedding lookup); ids on the device.
cudaError_t LaunchEmbedRows(const DevMatrix& w, const int32_t* ids, int64_t n, float* out, cudaStream_t s);

// C[m, n] = sum_k A[m, k] * B[n, k] (+ C when accumulate): A [M, K] (lda), B [N, K] (ldb), both
// f16 (bf16 when `bf16`), C f32 (ldc). Tensor cores (WMMA), f32 accumulation; K % 32 == 0.
cudaError_t LaunchGemm(const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb, float* c, int64_t ldc,
                       int64_t m, int64_t n, int64_t k, bool accumulate, bool bf16, cudaStream_t s);

// f32 -> f16 (bf16 when `bf16`), n elements.
cudaError_t LaunchToHalf(const float* x, uint16_t* y, int64_t n, bool bf16, cudaStream_t s);

// y[i, :] = w * x[src(i), :] / rms(x[src(i), :]), src(i) = rows ? rows[i] : i, i < n.
// xq: also the 8-bit copy of y (dim % 32 == 0).
cudaError_t LaunchRmsNorm(const float* x, const float* w, float* y, int64_t n, int64_t dim, float eps,
                          const int32_t* rows, cudaStream_t s, const QActs* xq = nullptr);

// The KV cache of one layer in pages (blocks) of kKvBlock positions. Physical block b holds, per
// KV head, kKvBlock rows of head_dim (128) f16 values: [block][kv_head][kKvBlock][128]. `blocks`
// is the device block table [n_seq][max_blocks]: position p of sequence s is row p % kKvBlock of
// block blocks[s * max_blocks + p / kKvBlock] (the host allocates a sequence's blocks before a
// step reaches them; -1 where none is).
constexpr int32_t kKvBlock = 64;
struct KvLayer {
  uint16_t* k = nullptr;
  uint16_t* v = nullptr;
  const int32_t* blocks = nullptr;
  int32_t max_blocks = 0, n_head_kv = 0;
};

// Per-head q/k RMSNorm + NeoX RoPE (freq [head_dim/2] inverse frequencies, mscale on cos/sin)
// in place on q [n, n_head*hd] and k, then k and v written as f16 into the cache layer at each
// token's (seq, pos). head_dim must be 128.
cudaError_t LaunchQkNormRopeKv(float* q, float* k, const float* v, int64_t n, int32_t n_head, const float* q_norm,
                               const float* k_norm, float eps, const float* freq, float mscale, const int32_t* pos,
                               const int32_t* seq, KvLayer kv, cudaStream_t s);

// Causal GQA attention over the cache: out[t, h] = softmax(q[t,h] . K[seq_t, h/group, 0..pos_t])
// V[...]. chunk > 0: split-KV, each (token, head) item over its own positions in chunks of
// `chunk` (the grid covers max_len >= every pos + 1; splits past an item's length do nothing),
// so an item's arithmetic does not depend on the rest of the batch; chunk = 0: one pass per
// item (large batches). `partial` is scratch of AttentionScratchFloats(n, n_head, max_len, chunk)
// floats.
size_t AttentionScratchFloats(int64_t n, int32_t n_head, int32_t max_len, int32_t chunk);
cudaError_t LaunchAttention(const float* q, int64_t n, int32_t n_head, const int32_t* pos, const int32_t* seq,
                            int32_t max_len, int32_t chunk, KvLayer kv, float* partial, float* out, cudaStream_t s,
                            const QActs* outq = nullptr);  // outq: the 8-bit copy of out (split-KV only)

// Causal flash-style attention for prompt-sized steps (tensor cores, sm_80+): the batch as tiles
// of up to kFaTileRows consecutive positions of one sequence (FlashTiles, on the host: tiles[2 i]
// the first token, tiles[2 i + 1] the row count; returns the count, at most n), each tile x query
// head one block over the cache positions [0, its last position]. Same result as
// LaunchAttention with chunk = 0, with q and the probabilities rounded to f16.
constexpr int32_t kFaTileRows = 64;
int32_t FlashTiles(const int32_t* pos, const int32_t* seq, int64_t n, int32_t* tiles);
cudaError_t LaunchFlashPrefill(const float* q, int32_t n_head, const int32_t* pos, const int32_t* seq,
                               const int32_t* tiles, int32_t n_tiles, KvLayer kv, float* out, cudaStream_t s);

// LoRA (Punica-style: each token of a batch its own adapter, or none). A device table per adapter
// holds one LoraRef per (layer, target); per step, slot[t] picks token t's table (-1: none) and
// scale[t] its user scale. For target `entry` (layer * 7 + target) of every token with a pair:
//   mid[t, j] = scale[t] * factor * sum_k A[j, k] x[t, k]   (j < rank, mid row stride max_rank)
//   y[t, o] += sum_j B[o, j] * mid[t, j]
struct LoraRef {
  const float* a = nullptr;  // [rank, in]; null: no pair
  const float* b = nullptr;  // [out, rank]
  int32_t rank = 0;
  float factor = 1.0f;       // alpha / rank
};
struct LoraStep {
  const int32_t* slot = nullptr;           // [n] device
  const float* scale = nullptr;            // [n] device
  const LoraRef* const* tables = nullptr;  // [slots] device pointers to device tables
  int32_t max_rank = 0;                    // over the step's adapters
};
cudaError_t LaunchLoraDelta(const LoraStep& step, int32_t entry, const float* x, int64_t ldx, int64_t in, float* y,
                            int64_t ldy, int64_t out, int64_t n, float* mid, cudaStream_t s);

// out = silu(gate) * up, n elements (out may alias gate).
// outq: also the 8-bit copy of out as rows of `cols` values (n % cols == 0, cols % 32 == 0).
cudaError_t LaunchSwiGlu(const float* gate, const float* up, float* out, int64_t n, cudaStream_t s, int64_t cols = 0,
                         const QActs* outq = nullptr);
// dst[i, :] = src[idx[i], :], i < n, dim columns.
cudaError_t LaunchGatherRows(const float* src, const int32_t* idx, int64_t n, int64_t dim, float* dst,
                             cudaStream_t s);
// dst[idx[i], :] += weight[i] * src[i, :], i < n (idx distinct).
cudaError_t LaunchScatterAddRows(const float* src, const int32_t* idx, const float* weight, int64_t n,
                                 int64_t dim, float* dst, cudaStream_t s);

// One entry of a row's top list, laid out as runtime::TopLogit (checked in cuda_forward.cc).
struct DevTop {
  float logit;
  int32_t token;
};
constexpr int kDevTop = 64;  // entries per row (runtime::kMaxTopLogits)
// 64-bit words of scratch LaunchTopLogits needs for `rows` rows of n_vocab logits.
int64_t TopLogitsScratchWords(int64_t rows, int64_t n_vocab);
// top[r][0, kDevTop) = the kDevTop largest logits of row r (rows of n_vocab at stride ld), largest
// first, equal logits by smaller token id: runtime::SelectTopLogits' order. n_vocab in
// [kDevTop, 262144]; cudaErrorInvalidValue otherwise.
cudaError_t LaunchTopLogits(const float* logits, int64_t ld, int64_t rows, int64_t n_vocab, uint64_t* scratch,
                            DevTop* top, cudaStream_t s);

}  // namespace qwenmux::runtime::cuda
