// Repacking of GGUF blocks into device planes, the decode matrix-vector kernel, and the
// dequantization kernels (f16/bf16 scratch for the tensor-core GEMM, embedding rows).
#include "runtime/cuda/cuda_quant.cuh"

#include <cstdlib>
#include <string_view>

namespace qwenmux::runtime::cuda {

namespace {

constexpr size_t kPlaneAlign = 256;
size_t RoundUp(size_t n) { return (n + kPlaneAlign - 1) / kPlaneAlign * kPlaneAlign; }

int64_t BlockElems(TensorType t) {
  switch (t) {
    case TensorType::kF32:
    case TensorType::kF16:
    case TensorType::kBF16: return 1;
    case TensorType::kQ8_0:
    case TensorType::kQ4_0: return 32;
    case TensorType::kQ4_K:
    case TensorType::kQ5_K:
    case TensorType::kQ6_K: return 256;
    default: return 0;
  }
}

// Raw GGUF block bytes.
int64_t RawBlockBytes(TensorType t) {
  switch (t) {
    case TensorType::kQ8_0: return 34;
    case TensorType::kQ4_0: return 18;
    case TensorType::kQ4_K: return 144;
    case TensorType::kQ5_K: return 176;
    case TensorType::kQ6_K: return 210;
    default: return 0;
  }
}

// One thread per block: copy its fields into the planes (byte copies: raw blocks are only
// 2-byte aligned).
__global__ void RepackKernel(DevMatrix m, const uint8_t* raw, int64_t block0, int64_t nblocks, int64_t raw_bytes) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= nblocks) return;
  const uint8_t* src = raw + i * raw_bytes;
  const int64_t b = block0 + i;
  auto copy = [](uint8_t* dst, const uint8_t* s, int n) {
    for (int j = 0; j < n; ++j) dst[j] = s[j];
  };
  switch (m.type) {
    case TensorType::kQ8_0:
      copy(m.aux + b * 2, src, 2);
      copy(m.qs + b * 32, src + 2, 32);
      break;
    case TensorType::kQ4_0:
      copy(m.aux + b * 2, src, 2);
      copy(m.qs + b * 16, src + 2, 16);
      break;
    case TensorType::kQ4_K:
      copy(m.aux + b * 16, src, 16);
      copy(m.qs + b * 128, src + 16, 128);
      break;
    case TensorType::kQ5_K:
      copy(m.aux + b * 16, src, 16);
      copy(m.aux2 + b * 32, src + 16, 32);
      copy(m.qs + b * 128, src + 48, 128);
      break;
    case TensorType::kQ6_K:
      copy(m.qs + b * 128, src, 128);
      copy(m.aux2 + b * 64, src + 128, 64);
      copy(m.aux + b * 16, src + 192, 16);
      copy(m.aux3 + b * 2, src + 208, 2);
      break;
    default: break;
  }
}

constexpr int kWarpsPerBlock = 4;

template <TensorType T, int NT>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    MatVecKernel(DevMatrix w, const float* __restrict__ x, int64_t ldx, float* __restrict__ y, int64_t ldy,
                 int accumulate) {
  using U = Unit<T>;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= w.rows) return;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  const int64_t units = w.cols / U::kSize;
  for (int64_t u = lane; u < units; u += 32) {
    float v[U::kSize];
    U::Load(w, row, u, v);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float4* xp = reinterpret_cast<const float4*>(x + t * ldx + u * U::kSize);
      float s = 0.0f;
#pragma unroll
      for (int i = 0; i < U::kSize / 4; ++i) {
        const float4 xv = __ldg(xp + i);
        s += v[4 * i] * xv.x + v[4 * i + 1] * xv.y + v[4 * i + 2] * xv.z + v[4 * i + 3] * xv.w;
      }
      acc[t] += s;
    }
  }
  StoreRowSums(acc, lane, y, ldy, row, accumulate);
}

// The decode kernel for rows of cols % 256 == 0: one warp per row, 256 columns per step, each
// lane 8 of them (Lane8<T>), so weight and x loads of a warp are adjacent. Per token the sum
// runs in the same order whatever NT is (batch-invariant).
template <TensorType T, int NT>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    MatVec8Kernel(DevMatrix w, const float* __restrict__ x, int64_t ldx, float* __restrict__ y, int64_t ldy,
                  int accumulate) {
  using L = Lane8<T>;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= w.rows) return;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  const int64_t steps = w.cols / 256;
#pragma unroll 4
  for (int64_t st = 0; st < steps; ++st) {
    float v[8];
    L::Load(w, row, st, lane, v);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float* xt = x + t * ldx;
      float s = 0.0f;
#pragma unroll
      for (int g = 0; g < L::kGroups; ++g) {
        const int64_t o = L::XOff(st, lane, g);
        if constexpr (L::kWidth == 4) {
          const float4 xv = __ldg(reinterpret_cast<const float4*>(xt + o));
          s += v[4 * g] * xv.x + v[4 * g + 1] * xv.y + v[4 * g + 2] * xv.z + v[4 * g + 3] * xv.w;
        } else {
          const float2 xv = __ldg(reinterpret_cast<const float2*>(xt + o));
          s += v[2 * g] * xv.x + v[2 * g + 1] * xv.y;
        }
      }
      acc[t] += s;
    }
  }
  StoreRowSums(acc, lane, y, ldy, row, accumulate);
}

