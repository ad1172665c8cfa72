// Tensor-core matrix product for prefill and large batches (WMMA 16x16x16, f32 accumulation):
//   C[m, n] (+)= sum_k A[m, k] * B[n, k]
// A = activations [M tokens, K] and B = weights [N rows, K], both row-major f16 or bf16.
// Block tile 64 (M) x 128 (N) x 32 (K), 8 warps of 32x32, register-staged double buffering.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include "runtime/cuda/cuda_kernels.h"

namespace qwenmux::runtime::cuda {

namespace {

constexpr int kBM = 64, kBN = 128, kBK = 32, kPad = 8;
constexpr int kThreads = 256;

template <class H>
__global__ void __launch_bounds__(kThreads)
    GemmKernel(const H* __restrict__ a, int64_t lda, const H* __restrict__ b, int64_t ldb, float* __restrict__ c,
               int64_t ldc, int64_t M, int64_t N, int64_t K, int accumulate) {
  using namespace nvcuda;
  struct Tiles {
    H as[2][kBM][kBK + kPad];
    H bs[2][kBN][kBK + kPad];
  };
  constexpr int kCld = kBN + 4;
  constexpr size_t kBytes = sizeof(Tiles) > sizeof(float) * kBM * kCld ? sizeof(Tiles) : sizeof(float) * kBM * kCld;
  __shared__ __align__(128) unsigned char smem[kBytes];
  Tiles& t = *reinterpret_cast<Tiles*>(smem);

  const int tid = threadIdx.x, warp = tid / 32;
  const int wm = warp / 4, wn = warp % 4;  // warp tile (wm*32, wn*32)
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kBM, n0 = static_cast<int64_t>(blockIdx.x) * kBN;

  // Each thread loads one uint4 (8 halves) of A and two of B per K step.
  const int a_r = tid / 4, a_c = (tid % 4) * 8;
  uint4 ra, rb[2];
  auto load = [&](int64_t k0) {
    const int64_t am = m0 + a_r;
    ra = am < M ? *reinterpret_cast<const uint4*>(a + am * lda + k0 + a_c) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int br = a_r + 64 * i;
      const int64_t bn = n0 + br;
      rb[i] = bn < N ? *reinterpret_cast<const uint4*>(b + bn * ldb + k0 + a_c) : make_uint4(0, 0, 0, 0);
    }
  };
  auto store = [&](int buf) {
    *reinterpret_cast<uint4*>(&t.as[buf][a_r][a_c]) = ra;
#pragma unroll
    for (int i = 0; i < 2; ++i) *reinterpret_cast<uint4*>(&t.bs[buf][a_r + 64 * i][a_c]) = rb[i];
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  load(0);
  store(0);
  __syncthreads();
  int buf = 0;
  for (int64_t k0 = 0; k0 < K; k0 += kBK) {
    const bool more = k0 + kBK < K;
    if (more) load(k0 + kBK);
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, H, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, H, wmma::col_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], &t.as[buf][wm * 32 + i * 16][kk], kBK + kPad);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], &t.bs[buf][wn * 32 + j * 16][kk], kBK + kPad);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    if (more) {
      store(buf ^ 1);
      __syncthreads();
      buf ^= 1;
    }
  }
  __syncthreads();
  float* cs = reinterpret_cast<float*>(smem);  // [kBM][kCld]
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(cs + (wm * 32 + i * 16) * kCld + wn * 32 + j * 16, acc[i][j], kCld, wmma::mem_row_major);
  __syncthreads();
  for (int i = tid; i < kBM * kBN; i += kThreads) {
    const int r = i / kBN, col = i % kBN;
    const int64_t gm = m0 + r, gn = n0 + col;
    if (gm < M && gn < N) {
      float* dst = c + gm * ldc + gn;
      const float v = cs[r * kCld + col];
      *dst = accumulate ? *dst + v : v;
    }
  }
}

__global__ void ToHalfKernel(const float* x, uint16_t* y, int64_t n, int bf16) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  y[i] = bf16 ? __bfloat16_as_ushort(__float2bfloat16(x[i])) : __half_as_ushort(__float2half(x[i]));
}

}  // namespace

cudaError_t LaunchGemm(const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb, float* c, int64_t ldc,
                       int64_t m, int64_t n, int64_t k, bool accumulate, bool bf16, cudaStream_t s) {
  if (m == 0 || n == 0) return cudaSuccess;
  if (k % kBK != 0 || lda % 8 != 0 || ldb % 8 != 0) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>((n + kBN - 1) / kBN), static_cast<unsigned>((m + kBM - 1) / kBM));
  if (bf16) {
    GemmKernel<__nv_bfloat16><<<grid, kThreads, 0, s>>>(reinterpret_cast<const __nv_bfloat16*>(a), lda,
                                                        reinterpret_cast<const __nv_bfloat16*>(b), ldb, c, ldc, m,
                                                        n, k, accumulate ? 1 : 0);
  } else {
    GemmKernel<__half><<<grid, kThreads, 0, s>>>(reinterpret_cast<const __half*>(a), lda,
                                                 reinterpret_cast<const __half*>(b), ldb, c, ldc, m, n, k,
                                                 accumulate ? 1 : 0);
  }
  return cudaGetLastError();
}

cudaError_t LaunchToHalf(const float* x, uint16_t* y, int64_t n, bool bf16, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  ToHalfKernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, s>>>(x, y, n, bf16 ? 1 : 0);
  return cudaGetLastError();
}

}  // namespace qwenmux::runtime::cuda
