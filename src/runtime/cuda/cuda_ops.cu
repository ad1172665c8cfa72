// The elementwise and per-head kernels of the forward pass: RMSNorm, q/k norm + RoPE + KV write,
// split-KV grouped-query attention, SwiGLU, MoE gather/scatter.
#include <cuda_fp16.h>

#include <cfloat>

#include "runtime/cuda/cuda_kv.cuh"
#include "runtime/cuda/cuda_quant.cuh"  // QuantizeWarpBlock

namespace qwenmux::runtime::cuda {

namespace {

constexpr int kHeadDim = 128;

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void RmsNormKernel(const float* x, const float* w, float* y, int64_t dim, float eps, const int32_t* rows,
                              QActs q, int quantize) {
  const int64_t i = blockIdx.x;
  const float* xr = x + (rows ? rows[i] : i) * dim;
  float* yr = y + i * dim;
  float ss = 0.0f;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) ss += xr[j] * xr[j];
  __shared__ float red[32];
  ss = WarpSum(ss);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.0f;
    v = WarpSum(v);
    if (threadIdx.x == 0) red[0] = v;
  }
  __syncthreads();
  const float r = 1.0f / sqrtf(red[0] / static_cast<float>(dim) + eps);
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    const float v = w[j] * (xr[j] * r);
    yr[j] = v;
    // dim % 32 == 0: each warp holds one whole block per iteration.
    if (quantize) QuantizeWarpBlock(v, threadIdx.x % 32, QActsByte(q, i, j), QActsPair(q, i, j));
  }
}

// One warp per head: blockIdx.x = token, blockIdx.y = head in [q heads | k heads | v heads].
// Lane holds elements lane + 32 j, j < 4; NeoX pairs are (j, j + 2).
__global__ void QkNormRopeKvKernel(float* q, float* k, const float* v, int32_t n_head, const float* q_norm,
                                   const float* k_norm, float eps, const float* freq, float mscale,
                                   const int32_t* pos, const int32_t* seq, KvLayer kv) {
  const int64_t t = blockIdx.x;
  const int hh = blockIdx.y, lane = threadIdx.x;
  const int n_kv = kv.n_head_kv;
  float* h = nullptr;
  const float* w = nullptr;
  uint16_t* dst = nullptr;
  const size_t slot = KvRow(kv, seq[t], 0, pos[t]);  // head 0's row; the heads follow a block apart
  const size_t head_stride = static_cast<size_t>(kKvBlock) * kHeadDim;
  if (hh < n_head) {
    h = q + (t * n_head + hh) * kHeadDim;
    w = q_norm;
  } else if (hh < n_head + n_kv) {
    const int kh = hh - n_head;
    h = k + (t * n_kv + kh) * kHeadDim;
    w = k_norm;
    dst = kv.k + slot + kh * head_stride;
  } else {
    const int vh = hh - n_head - n_kv;
    const float* src = v + (t * n_kv + vh) * kHeadDim;
    uint16_t* vd = kv.v + slot + vh * head_stride;
#pragma unroll
    for (int j = 0; j < 4; ++j) vd[lane + 32 * j] = __half_as_ushort(__float2half(src[lane + 32 * j]));
    return;
  }
  float x[4];
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    x[j] = h[lane + 32 * j];
    ss += x[j] * x[j];
  }
  ss = WarpSum(ss);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(kHeadDim) + eps);
#pragma unroll
  for (int j = 0; j < 4; ++j) x[j] = w[lane + 32 * j] * (x[j] * r);
  const float p = static_cast<float>(pos[t]);
  float out[4];
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int i = lane + 32 * j;
    const float angle = p * freq[i];
    double sd, cd;
    sincos(static_cast<double>(angle), &sd, &cd);
    const float c = static_cast<float>(cd) * mscale, s = static_cast<float>(sd) * mscale;
    out[j] = x[j] * c - x[j + 2] * s;
    out[j + 2] = x[j + 2] * c + x[j] * s;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    h[lane + 32 * j] = out[j];
    if (dst) dst[lane + 32 * j] = __half_as_ushort(__float2half(out[j]));
  }
}

constexpr int kAttnWarps = 4;
constexpr int kPartStride = kHeadDim + 2;  // O[128], m, l

