// The LoRA delta kernels (see LaunchLoraDelta in cuda_kernels.h): a down-projection to the rank
// (one warp per token and rank row) and an up-projection added into the base product's output
// (one thread per token and output column). f32 throughout, as the CPU's ApplyLora.
#include "runtime/cuda/cuda_kernels.h"

namespace qwenmux::runtime::cuda {

namespace {

constexpr int kDownWarps = 4;

// blockIdx.x = token, warp (blockIdx.y * kDownWarps + warp) = rank row j.
__global__ void LoraDownKernel(LoraStep step, int32_t entry, const float* __restrict__ x, int64_t ldx, int64_t in,
                               float* __restrict__ mid) {
  const int64_t t = blockIdx.x;
  const int slot = step.slot[t];
  if (slot < 0) return;
  const LoraRef r = step.tables[slot][entry];
  const int j = blockIdx.y * kDownWarps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (r.a == nullptr || j >= r.rank) return;
  const float* a = r.a + static_cast<int64_t>(j) * in;
  const float* xt = x + t * ldx;
  float s = 0.0f;
  for (int64_t k = lane; k < in; k += 32) s += a[k] * xt[k];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) mid[t * step.max_rank + j] = s * step.scale[t] * r.factor;
}

// blockIdx.x = token, column o = blockIdx.y * blockDim.x + threadIdx.x.
__global__ void LoraUpKernel(LoraStep step, int32_t entry, const float* __restrict__ mid, float* y, int64_t ldy,
                             int64_t out) {
  const int64_t t = blockIdx.x;
  const int slot = step.slot[t];
  if (slot < 0) return;
  const LoraRef r = step.tables[slot][entry];
  const int64_t o = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (r.a == nullptr || o >= out) return;
  const float* b = r.b + o * r.rank;
  const float* m = mid + t * step.max_rank;
  float s = 0.0f;
  for (int j = 0; j < r.rank; ++j) s += b[j] * m[j];
  y[t * ldy + o] += s;
}

}  // namespace

cudaError_t LaunchLoraDelta(const LoraStep& step, int32_t entry, const float* x, int64_t ldx, int64_t in, float* y,
                            int64_t ldy, int64_t out, int64_t n, float* mid, cudaStream_t s) {
  if (n == 0 || step.max_rank <= 0) return cudaSuccess;
  const dim3 down(static_cast<unsigned>(n), static_cast<unsigned>((step.max_rank + kDownWarps - 1) / kDownWarps));
  LoraDownKernel<<<down, kDownWarps * 32, 0, s>>>(step, entry, x, ldx, in, mid);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  constexpr int kUpThreads = 128;
  const dim3 up(static_cast<unsigned>(n), static_cast<unsigned>((out + kUpThreads - 1) / kUpThreads));
  LoraUpKernel<<<up, kUpThreads, 0, s>>>(step, entry, mid, y, ldy, out);
  return cudaGetLastError();
}

}  // namespace qwenmux::runtime::cuda