template <TensorType T>
__global__ void DequantizeKernel(DevMatrix w, int64_t row0, int64_t nrows, uint16_t* out, int bf16) {
  using U = Unit<T>;
  const int64_t units = w.cols / U::kSize;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= nrows * units) return;
  const int64_t r = i / units, u = i % units;
  float v[U::kSize];
  U::Load(w, row0 + r, u, v);
  uint4* dst = reinterpret_cast<uint4*>(out + r * w.cols + u * U::kSize);
#pragma unroll
  for (int j = 0; j < U::kSize / 8; ++j) {
    uint32_t words[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float a = v[8 * j + 2 * k], b = v[8 * j + 2 * k + 1];
      uint16_t ha, hb;
      if (bf16) {
        ha = __bfloat16_as_ushort(__float2bfloat16(a));
        hb = __bfloat16_as_ushort(__float2bfloat16(b));
      } else {
        ha = __half_as_ushort(__float2half(a));
        hb = __half_as_ushort(__float2half(b));
      }
      words[k] = static_cast<uint32_t>(ha) | (static_cast<uint32_t>(hb) << 16);
    }
    dst[j] = make_uint4(words[0], words[1], words[2], words[3]);
  }
}

template <TensorType T>
__global__ void EmbedKernel(DevMatrix w, const int32_t* ids, float* out) {
  using U = Unit<T>;
  const int64_t t = blockIdx.x;
  const int64_t row = ids[t];
  const int64_t units = w.cols / U::kSize;
  for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
    float v[U::kSize];
    U::Load(w, row, u, v);
    float* dst = out + t * w.cols + u * U::kSize;
#pragma unroll
    for (int j = 0; j < U::kSize; ++j) dst[j] = v[j];
  }
}

// QWENMUX_CUDA_MATVEC=lane8 turns the warp-coalesced kernel on for rows of cols % 256 == 0.
// Off by default until it has run on a GPU: the per-unit kernel is the one validated on an H100
// (tests/cuda, 2026-12-07); the coalesced one is built and compiled but not yet measured.
bool UseLane8() {
  static const bool use = [] {
    const char* e = std::getenv("QWENMUX_CUDA_MATVEC");
    return e && std::string_view(e) == "lane8";
  }();
  return use;
}

template <TensorType T>
void LaunchMatVecN(const DevMatrix& w, const float* x, int64_t ldx, float* y, int64_t ldy, int64_t nt,
                   bool accumulate, unsigned grid, MatVecLayout layout, cudaStream_t s) {
  const int acc = accumulate ? 1 : 0;
  if (layout == MatVecLayout::kDefault) layout = UseLane8() ? MatVecLayout::kLane8 : MatVecLayout::kPerUnit;
  const bool lane8 = w.cols % 256 == 0 && layout == MatVecLayout::kLane8;
  switch (nt) {
#define QWENMUX_MATVEC_CASE(K)                                                              \
  case K:                                                                                   \
    if (lane8) {                                                                            \
      MatVec8Kernel<T, K><<<grid, kWarpsPerBlock * 32, 0, s>>>(w, x, ldx, y, ldy, acc);    \
    } else {                                                                                \
      MatVecKernel<T, K><<<grid, kWarpsPerBlock * 32, 0, s>>>(w, x, ldx, y, ldy, acc);     \
    }                                                                                       \
    break;
    QWENMUX_MATVEC_CASE(1)
    QWENMUX_MATVEC_CASE(2)
    QWENMUX_MATVEC_CASE(3)
    QWENMUX_MATVEC_CASE(4)
    QWENMUX_MATVEC_CASE(5)
    QWENMUX_MATVEC_CASE(6)
    QWENMUX_MATVEC_CASE(7)
    QWENMUX_MATVEC_CASE(8)
#undef QWENMUX_MATVEC_CASE
    default: break;
  }
}

}  // namespace

PlaneRowBytes PlaneBytesPerRow(TensorType type, int64_t cols) {
  PlaneRowBytes p;
  const size_t c = static_cast<size_t>(cols);
  switch (type) {
    case TensorType::kF32: p.qs = c * 4; break;
    case TensorType::kF16:
    case TensorType::kBF16: p.qs = c * 2; break;
    case TensorType::kQ8_0: p.qs = c; p.aux = c / 32 * 2; break;
    case TensorType::kQ4_0: p.qs = c / 2; p.aux = c / 32 * 2; break;
    case TensorType::kQ4_K: p.qs = c / 2; p.aux = c / 256 * 16; break;
    case TensorType::kQ5_K: p.qs = c / 2; p.aux = c / 256 * 16; p.aux2 = c / 256 * 32; break;
    case TensorType::kQ6_K: p.qs = c / 2; p.aux = c / 256 * 16; p.aux2 = c / 256 * 64; p.aux3 = c / 256 * 2; break;
    default: break;
  }
  return p;
}