// blockIdx.x = item (token * n_head + head), blockIdx.y = split. Each warp runs an online
// softmax over its positions; lane holds dims 4 lane .. 4 lane + 3.
__global__ void __launch_bounds__(kAttnWarps * 32)
    AttentionKernel(const float* q, int32_t n_head, const int32_t* pos, const int32_t* seq, int32_t chunk,
                    KvLayer kv, float* partial, float* out) {
  const int64_t item = blockIdx.x;
  const int64_t t = item / n_head;
  const int h = static_cast<int>(item % n_head);
  const int split = blockIdx.y, n_split = gridDim.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int group = n_head / kv.n_head_kv;
  const int kvh = h / group;
  const int32_t len = pos[t] + 1;
  const int32_t begin = chunk > 0 ? split * chunk : 0;
  const int32_t end = chunk > 0 ? min(len, begin + chunk) : len;
  if (begin >= end) return;  // past this item's length (the whole block)
  const float scale = rsqrtf(static_cast<float>(kHeadDim));
  const float4 qv = *reinterpret_cast<const float4*>(q + item * kHeadDim + 4 * lane);
  const int32_t sq = seq[t];
  float m = -FLT_MAX, l = 0.0f, o[4] = {0, 0, 0, 0};
  for (int32_t p = begin + warp; p < end; p += kAttnWarps) {
    const size_t row = KvRow(kv, sq, kvh, p) + 4 * lane;
    const uint2 kr = *reinterpret_cast<const uint2*>(kv.k + row);
    const uint2 vr = *reinterpret_cast<const uint2*>(kv.v + row);
    const float2 k01 = __half22float2(*reinterpret_cast<const __half2*>(&kr.x));
    const float2 k23 = __half22float2(*reinterpret_cast<const __half2*>(&kr.y));
    const float s = WarpSum(qv.x * k01.x + qv.y * k01.y + qv.z * k23.x + qv.w * k23.y) * scale;
    const float mn = fmaxf(m, s);
    const float corr = expf(m - mn), e = expf(s - mn);
    const float2 v01 = __half22float2(*reinterpret_cast<const __half2*>(&vr.x));
    const float2 v23 = __half22float2(*reinterpret_cast<const __half2*>(&vr.y));
    l = l * corr + e;
    o[0] = o[0] * corr + e * v01.x;
    o[1] = o[1] * corr + e * v01.y;
    o[2] = o[2] * corr + e * v23.x;
    o[3] = o[3] * corr + e * v23.y;
    m = mn;
  }
  __shared__ float sm[kAttnWarps], sl[kAttnWarps], so[kAttnWarps][kHeadDim];
  if (lane == 0) sm[warp] = m, sl[warp] = l;
#pragma unroll
  for (int j = 0; j < 4; ++j) so[warp][4 * lane + j] = o[j];
  __syncthreads();
  float M = -FLT_MAX;
#pragma unroll
  for (int w = 0; w < kAttnWarps; ++w) M = fmaxf(M, sm[w]);
  float L = 0.0f, f[kAttnWarps];
#pragma unroll
  for (int w = 0; w < kAttnWarps; ++w) {
    f[w] = sl[w] > 0.0f ? expf(sm[w] - M) : 0.0f;
    L += sl[w] * f[w];
  }
  for (int d = threadIdx.x; d < kHeadDim; d += blockDim.x) {
    float O = 0.0f;
#pragma unroll
    for (int w = 0; w < kAttnWarps; ++w) O += so[w][d] * f[w];
    if (chunk <= 0) {
      out[item * kHeadDim + d] = O / L;
    } else {
      float* pp = partial + (item * n_split + split) * kPartStride;
      pp[d] = O;
      if (d == 0) pp[kHeadDim] = M, pp[kHeadDim + 1] = L;
    }
  }
}

// Merges an item's own splits (ceil(len / chunk) of the grid's n_split), in order.
__global__ void AttentionCombineKernel(int n_split, int32_t chunk, int32_t n_head, const int32_t* pos,
                                       const float* partial, float* out, QActs q, int quantize) {
  const int64_t item = blockIdx.x;
  const float* pp = partial + item * n_split * kPartStride;
  const int32_t len = pos[item / n_head] + 1;
  n_split = min(n_split, (len + chunk - 1) / chunk);
  float M = -FLT_MAX;
  for (int s = 0; s < n_split; ++s)
    if (pp[s * kPartStride + kHeadDim + 1] > 0.0f) M = fmaxf(M, pp[s * kPartStride + kHeadDim]);
  const int d = threadIdx.x;
  float O = 0.0f, L = 0.0f;
  for (int s = 0; s < n_split; ++s) {
    const float* ps = pp + s * kPartStride;
    const float ls = ps[kHeadDim + 1];
    if (ls <= 0.0f) continue;
    const float f = expf(ps[kHeadDim] - M);
    O += ps[d] * f;
    L += ls * f;
  }
  const float v = O / L;
  out[item * kHeadDim + d] = v;
  if (quantize) {  // row t = item / n_head, column h * 128 + d: warps hold whole blocks
    const int64_t t = item / n_head, col = (item % n_head) * kHeadDim + d;
    QuantizeWarpBlock(v, d % 32, QActsByte(q, t, col), QActsPair(q, t, col));
  }
}

__global__ void SwiGluKernel(const float* g, const float* u, float* out, int64_t n, int64_t cols, QActs q,
                             int quantize) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;  // n % 32 == 0 when quantizing: whole warps
  const float x = g[i];
  const float v = x / (1.0f + expf(-x)) * u[i];
  out[i] = v;
  if (quantize) QuantizeWarpBlock(v, threadIdx.x % 32, QActsByte(q, i / cols, i % cols), QActsPair(q, i / cols, i % cols));
}

