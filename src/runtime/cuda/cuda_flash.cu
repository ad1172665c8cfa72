// Causal flash-style attention for prompt-sized steps (FlashAttention-2's scheme on tensor cores):
// a block takes a tile of up to 64 consecutive prompt tokens of one sequence and one query head;
// its 4 warps hold 16 query rows each. Keys and values stream from the f16 cache through shared
// memory 64 positions at a time; S = Q K^T and O += P V run as mma.sync m16n8k16 (f16 in, f32
// accumulate) with S, P and O in registers, and the softmax is online per row (base 2). The
// probabilities never leave registers: an S accumulator fragment is laid out as the A operand of
// the P V product.
#include <cuda_fp16.h>

#include <cfloat>
#include <cstdint>

#include "runtime/cuda/cuda_kv.cuh"

namespace qwenmux::runtime::cuda {

namespace {

constexpr int kHd = 128;             // head dim
constexpr int kRows = 64;            // query rows per block (kFaTileRows)
constexpr int kKeys = 64;            // key positions per shared-memory tile
constexpr int kWarps = kRows / 16;   // 16 rows per warp
constexpr int kLd = kHd + 8;         // shared row stride in halves: conflict-free fragment loads

__device__ __forceinline__ uint32_t PackHalf2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// D = A B + D, m16n8k16, row-major A (4 regs of half2), column-major B (2 regs), f32 C/D.
__device__ __forceinline__ void Mma(float* d, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 b16 matrices, transposed, from the row addresses lanes 0-31 give (8 per matrix).
__device__ __forceinline__ void LdMatrixX4Trans(const uint16_t* p, uint32_t* r) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

// Positions [key0, key0 + 64) of one head into shared memory (row stride kLd): one cache block,
// whose rows are contiguous at src; rows at or past `end` are zeros (the cache there may hold
// anything, NaN included).
__device__ __forceinline__ void LoadKeys(const uint16_t* src, int32_t key0, int32_t end, uint16_t* dst) {
  for (int i = threadIdx.x; i < kKeys * (kHd / 8); i += blockDim.x) {
    const int r = i / (kHd / 8), c = (i % (kHd / 8)) * 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (key0 + r < end) v = *reinterpret_cast<const uint4*>(src + static_cast<size_t>(r) * kHd + c);
    *reinterpret_cast<uint4*>(dst + r * kLd + c) = v;
  }
}

// blockIdx.x = tile, blockIdx.y = query head. tiles[2 i] = the tile's first token, tiles[2 i + 1]
// its row count; its tokens are consecutive positions pos[t0] .. of sequence seq[t0].
__global__ void __launch_bounds__(kWarps * 32)
    FlashPrefillKernel(const float* q, int32_t n_head, const int32_t* pos, const int32_t* seq, const int32_t* tiles,
                       KvLayer kv, float* out) {
  __shared__ __align__(16) uint16_t ks[kKeys * kLd];
  __shared__ __align__(16) uint16_t vs[kKeys * kLd];
  const int32_t t0 = tiles[2 * blockIdx.x], rows = tiles[2 * blockIdx.x + 1];
  const int h = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t4 = lane % 4;  // mma fragment coordinates
  const int32_t p0 = pos[t0];
  const int32_t end = p0 + rows;  // keys [0, end) are visible to the tile's last row
  const int kvh = h / (n_head / kv.n_head_kv);
  const int32_t sq = seq[t0];

  // This thread's two query rows (g and g + 8 of the warp's 16); rows past the tile repeat its
  // last row (finite work, never written).
  const int r_lo = min(warp * 16 + g, rows - 1), r_hi = min(warp * 16 + g + 8, rows - 1);
  const int32_t pq_lo = p0 + r_lo, pq_hi = p0 + r_hi;
  const int32_t warp_last = p0 + min(warp * 16 + 15, rows - 1);  // the warp's last visible key

  // Q as A fragments for the 8 k-steps over the head dim, scaled by log2(e) / sqrt(128).
  const float qs = 1.4426950408889634f * rsqrtf(static_cast<float>(kHd));
  uint32_t qa[kHd / 16][4];
  {
    const float* qlo = q + (static_cast<int64_t>(t0 + r_lo) * n_head + h) * kHd;
    const float* qhi = q + (static_cast<int64_t>(t0 + r_hi) * n_head + h) * kHd;
#pragma unroll
    for (int kk = 0; kk < kHd / 16; ++kk) {
      const int c = kk * 16 + 2 * t4;
      const float2 a0 = *reinterpret_cast<const float2*>(qlo + c);
      const float2 a1 = *reinterpret_cast<const float2*>(qhi + c);
      const float2 a2 = *reinterpret_cast<const float2*>(qlo + c + 8);
      const float2 a3 = *reinterpret_cast<const float2*>(qhi + c + 8);
      qa[kk][0] = PackHalf2(a0.x * qs, a0.y * qs);
      qa[kk][1] = PackHalf2(a1.x * qs, a1.y * qs);
      qa[kk][2] = PackHalf2(a2.x * qs, a2.y * qs);
      qa[kk][3] = PackHalf2(a3.x * qs, a3.y * qs);
    }
  }

  float o[kHd / 8][4];  // O rows g, g + 8 x the 16 n-tiles of 8 dims
#pragma unroll
  for (int j = 0; j < kHd / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m_lo = -FLT_MAX, m_hi = -FLT_MAX, l_lo = 0.0f, l_hi = 0.0f;  // l: this thread's columns only

  for (int32_t key0 = 0; key0 < end; key0 += kKeys) {
    __syncthreads();  // the previous tile's readers are done
    const size_t row0 = KvRow(kv, sq, kvh, key0);  // key0 starts a cache block
    LoadKeys(kv.k + row0, key0, end, ks);
    LoadKeys(kv.v + row0, key0, end, vs);
    __syncthreads();
    if (key0 > warp_last) continue;  // every row of this warp is before the whole tile

    float s[kKeys / 8][4];
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
      const uint16_t* kr = ks + (j * 8 + g) * kLd + 2 * t4;
#pragma unroll
      for (int kk = 0; kk < kHd / 16; ++kk) {
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(kr + kk * 16);
        const uint32_t b1 = *reinterpret_cast<const uint32_t*>(kr + kk * 16 + 8);
        Mma(s[j], qa[kk], b0, b1);
      }
    }
    // Causal mask and the online softmax of rows g (elements 0, 1) and g + 8 (2, 3).
    float mx_lo = -FLT_MAX, mx_hi = -FLT_MAX;
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
      const int32_t key = key0 + j * 8 + 2 * t4;
      if (key > pq_lo) s[j][0] = -FLT_MAX;
      if (key + 1 > pq_lo) s[j][1] = -FLT_MAX;
      if (key > pq_hi) s[j][2] = -FLT_MAX;
      if (key + 1 > pq_hi) s[j][3] = -FLT_MAX;
      mx_lo = fmaxf(mx_lo, fmaxf(s[j][0], s[j][1]));
      mx_hi = fmaxf(mx_hi, fmaxf(s[j][2], s[j][3]));
    }
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, off));
      mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, off));
    }
    const float mn_lo = fmaxf(m_lo, mx_lo), mn_hi = fmaxf(m_hi, mx_hi);
    const float c_lo = exp2f(m_lo - mn_lo), c_hi = exp2f(m_hi - mn_hi);
    m_lo = mn_lo, m_hi = mn_hi;
    l_lo *= c_lo, l_hi *= c_hi;
