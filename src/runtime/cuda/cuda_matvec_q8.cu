// The integer decode kernels: activations quantized to 8 bits per 32 values (QActs), weights
// read as packed integers and multiplied with __dp4a (4 int8 products a instruction), the block
// scales applied once per 32 (Q8_0, Q4_0, Q4_K/Q5_K sub-blocks) or 16 (Q6_K) values. The same
// scheme as the CPU kernels' 8-bit activations (src/kernels), with finer activation blocks.
//
// Per lane one unit of a row: a 32-value block (Q8_0, Q4_0) or a 64-value quarter of a 256-value
// super-block (Q4_K, Q5_K, Q6_K, as Unit<T> in cuda_quant.cuh); lanes take adjacent units, so a
// warp's weight loads are contiguous. One warp per row; a token's sum runs in the same order
// whatever else is in the batch (batch-invariant).
#include <cstdlib>
#include <cstring>

#include "runtime/cuda/cuda_quant.cuh"

namespace qwenmux::runtime::cuda {

namespace {

constexpr int kWarps = 4;  // rows per thread block

__device__ __forceinline__ float2 ActScale(const QActs& x, int64_t t, int64_t block) {
  return __ldg(reinterpret_cast<const float2*>(x.ds) + t * (x.ld / 32) + block);
}

// The 8 words of 32 activation bytes starting at column `col` of token t.
__device__ __forceinline__ void ActWords(const QActs& x, int64_t t, int64_t col, int* v) {
  const int4* p = reinterpret_cast<const int4*>(x.q + t * x.ld + col);
  const int4 a = __ldg(p), b = __ldg(p + 1);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

__device__ __forceinline__ void Load8(const uint8_t* p, int* v) {
  const int4 a = __ldg(reinterpret_cast<const int4*>(p)), b = __ldg(reinterpret_cast<const int4*>(p) + 1);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

template <DType T>
struct DotQ8;

// Q8_0: unit = block u of the row; sum = d * dx * sum(q * qx).
template <>
struct DotQ8<DType::kQ8_0> {
  static constexpr int kVals = 32;
  struct W {
    int q[8];
    float d;
  };
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t u, W* o) {
    const int64_t b = r * (w.cols / 32) + u;
    o->d = HalfBits(__ldg(reinterpret_cast<const uint16_t*>(w.aux) + b));
    Load8(w.qs + b * 32, o->q);
  }
  __device__ static float Dot(const W& wu, const QActs& x, int64_t t, int64_t u) {
    int xv[8];
    ActWords(x, t, u * 32, xv);
    int s = 0;
#pragma unroll
    for (int k = 0; k < 8; ++k) s = __dp4a(wu.q[k], xv[k], s);
    return wu.d * (ActScale(x, t, u).x * static_cast<float>(s));
  }
};

// Q4_0: value = d (q - 8); bytes' low nibbles are values 0..15, high nibbles 16..31.
template <>
struct DotQ8<DType::kQ4_0> {
  static constexpr int kVals = 32;
  struct W {
    int q[4];
    float d;
  };
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t u, W* o) {
    const int64_t b = r * (w.cols / 32) + u;
    o->d = HalfBits(__ldg(reinterpret_cast<const uint16_t*>(w.aux) + b));
    const int4 q = __ldg(reinterpret_cast<const int4*>(w.qs) + b);
    o->q[0] = q.x, o->q[1] = q.y, o->q[2] = q.z, o->q[3] = q.w;
  }
  __device__ static float Dot(const W& wu, const QActs& x, int64_t t, int64_t u) {
    int xv[8];
    ActWords(x, t, u * 32, xv);
    int s = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      s = __dp4a(wu.q[k] & 0x0F0F0F0F, xv[k], s);
      s = __dp4a((wu.q[k] >> 4) & 0x0F0F0F0F, xv[4 + k], s);
    }
    const float2 ds = ActScale(x, t, u);
    return wu.d * (ds.x * static_cast<float>(s) - 8.0f * ds.y);
  }
};

// Q4_K / Q5_K: unit u = chunk c = u % 4 of block u / 4: sub-block 2c (low nibbles, columns
// 64u .. 64u + 31) and 2c + 1 (high nibbles, the next 32); value = d sc q - dmin m.
template <bool kQ5>
struct DotK45 {
  static constexpr int kVals = 64;
  struct W {
    int lo[8], hi[8];
    float d1, m1, d2, m2;
  };
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t u, W* o) {
    const int64_t b = r * (w.cols / 256) + u / 4;
    const int c = static_cast<int>(u % 4);
    const uint4 hdr = __ldg(reinterpret_cast<const uint4*>(w.aux) + b);
    const uint8_t* hb = reinterpret_cast<const uint8_t*>(&hdr);
    const float d = HalfBits(static_cast<uint16_t>(hdr.x & 0xFFFF));
    const float dmin = HalfBits(static_cast<uint16_t>(hdr.x >> 16));
    float sc0, m0, sc1, m1;
    ScaleMinK4(2 * c, hb + 4, &sc0, &m0);
    ScaleMinK4(2 * c + 1, hb + 4, &sc1, &m1);
    o->d1 = d * sc0, o->m1 = dmin * m0, o->d2 = d * sc1, o->m2 = dmin * m1;
    int q[8];
    Load8(w.qs + b * 128 + c * 32, q);
    int qh[8] = {};
    if constexpr (kQ5) Load8(w.aux2 + b * 32, qh);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      o->lo[k] = q[k] & 0x0F0F0F0F;
      o->hi[k] = (q[k] >> 4) & 0x0F0F0F0F;
      if constexpr (kQ5) {
        o->lo[k] |= ((qh[k] >> (2 * c)) & 0x01010101) << 4;
        o->hi[k] |= ((qh[k] >> (2 * c + 1)) & 0x01010101) << 4;
      }
    }
  }
  __device__ static float Dot(const W& wu, const QActs& x, int64_t t, int64_t u) {
    int xa[8], xb[8];
    ActWords(x, t, u * 64, xa);
    ActWords(x, t, u * 64 + 32, xb);
    int sa = 0, sb = 0;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      sa = __dp4a(wu.lo[k], xa[k], sa);
      sb = __dp4a(wu.hi[k], xb[k], sb);
    }
    const float2 da = ActScale(x, t, 2 * u), db = ActScale(x, t, 2 * u + 1);
    return wu.d1 * (da.x * static_cast<float>(sa)) - wu.m1 * da.y + wu.d2 * (db.x * static_cast<float>(sb)) -
           wu.m2 * db.y;
  }
};
template <>
struct DotQ8<DType::kQ4_K> : DotK45<false> {};
template <>
struct DotQ8<DType::kQ5_K> : DotK45<true> {};