bool DeviceSupports(TensorType type, int64_t cols) {
  const int64_t be = BlockElems(type);
  if (be == 0 || cols <= 0) return false;
  // Units: 32 values for the simple types, 256-value blocks for the K-quants.
  return cols % (be == 1 ? 32 : be) == 0;
}

size_t DevMatrixBytes(TensorType type, int64_t rows, int64_t cols) {
  const PlaneRowBytes p = PlaneBytesPerRow(type, cols);
  const size_t r = static_cast<size_t>(rows);
  return RoundUp(p.qs * r) + RoundUp(p.aux * r) + RoundUp(p.aux2 * r) + RoundUp(p.aux3 * r);
}

void SetPlanes(DevMatrix& m, uint8_t* base) {
  const PlaneRowBytes p = PlaneBytesPerRow(m.type, m.cols);
  const size_t r = static_cast<size_t>(m.rows);
  m.qs = base;
  base += RoundUp(p.qs * r);
  m.aux = p.aux ? base : nullptr;
  base += RoundUp(p.aux * r);
  m.aux2 = p.aux2 ? base : nullptr;
  base += RoundUp(p.aux2 * r);
  m.aux3 = p.aux3 ? base : nullptr;
}

DevMatrix DevMatrix::Slice(int64_t begin, int64_t count) const {
  const PlaneRowBytes p = PlaneBytesPerRow(type, cols);
  const size_t b = static_cast<size_t>(begin);
  DevMatrix m = *this;
  m.rows = count;
  m.qs = qs + b * p.qs;
  if (aux) m.aux = aux + b * p.aux;
  if (aux2) m.aux2 = aux2 + b * p.aux2;
  if (aux3) m.aux3 = aux3 + b * p.aux3;
  return m;
}

cudaError_t LaunchRepack(const DevMatrix& m, const uint8_t* raw, int64_t row0, int64_t nrows, cudaStream_t s) {
  const int64_t be = BlockElems(m.type);
  if (be == 0) return cudaErrorInvalidValue;
  if (be == 1) {
    const size_t rb = PlaneBytesPerRow(m.type, m.cols).qs;
    return cudaMemcpyAsync(m.qs + static_cast<size_t>(row0) * rb, raw, static_cast<size_t>(nrows) * rb,
                           cudaMemcpyDeviceToDevice, s);
  }
  const int64_t per_row = m.cols / be;
  const int64_t nblocks = nrows * per_row;
  const int threads = 256;
  RepackKernel<<<static_cast<unsigned>((nblocks + threads - 1) / threads), threads, 0, s>>>(
      m, raw, row0 * per_row, nblocks, RawBlockBytes(m.type));
  return cudaGetLastError();
}

cudaError_t LaunchMatVec(const DevMatrix& w, const float* x, int64_t ldx, float* y, int64_t ldy, int64_t n,
                         bool accumulate, cudaStream_t s, MatVecLayout layout) {
  if (w.rows == 0 || n == 0) return cudaSuccess;
  const unsigned grid = static_cast<unsigned>((w.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  cudaError_t err = cudaSuccess;
  for (int64_t t0 = 0; t0 < n && err == cudaSuccess; t0 += 8) {
    const int64_t nt = n - t0 < 8 ? n - t0 : 8;
    const float* xt = x + t0 * ldx;
    float* yt = y + t0 * ldy;
    bool ok = true;
    QWENMUX_DISPATCH_DTYPE(w.type, ok, LaunchMatVecN<T>(w, xt, ldx, yt, ldy, nt, accumulate, grid, layout, s))
    err = ok ? cudaGetLastError() : cudaErrorInvalidValue;
  }
  return err;
}

cudaError_t LaunchDequantize(const DevMatrix& w, int64_t row0, int64_t nrows, uint16_t* out, bool bf16,
                             cudaStream_t s) {
  if (nrows == 0) return cudaSuccess;
  bool ok = true;
  const int b16 = bf16 ? 1 : 0;
  QWENMUX_DISPATCH_DTYPE(w.type, ok, {
    const int64_t total = nrows * (w.cols / Unit<T>::kSize);
    DequantizeKernel<T><<<static_cast<unsigned>((total + 127) / 128), 128, 0, s>>>(w, row0, nrows, out, b16);
  })
  return ok ? cudaGetLastError() : cudaErrorInvalidValue;
}

cudaError_t LaunchEmbedRows(const DevMatrix& w, const int32_t* ids, int64_t n, float* out, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  bool ok = true;
  QWENMUX_DISPATCH_DTYPE(w.type, ok, EmbedKernel<T><<<static_cast<unsigned>(n), 128, 0, s>>>(w, ids, out))
  return ok ? cudaGetLastError() : cudaErrorInvalidValue;
}

}  // namespace qwenmux::runtime::cuda
