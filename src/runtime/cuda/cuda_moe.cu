// The MoE router and the weighted sum of the experts' outputs on the device (LaunchMoeRoute,
// LaunchMoeCombine in cuda_kernels.h): with LaunchMatVecQ8Experts between them, a decode step of
// a `qwen3moe` model needs no trip to the host, so it runs as one CUDA graph.
#include <cfloat>

#include "runtime/cuda/cuda_kernels.h"

namespace qwenmux::runtime::cuda {

namespace {

constexpr int kPerLane = kMaxDeviceExperts / 32;

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per token: softmax over the n_expert logits, the k most probable experts (equal
// probabilities: the lower expert id first; runtime/forward.cc's order), their probabilities
// renormalised to sum to 1. Lane j keeps choice j until the end.
__global__ void MoeRouteKernel(const float* __restrict__ logits, int64_t n, int ne, int k, int32_t* __restrict__ idx,
                               float* __restrict__ wt) {
  const int64_t t = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (t >= n) return;
  const float* r = logits + t * ne;
  float p[kPerLane];
  float mx = -FLT_MAX;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    p[i] = e < ne ? r[e] : -FLT_MAX;
    mx = fmaxf(mx, p[i]);
  }
  mx = WarpMax(mx);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    p[i] = lane + 32 * i < ne ? expf(p[i] - mx) : 0.0f;
    sum += p[i];
  }
  sum = WarpSum(sum);
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) p[i] = lane + 32 * i < ne ? p[i] / sum : -1.0f;
  float mine = 0.0f, sel = 0.0f;
  int mine_id = 0;
  for (int j = 0; j < k; ++j) {
    float bv = -1.0f;
    int bi = 0x7fffffff;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      if (p[i] > bv) bv = p[i], bi = lane + 32 * i;  // i ascending: ties keep the lower id
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
    }
    if (bi % 32 == lane) p[bi / 32] = -1.0f;  // taken
    if (lane == j) mine = bv, mine_id = bi;
    sel += bv;
  }
  if (lane < k) {
    idx[t * k + lane] = mine_id;
    wt[t * k + lane] = mine / sel;
  }
}

// x[t, c] += sum_j wt[t, j] * y[t * k + j, c]
__global__ void MoeCombineKernel(const float* __restrict__ y, const float* __restrict__ wt, int64_t n, int k,
                                 int64_t dim, float* __restrict__ x) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * dim) return;
  const int64_t t = i / dim, c = i % dim;
  float s = 0.0f;
  for (int j = 0; j < k; ++j) s += wt[t * k + j] * y[(t * k + j) * dim + c];
  x[i] += s;
}

}  // namespace

cudaError_t LaunchMoeRoute(const float* logits, int64_t n, int n_expert, int k, int32_t* idx, float* wt,
                           cudaStream_t s) {
  if (n_expert < 1 || n_expert > kMaxDeviceExperts || k < 1 || k > 32 || k > n_expert) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  constexpr int kThreads = 128;
  const int64_t blocks = (n * 32 + kThreads - 1) / kThreads;
  MoeRouteKernel<<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(logits, n, n_expert, k, idx, wt);
  return cudaGetLastError();
}

cudaError_t LaunchMoeCombine(const float* y, const float* wt, int64_t n, int k, int64_t dim, float* x,
                             cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t blocks = (n * dim + kThreads - 1) / kThreads;
  MoeCombineKernel<<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(y, wt, n, k, dim, x);
  return cudaGetLastError();
}

}  // namespace qwenmux::runtime::cuda