#pragma unroll
    for (int j = 0; j < kHd / 8; ++j) {
      o[j][0] *= c_lo, o[j][1] *= c_lo;
      o[j][2] *= c_hi, o[j][3] *= c_hi;
    }
    uint32_t pa[kKeys / 16][4];  // P as A fragments over the tile's 4 key steps of 16
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
      // Masked entries hold -FLT_MAX: exp2 of (-FLT_MAX - m) is 0 for any finite m.
      const float e0 = exp2f(s[j][0] - mn_lo), e1 = exp2f(s[j][1] - mn_lo);
      const float e2 = exp2f(s[j][2] - mn_hi), e3 = exp2f(s[j][3] - mn_hi);
      l_lo += e0 + e1, l_hi += e2 + e3;
      pa[j / 2][(j % 2) * 2] = PackHalf2(e0, e1);
      pa[j / 2][(j % 2) * 2 + 1] = PackHalf2(e2, e3);
    }
    // O += P V: V's fragments (column-major B: k = key, n = dim) by transposed ldmatrix from the
    // row-major tile; one x4 load gives b0, b1 of two n-tiles.
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
#pragma unroll
      for (int j = 0; j < kHd / 8; j += 2) {
        const int mat = lane / 8, r = lane % 8;
        const uint16_t* p = vs + (kk * 16 + (mat % 2) * 8 + r) * kLd + j * 8 + (mat / 2) * 8;
        uint32_t b[4];
        LdMatrixX4Trans(p, b);
        Mma(o[j], pa[kk], b[0], b[1]);
        Mma(o[j + 1], pa[kk], b[2], b[3]);
      }
    }
  }

#pragma unroll
  for (int off = 1; off < 4; off <<= 1) {
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, off);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, off);
  }
  const float inv_lo = 1.0f / l_lo, inv_hi = 1.0f / l_hi;
  const int row_lo = warp * 16 + g, row_hi = row_lo + 8;
#pragma unroll
  for (int j = 0; j < kHd / 8; ++j) {
    const int d = j * 8 + 2 * t4;
    if (row_lo < rows) {
      float* dst = out + (static_cast<int64_t>(t0 + row_lo) * n_head + h) * kHd + d;
      *reinterpret_cast<float2*>(dst) = make_float2(o[j][0] * inv_lo, o[j][1] * inv_lo);
    }
    if (row_hi < rows) {
      float* dst = out + (static_cast<int64_t>(t0 + row_hi) * n_head + h) * kHd + d;
      *reinterpret_cast<float2*>(dst) = make_float2(o[j][2] * inv_hi, o[j][3] * inv_hi);
    }
  }
}

}  // namespace

int32_t FlashTiles(const int32_t* pos, const int32_t* seq, int64_t n, int32_t* tiles) {
  int32_t count = 0;
  for (int64_t t = 0; t < n; ++t) {
    const bool joins = count > 0 && tiles[2 * count - 1] < kFaTileRows && seq[t] == seq[t - 1] &&
                       pos[t] == pos[t - 1] + 1;
    if (joins) {
      ++tiles[2 * count - 1];
    } else {
      tiles[2 * count] = static_cast<int32_t>(t);
      tiles[2 * count + 1] = 1;
      ++count;
    }
  }
  return count;
}

cudaError_t LaunchFlashPrefill(const float* q, int32_t n_head, const int32_t* pos, const int32_t* seq,
                               const int32_t* tiles, int32_t n_tiles, KvLayer kv, float* out, cudaStream_t s) {
  if (n_tiles == 0) return cudaSuccess;
  static_assert(kRows == kFaTileRows, "the host's tiles are the kernel's");
  static_assert(kKeys == kKvBlock, "a key tile is one cache block");
  FlashPrefillKernel<<<dim3(static_cast<unsigned>(n_tiles), static_cast<unsigned>(n_head)), kWarps * 32, 0, s>>>(
      q, n_head, pos, seq, tiles, kv, out);
  return cudaGetLastError();
}

}  // namespace qwenmux::runtime::cuda