// Q6_K: unit u = quarter c of block u / 4: half h = c / 2, part p = c % 2. Values l < 32 of the
// unit (columns 64u + l) come from ql[l] (nibble p) and qh[l] bits 4p, 4p + 1; values 32 + l
// from ql[32 + l] and bits 4p + 2, 4p + 3; q - 32 in [-32, 31], one int8 scale per 16 values.
template <>
struct DotQ8<DType::kQ6_K> {
  static constexpr int kVals = 64;
  struct W {
    int a[8], b[8];  // int8 words of values 0..31 and 32..63
    int sc[4];
    float d;
  };
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t u, W* o) {
    const int64_t blk = r * (w.cols / 256) + u / 4;
    const int c = static_cast<int>(u % 4), h = c / 2, p = c % 2;
    o->d = HalfBits(__ldg(reinterpret_cast<const uint16_t*>(w.aux3) + blk));
    const int8_t* sc = reinterpret_cast<const int8_t*>(w.aux + blk * 16) + 8 * h + 4 * p;
#pragma unroll
    for (int i = 0; i < 4; ++i) o->sc[i] = __ldg(sc + i);
    int la[8], lb[8], qh[8];
    Load8(w.qs + blk * 128 + h * 64, la);
    Load8(w.qs + blk * 128 + h * 64 + 32, lb);
    Load8(w.aux2 + blk * 64 + h * 32, qh);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const int va = ((la[k] >> (4 * p)) & 0x0F0F0F0F) | (((qh[k] >> (4 * p)) & 0x03030303) << 4);
      const int vb = ((lb[k] >> (4 * p)) & 0x0F0F0F0F) | (((qh[k] >> (4 * p + 2)) & 0x03030303) << 4);
      o->a[k] = static_cast<int>(__vsub4(static_cast<unsigned>(va), 0x20202020u));
      o->b[k] = static_cast<int>(__vsub4(static_cast<unsigned>(vb), 0x20202020u));
    }
  }
  __device__ static float Dot(const W& wu, const QActs& x, int64_t t, int64_t u) {
    int xa[8], xb[8];
    ActWords(x, t, u * 64, xa);
    ActWords(x, t, u * 64 + 32, xb);
    int s[4] = {0, 0, 0, 0};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      s[0] = __dp4a(wu.a[k], xa[k], s[0]);
      s[1] = __dp4a(wu.a[4 + k], xa[4 + k], s[1]);
      s[2] = __dp4a(wu.b[k], xb[k], s[2]);
      s[3] = __dp4a(wu.b[4 + k], xb[4 + k], s[3]);
    }
    const float2 da = ActScale(x, t, 2 * u), db = ActScale(x, t, 2 * u + 1);
    return wu.d * (da.x * static_cast<float>(wu.sc[0] * s[0] + wu.sc[1] * s[1]) +
                   db.x * static_cast<float>(wu.sc[2] * s[2] + wu.sc[3] * s[3]));
  }
};