__global__ void GatherRowsKernel(const float* src, const int32_t* idx, int64_t dim, float* dst) {
  const int64_t i = blockIdx.x;
  const float* s = src + static_cast<int64_t>(idx[i]) * dim;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) dst[i * dim + j] = s[j];
}

__global__ void ScatterAddRowsKernel(const float* src, const int32_t* idx, const float* weight, int64_t dim,
                                     float* dst) {
  const int64_t i = blockIdx.x;
  float* d = dst + static_cast<int64_t>(idx[i]) * dim;
  const float w = weight[i];
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) d[j] += w * src[i * dim + j];
}

}  // namespace

// The 8-bit copy a kernel may write beside its f32 output: {q, quantize} with q = *out, or
// nothing; an error where the shape does not fit whole 32-value blocks.
static bool QTarget(const QActs* out, int64_t cols, QActs* q, int* quantize) {
  *quantize = 0;
  if (!out) return true;
  if (cols % 32 != 0 || cols > out->ld) return false;
  *q = *out;
  *quantize = 1;
  return true;
}

cudaError_t LaunchRmsNorm(const float* x, const float* w, float* y, int64_t n, int64_t dim, float eps,
                          const int32_t* rows, cudaStream_t s, const QActs* xq) {
  if (n == 0) return cudaSuccess;
  QActs q;
  int quantize = 0;
  if (!QTarget(xq, dim, &q, &quantize)) return cudaErrorInvalidValue;
  RmsNormKernel<<<static_cast<unsigned>(n), 256, 0, s>>>(x, w, y, dim, eps, rows, q, quantize);
  return cudaGetLastError();
}

cudaError_t LaunchQkNormRopeKv(float* q, float* k, const float* v, int64_t n, int32_t n_head, const float* q_norm,
                               const float* k_norm, float eps, const float* freq, float mscale, const int32_t* pos,
                               const int32_t* seq, KvLayer kv, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(n_head + 2 * kv.n_head_kv));
  QkNormRopeKvKernel<<<grid, 32, 0, s>>>(q, k, v, n_head, q_norm, k_norm, eps, freq, mscale, pos, seq, kv);
  return cudaGetLastError();
}

size_t AttentionScratchFloats(int64_t n, int32_t n_head, int32_t max_len, int32_t chunk) {
  if (chunk <= 0) return 0;
  return static_cast<size_t>(n * n_head) * ((max_len + chunk - 1) / chunk) * kPartStride;
}

cudaError_t LaunchAttention(const float* q, int64_t n, int32_t n_head, const int32_t* pos, const int32_t* seq,
                            int32_t max_len, int32_t chunk, KvLayer kv, float* partial, float* out, cudaStream_t s,
                            const QActs* outq) {
  if (n == 0) return cudaSuccess;
  QActs oq;
  int quantize = 0;
  if (!QTarget(chunk > 0 ? outq : nullptr, static_cast<int64_t>(n_head) * kHeadDim, &oq, &quantize)) {
    return cudaErrorInvalidValue;
  }
  const int64_t items = n * n_head;
  const int splits = chunk > 0 ? (max_len + chunk - 1) / chunk : 1;
  AttentionKernel<<<dim3(static_cast<unsigned>(items), static_cast<unsigned>(splits)), kAttnWarps * 32, 0, s>>>(
      q, n_head, pos, seq, chunk, kv, partial, out);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || chunk <= 0) return err;
  AttentionCombineKernel<<<static_cast<unsigned>(items), kHeadDim, 0, s>>>(splits, chunk, n_head, pos, partial, out, oq,
                                                                           quantize);
  return cudaGetLastError();
}

cudaError_t LaunchSwiGlu(const float* gate, const float* up, float* out, int64_t n, cudaStream_t s, int64_t cols,
                         const QActs* outq) {
  if (n == 0) return cudaSuccess;
  QActs q;
  int quantize = 0;
  if (!QTarget(outq, cols, &q, &quantize) || (quantize && n % cols != 0)) return cudaErrorInvalidValue;
  SwiGluKernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, s>>>(gate, up, out, n, quantize ? cols : 1, q,
                                                                      quantize);
  return cudaGetLastError();
}

cudaError_t LaunchGatherRows(const float* src, const int32_t* idx, int64_t n, int64_t dim, float* dst,
                             cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  GatherRowsKernel<<<static_cast<unsigned>(n), 256, 0, s>>>(src, idx, dim, dst);
  return cudaGetLastError();
}

cudaError_t LaunchScatterAddRows(const float* src, const int32_t* idx, const float* weight, int64_t n,
                                 int64_t dim, float* dst, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  ScatterAddRowsKernel<<<static_cast<unsigned>(n), 256, 0, s>>>(src, idx, weight, dim, dst);
  return cudaGetLastError();
}

}  // namespace qwenmux::runtime::cuda
