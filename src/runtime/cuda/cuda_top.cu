// The top list of each logits row on the device (LaunchTopLogits in cuda_kernels.h), so a decode
// step copies 64 (logit, token) pairs back instead of the whole vocabulary.
//
// Each logit becomes one 64-bit key: the float's bits mapped to an unsigned integer of the same
// order, above the complement of its token id, so keys sort as (logit descending, token
// ascending): exactly SelectTopLogits' order on the host. Two passes, both a block-wide bitonic
// sort of kSortN keys in shared memory: the first sorts chunks of the row and keeps each chunk's
// best kDevTop; the second sorts those and keeps the row's best kDevTop. Padding keys are 0, below
// every real key.
#include "runtime/cuda/cuda_kernels.h"

namespace qwenmux::runtime::cuda {

namespace {

constexpr int kSortN = 4096;  // keys per block (32 KiB of shared memory)
constexpr int kThreads = 1024;

__device__ __forceinline__ uint64_t Key(float v, uint32_t token) {
  uint32_t u = __float_as_uint(v);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<uint64_t>(u) << 32) | (0xFFFFFFFFu - token);
}

__device__ __forceinline__ DevTop FromKey(uint64_t key) {
  uint32_t u = static_cast<uint32_t>(key >> 32);
  u = (u & 0x80000000u) ? (u & 0x7FFFFFFFu) : ~u;
  return {__uint_as_float(u), static_cast<int32_t>(0xFFFFFFFFu - static_cast<uint32_t>(key))};
}

// Sorts s[0, kSortN) descending (bitonic; every thread of the block takes part).
__device__ void SortDescending(uint64_t* s) {
  for (int k = 2; k <= kSortN; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < kSortN; i += blockDim.x) {
        const int p = i ^ j;
        if (p > i) {
          const uint64_t a = s[i], b = s[p];
          // Runs with (i & k) == 0 go descending, the others ascending; the last merge (k =
          // kSortN) has every i below k, so the whole array ends descending.
          if (((i & k) == 0) ? (a < b) : (a > b)) {
            s[i] = b;
            s[p] = a;
          }
        }
      }
      __syncthreads();
    }
  }
}

// blockIdx.x = chunk of kSortN logits, blockIdx.y = row: the chunk's best kDevTop keys into
// part [row][chunk][kDevTop].
__global__ void TopChunkKernel(const float* __restrict__ logits, int64_t ld, int64_t n_vocab,
                               uint64_t* __restrict__ part) {
  __shared__ uint64_t s[kSortN];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kSortN;
  const float* row = logits + blockIdx.y * ld;
  for (int i = threadIdx.x; i < kSortN; i += blockDim.x) {
    const int64_t t = base + i;
    s[i] = t < n_vocab ? Key(row[t], static_cast<uint32_t>(t)) : 0;
  }
  __syncthreads();
  SortDescending(s);
  uint64_t* out = part + (static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x) * kDevTop;
  for (int i = threadIdx.x; i < kDevTop; i += blockDim.x) out[i] = s[i];
}

// blockIdx.x = row: the best kDevTop of its chunks' lists into top [row][kDevTop].
__global__ void TopMergeKernel(const uint64_t* __restrict__ part, int n_chunks, DevTop* __restrict__ top) {
  __shared__ uint64_t s[kSortN];
  const int n = n_chunks * kDevTop;
  const uint64_t* in = part + static_cast<int64_t>(blockIdx.x) * n;
  for (int i = threadIdx.x; i < kSortN; i += blockDim.x) s[i] = i < n ? in[i] : 0;
  __syncthreads();
  SortDescending(s);
  for (int i = threadIdx.x; i < kDevTop; i += blockDim.x) top[static_cast<int64_t>(blockIdx.x) * kDevTop + i] = FromKey(s[i]);
}

}  // namespace

int64_t TopLogitsScratchWords(int64_t rows, int64_t n_vocab) {
  return rows * ((n_vocab + kSortN - 1) / kSortN) * kDevTop;
}

cudaError_t LaunchTopLogits(const float* logits, int64_t ld, int64_t rows, int64_t n_vocab, uint64_t* scratch,
                            DevTop* top, cudaStream_t s) {
  const int64_t n_chunks = (n_vocab + kSortN - 1) / kSortN;
  if (rows <= 0 || n_vocab < kDevTop || n_chunks * kDevTop > kSortN || rows > 65535) return cudaErrorInvalidValue;
  TopChunkKernel<<<dim3(static_cast<unsigned>(n_chunks), static_cast<unsigned>(rows)), kThreads, 0, s>>>(
      logits, ld, n_vocab, scratch);
  TopMergeKernel<<<static_cast<unsigned>(rows), kThreads, 0, s>>>(scratch, static_cast<int>(n_chunks), top);
  return cudaGetLastError();
}

}  // namespace qwenmux::runtime::cuda