// Up to kMaxGroup matrices of one type and width sharing x (q/k/v, gate/up): one launch, the
// blocks of matrix i numbered from block0[i].
constexpr int kMaxGroup = 3;
struct Group {
  DevMatrix w[kMaxGroup];
  float* y[kMaxGroup];
  int64_t ldy[kMaxGroup];
  unsigned block0[kMaxGroup + 1];
  int count;
};

// U > 1: a lane issues the loads of up to U of its units before it multiplies any of them, so
// more bytes are in flight per warp (a row of 4,096 Q4_K values is 2 units a lane). The sums run
// in the same order for every U: the results are bit-identical.
template <DType T, int NT, int U>
__global__ void __launch_bounds__(kWarps * 32) MatVecQ8Kernel(Group g, QActs x, int accumulate) {
  using D = DotQ8<T>;
  int i = 0;
  while (i + 1 < g.count && blockIdx.x >= g.block0[i + 1]) ++i;
  const DevMatrix w = g.w[i];
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x - g.block0[i]) * kWarps + threadIdx.x / 32;
  if (row >= w.rows) return;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  const int64_t units = w.cols / D::kVals;
  for (int64_t u = lane; u < units; u += 32 * U) {
    typename D::W wu[U];
#pragma unroll
    for (int j = 0; j < U; ++j)
      if (u + 32 * j < units) D::Load(w, row, u + 32 * j, &wu[j]);
#pragma unroll
    for (int j = 0; j < U; ++j) {
      if (u + 32 * j < units) {
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[t] += D::Dot(wu[j], x, t, u + 32 * j);
      }
    }
  }
  StoreRowSums(acc, lane, g.y[i], g.ldy[i], row, accumulate);
}

// Units a lane loads ahead: 4, or QWENMUX_CUDA_MV_UNROLL=1 (one at a time, for A/B runs).
int UnitsAhead() {
  static const int u = [] {
    const char* e = std::getenv("QWENMUX_CUDA_MV_UNROLL");
    return e && std::strcmp(e, "1") == 0 ? 1 : 4;
  }();
  return u;
}

// blockIdx.y = slot s: rows of expert idx[s] of the stacked matrix against token s / act_div.
template <DType T>
__global__ void __launch_bounds__(kWarps * 32) MatVecQ8ExpertKernel(DevMatrix w, int64_t rows, QActs x,
                                                                    const int32_t* __restrict__ idx, int act_div,
                                                                    float* __restrict__ y, int64_t ldy) {
  using D = DotQ8<T>;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (row >= rows) return;
  const int64_t s = blockIdx.y;
  const int64_t wrow = static_cast<int64_t>(__ldg(idx + s)) * rows + row;
  const int64_t t = s / act_div;
  float acc[1] = {0.0f};
  const int64_t units = w.cols / D::kVals;
  for (int64_t u = lane; u < units; u += 32) {
    typename D::W wu;
    D::Load(w, wrow, u, &wu);
    acc[0] += D::Dot(wu, x, t, u);
  }
  StoreRowSums(acc, lane, y + s * ldy, ldy, row, 0);
}

// One warp per 32-value block: d = max |x| / 127, q = round(x / d), (d, d * sum q).
__global__ void QuantizeActsKernel(const float* __restrict__ x, int64_t ldx, int64_t n, int64_t cols, QActs out) {
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  const int64_t per_row = cols / 32;
  if (warp >= n * per_row) return;
  const int64_t t = warp / per_row, b = warp % per_row;
  const float v = x[t * ldx + b * 32 + lane];
  QuantizeWarpBlock(v, lane, QActsByte(out, t, b * 32 + lane), QActsPair(out, t, b * 32));
}

template <DType T>
void LaunchQ8N(const Group& g, const QActs& x, int64_t nt, int acc, cudaStream_t s) {
  const unsigned grid = g.block0[g.count];
  const bool ahead = UnitsAhead() > 1;
  switch (nt) {
#define QWENMUX_Q8_CASE(K)                                                 \
  case K:                                                                  \
    if (ahead) {                                                           \
      MatVecQ8Kernel<T, K, 4><<<grid, kWarps * 32, 0, s>>>(g, x, acc);     \
    } else {                                                               \
      MatVecQ8Kernel<T, K, 1><<<grid, kWarps * 32, 0, s>>>(g, x, acc);     \
    }                                                                      \
    break;
    QWENMUX_Q8_CASE(1)
    QWENMUX_Q8_CASE(2)
    QWENMUX_Q8_CASE(3)
    QWENMUX_Q8_CASE(4)
    QWENMUX_Q8_CASE(5)
    QWENMUX_Q8_CASE(6)
    QWENMUX_Q8_CASE(7)
    QWENMUX_Q8_CASE(8)
#undef QWENMUX_Q8_CASE
    default: break;
  }
}

}  // namespace

bool MatVecQ8Supports(DType t) {
  return t == DType::kQ8_0 || t == DType::kQ4_0 || t == DType::kQ4_K || t == DType::kQ5_K || t == DType::kQ6_K;
}

cudaError_t LaunchQuantizeActs(const float* x, int64_t ldx, int64_t n, int64_t cols, QActs out, cudaStream_t s) {
  if (cols % 32 != 0 || out.ld % 32 != 0 || cols > out.ld) return cudaErrorInvalidValue;
  const int64_t warps = n * (cols / 32);
  if (warps == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t blocks = (warps * 32 + kThreads - 1) / kThreads;
  QuantizeActsKernel<<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(x, ldx, n, cols, out);
  return cudaGetLastError();
}

cudaError_t LaunchMatVecQ8Group(const MatVecOut* outs, int count, const QActs& x, int64_t n, bool accumulate,
                                cudaStream_t s) {
  if (count < 1 || count > kMaxGroup) return cudaErrorInvalidValue;
  Group g{};
  g.count = count;
  const DType type = outs[0].w->type;
  const int64_t cols = outs[0].w->cols;
  if (!MatVecQ8Supports(type) || cols > x.ld) return cudaErrorInvalidValue;
  for (int i = 0; i < count; ++i) {
    if (outs[i].w->type != type || outs[i].w->cols != cols) return cudaErrorInvalidValue;
    g.w[i] = *outs[i].w;
    g.ldy[i] = outs[i].ldy;
    g.block0[i + 1] = g.block0[i] + static_cast<unsigned>((outs[i].w->rows + kWarps - 1) / kWarps);
  }
  if (g.block0[count] == 0 || n == 0) return cudaSuccess;
  const int acc = accumulate ? 1 : 0;
  for (int64_t t0 = 0; t0 < n; t0 += 8) {
    const int64_t nt = n - t0 < 8 ? n - t0 : 8;
    QActs xt = x;
    xt.q += t0 * x.ld;
    xt.ds += t0 * (x.ld / 32) * 2;
    for (int i = 0; i < count; ++i) g.y[i] = outs[i].y + t0 * outs[i].ldy;
    switch (type) {
      case DType::kQ8_0: LaunchQ8N<DType::kQ8_0>(g, xt, nt, acc, s); break;
      case DType::kQ4_0: LaunchQ8N<DType::kQ4_0>(g, xt, nt, acc, s); break;
      case DType::kQ4_K: LaunchQ8N<DType::kQ4_K>(g, xt, nt, acc, s); break;
      case DType::kQ5_K: LaunchQ8N<DType::kQ5_K>(g, xt, nt, acc, s); break;
      case DType::kQ6_K: LaunchQ8N<DType::kQ6_K>(g, xt, nt, acc, s); break;
      default: return cudaErrorInvalidValue;
    }
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

cudaError_t LaunchMatVecQ8Experts(const DevMatrix& stacked, int64_t rows, const QActs& x, const int32_t* idx,
                                  int64_t slots, int act_div, float* y, int64_t ldy, cudaStream_t s) {
  if (!MatVecQ8Supports(stacked.type) || stacked.cols > x.ld || rows <= 0 || act_div < 1 || slots > 65535) {
    return cudaErrorInvalidValue;
  }
  if (slots == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>((rows + kWarps - 1) / kWarps), static_cast<unsigned>(slots));
  switch (stacked.type) {
#define QWENMUX_EXPERT_CASE(K) \
  case DType::K: MatVecQ8ExpertKernel<DType::K><<<grid, kWarps * 32, 0, s>>>(stacked, rows, x, idx, act_div, y, ldy); break;
    QWENMUX_EXPERT_CASE(kQ8_0)
    QWENMUX_EXPERT_CASE(kQ4_0)
    QWENMUX_EXPERT_CASE(kQ4_K)
    QWENMUX_EXPERT_CASE(kQ5_K)
    QWENMUX_EXPERT_CASE(kQ6_K)
#undef QWENMUX_EXPERT_CASE
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t LaunchMatVecQ8(const DevMatrix& w, const QActs& x, float* y, int64_t ldy, int64_t n, bool accumulate,
                           cudaStream_t s) {
  const MatVecOut out{&w, y, ldy};
  return LaunchMatVecQ8Group(&out, 1, x, n, accumulate, s);
}

}  // namespace qwenmux::runtime::cuda
