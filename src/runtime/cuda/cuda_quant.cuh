// Device-side dequantization of the repacked planes (see cuda_kernels.h): Unit<T>::Load gives the
// kUnit consecutive values of unit u of row r as f32, with the reference dequantizers'
// arithmetic (src/quant/formats_*.cc). Units are 32 values for the simple types and 64 (half of
// a 128-value Q6_K half-block, one scale pair of Q4_K/Q5_K) for the K-quants.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "runtime/cuda/cuda_kernels.h"

namespace qwenmux::runtime::cuda {

using TensorType = DType;

__device__ __forceinline__ float HalfBits(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float Bf16Bits(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }

__device__ __forceinline__ void ScaleMinK4(int j, const uint8_t* q, float* sc, float* m) {
  if (j < 4) {
    *sc = static_cast<float>(q[j] & 63);
    *m = static_cast<float>(q[j + 4] & 63);
  } else {
    *sc = static_cast<float>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<float>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

template <TensorType T>
struct Unit;

template <>
struct Unit<TensorType::kF32> {
  static constexpr int kSize = 32;
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t u, float* v) {
    const float4* p = reinterpret_cast<const float4*>(w.qs) + (r * w.cols + u * kSize) / 4;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float4 f = __ldg(p + i);
      v[4 * i] = f.x, v[4 * i + 1] = f.y, v[4 * i + 2] = f.z, v[4 * i + 3] = f.w;
    }
  }
};

template <bool kBf16>
struct Unit16 {
  static constexpr int kSize = 32;
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t u, float* v) {
    const uint4* p = reinterpret_cast<const uint4*>(w.qs) + (r * w.cols + u * kSize) / 8;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 q = __ldg(p + i);
      const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint16_t lo = static_cast<uint16_t>(words[j] & 0xFFFF), hi = static_cast<uint16_t>(words[j] >> 16);
        v[8 * i + 2 * j] = kBf16 ? Bf16Bits(lo) : HalfBits(lo);
        v[8 * i + 2 * j + 1] = kBf16 ? Bf16Bits(hi) : HalfBits(hi);
      }
    }
  }
};
template <>
struct Unit<TensorType::kF16> : Unit16<false> {};
template <>
struct Unit<TensorType::kBF16> : Unit16<true> {};

template <>
struct Unit<TensorType::kQ8_0> {
  static constexpr int kSize = 32;
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t u, float* v) {
    const int64_t b = r * (w.cols / 32) + u;
    const float d = HalfBits(__ldg(reinterpret_cast<const uint16_t*>(w.aux) + b));
    const uint4* p = reinterpret_cast<const uint4*>(w.qs + b * 32);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint4 q = __ldg(p + i);
      const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        v[16 * i + j] = d * static_cast<float>(static_cast<int8_t>((words[j / 4] >> (8 * (j % 4))) & 0xFF));
      }
    }
  }
};

template <>
struct Unit<TensorType::kQ4_0> {
  static constexpr int kSize = 32;
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t u, float* v) {
    const int64_t b = r * (w.cols / 32) + u;
    const float d = HalfBits(__ldg(reinterpret_cast<const uint16_t*>(w.aux) + b));
    const uint4 q = __ldg(reinterpret_cast<const uint4*>(w.qs) + b);
    const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const uint32_t byte = (words[j / 4] >> (8 * (j % 4))) & 0xFF;
      v[j] = static_cast<float>(static_cast<int>(byte & 0xF) - 8) * d;
      v[j + 16] = static_cast<float>(static_cast<int>(byte >> 4) - 8) * d;
    }
  }
};

// Q4_K / Q5_K: unit u = chunk c (u % 4) of block u / 4: sub-blocks 2c (low nibbles) and 2c+1.
template <bool kQ5>
struct UnitK45 {
  static constexpr int kSize = 64;
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t u, float* v) {
    const int64_t b = r * (w.cols / 256) + u / 4;
    const int c = static_cast<int>(u % 4);
    const uint4 hdr = __ldg(reinterpret_cast<const uint4*>(w.aux) + b);
    const uint8_t* hb = reinterpret_cast<const uint8_t*>(&hdr);
    const float d = HalfBits(static_cast<uint16_t>(hdr.x & 0xFFFF));
    const float dmin = HalfBits(static_cast<uint16_t>(hdr.x >> 16));
    float sc0, m0, sc1, m1;
    ScaleMinK4(2 * c, hb + 4, &sc0, &m0);
    ScaleMinK4(2 * c + 1, hb + 4, &sc1, &m1);
    const float d1 = d * sc0, mm1 = dmin * m0, d2 = d * sc1, mm2 = dmin * m1;
    const uint4* qp = reinterpret_cast<const uint4*>(w.qs + b * 128 + c * 32);
    uint4 qv[2] = {__ldg(qp), __ldg(qp + 1)};
    const uint8_t* q = reinterpret_cast<const uint8_t*>(qv);
    uint4 hv[2];
    const uint8_t* qh = reinterpret_cast<const uint8_t*>(hv);
    if constexpr (kQ5) {
      const uint4* hp = reinterpret_cast<const uint4*>(w.aux2 + b * 32);
      hv[0] = __ldg(hp), hv[1] = __ldg(hp + 1);
    }
    const uint8_t u1 = static_cast<uint8_t>(1u << (2 * c)), u2 = static_cast<uint8_t>(2u << (2 * c));
#pragma unroll
    for (int l = 0; l < 32; ++l) {
      int lo = q[l] & 0xF, hi = q[l] >> 4;
      if constexpr (kQ5) {
        lo += (qh[l] & u1) ? 16 : 0;
        hi += (qh[l] & u2) ? 16 : 0;
      }
      v[l] = d1 * static_cast<float>(lo) - mm1;
      v[l + 32] = d2 * static_cast<float>(hi) - mm2;
    }
  }
};
template <>
struct Unit<TensorType::kQ4_K> : UnitK45<false> {};
template <>
struct Unit<TensorType::kQ5_K> : UnitK45<true> {};

// Q6_K: unit u = quarter c of block u / 4: half h = c / 2 (ql += 64h, qh += 32h, scales += 8h),
// part p = c % 2 (p = 0: y[l], y[l+32]; p = 1: y[l+64], y[l+96] of the half).
template <>
struct Unit<TensorType::kQ6_K> {
  static constexpr int kSize = 64;
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t u, float* v) {
    const int64_t b = r * (w.cols / 256) + u / 4;
    const int c = static_cast<int>(u % 4), h = c / 2, p = c % 2;
    const float d = HalfBits(__ldg(reinterpret_cast<const uint16_t*>(w.aux3) + b));
    const uint4 scv = __ldg(reinterpret_cast<const uint4*>(w.aux) + b);
    const int8_t* sc = reinterpret_cast<const int8_t*>(&scv) + 8 * h;
    const uint4* lp = reinterpret_cast<const uint4*>(w.qs + b * 128 + h * 64);
    uint4 lv[4] = {__ldg(lp), __ldg(lp + 1), __ldg(lp + 2), __ldg(lp + 3)};
    const uint8_t* ql = reinterpret_cast<const uint8_t*>(lv);
    const uint4* hp = reinterpret_cast<const uint4*>(w.aux2 + b * 64 + h * 32);
    uint4 hv[2] = {__ldg(hp), __ldg(hp + 1)};
    const uint8_t* qh = reinterpret_cast<const uint8_t*>(hv);
    const int shift_lo = 4 * p;  // nibble of ql
    const int shift_h = 4 * p;   // bits (0,2) or (4,6) of qh
#pragma unroll
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = static_cast<int8_t>(((ql[l] >> shift_lo) & 0xF) | (((qh[l] >> shift_h) & 3) << 4)) - 32;
      const int q2 = static_cast<int8_t>(((ql[l + 32] >> shift_lo) & 0xF) | (((qh[l] >> (shift_h + 2)) & 3) << 4)) - 32;
      v[l] = d * static_cast<float>(sc[is + 4 * p]) * static_cast<float>(q1);
      v[l + 32] = d * static_cast<float>(sc[is + 2 + 4 * p]) * static_cast<float>(q2);
    }
  }
};

// Lane8<T>: the warp-coalesced layout of the decode matrix-vector kernel. A warp reads 256
// consecutive values of a row per step (rows with cols % 256 == 0), each lane 8 of them, so
// that the lanes' weight loads and x loads fall on adjacent addresses. Load gives the lane's 8
// values (reference arithmetic, as Unit<T>) in kGroups runs of kWidth consecutive columns,
// starting at XOff(step, lane, g).
template <TensorType T>
struct Lane8;

// 32-value blocks and plain types: lane l holds columns 8 l .. 8 l + 7 of the step.
struct Lane8Contiguous {
  static constexpr int kGroups = 2, kWidth = 4;
  __device__ static int64_t XOff(int64_t step, int lane, int g) { return step * 256 + lane * 8 + g * 4; }
};

template <>
struct Lane8<TensorType::kF32> : Lane8Contiguous {
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t step, int lane, float* v) {
    const float4* p = reinterpret_cast<const float4*>(w.qs) + (r * w.cols + step * 256 + lane * 8) / 4;
    const float4 a = __ldg(p), b = __ldg(p + 1);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  }
};

template <bool kBf16>
struct Lane8Half : Lane8Contiguous {
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t step, int lane, float* v) {
    const uint4 q = __ldg(reinterpret_cast<const uint4*>(w.qs) + (r * w.cols + step * 256 + lane * 8) / 8);
    const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint16_t lo = static_cast<uint16_t>(words[j] & 0xFFFF), hi = static_cast<uint16_t>(words[j] >> 16);
      v[2 * j] = kBf16 ? Bf16Bits(lo) : HalfBits(lo);
      v[2 * j + 1] = kBf16 ? Bf16Bits(hi) : HalfBits(hi);
    }
  }
};
template <>
struct Lane8<TensorType::kF16> : Lane8Half<false> {};
template <>
struct Lane8<TensorType::kBF16> : Lane8Half<true> {};

// Q8_0: block step * 8 + lane / 4, its bytes 8 (lane % 4) .. + 7.
template <>
struct Lane8<TensorType::kQ8_0> : Lane8Contiguous {
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t step, int lane, float* v) {
    const int64_t b = r * (w.cols / 32) + step * 8 + lane / 4;
    const float d = HalfBits(__ldg(reinterpret_cast<const uint16_t*>(w.aux) + b));
    const uint2 q = __ldg(reinterpret_cast<const uint2*>(w.qs + b * 32 + (lane % 4) * 8));
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const uint32_t word = j < 4 ? q.x : q.y;
      v[j] = d * static_cast<float>(static_cast<int8_t>((word >> (8 * (j % 4))) & 0xFF));
    }
  }
};

// Q4_0: block step * 8 + lane / 4; part p = lane % 4 holds values 8 p .. 8 p + 7 of the block:
// low nibbles of bytes 8 p .. (p < 2), high nibbles of bytes 8 (p - 2) .. (p >= 2).
template <>
struct Lane8<TensorType::kQ4_0> : Lane8Contiguous {
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t step, int lane, float* v) {
    const int64_t b = r * (w.cols / 32) + step * 8 + lane / 4;
    const int p = lane % 4;
    const float d = HalfBits(__ldg(reinterpret_cast<const uint16_t*>(w.aux) + b));
    const uint2 q = __ldg(reinterpret_cast<const uint2*>(w.qs + b * 16 + (p % 2) * 8));
    const int shift = p < 2 ? 0 : 4;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const uint32_t byte = ((j < 4 ? q.x : q.y) >> (8 * (j % 4))) & 0xFF;
      v[j] = static_cast<float>(static_cast<int>((byte >> shift) & 0xF) - 8) * d;
    }
  }
};

// Q4_K / Q5_K: the step is block `step`; lane l reads bytes j0 .. j0 + 3 (j0 = 4 (l % 8)) of
// chunk c = l / 8: columns 64 c + j0 .. (low nibbles, sub-block 2c) and 64 c + 32 + j0 ..
// (high nibbles, sub-block 2c + 1).
template <bool kQ5>
struct Lane8K45 {
  static constexpr int kGroups = 2, kWidth = 4;
  __device__ static int64_t XOff(int64_t step, int lane, int g) {
    return step * 256 + (lane / 8) * 64 + g * 32 + (lane % 8) * 4;
  }
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t step, int lane, float* v) {
    const int64_t b = r * (w.cols / 256) + step;
    const int c = lane / 8, j0 = (lane % 8) * 4;
    const uint4 hdr = __ldg(reinterpret_cast<const uint4*>(w.aux) + b);
    const uint8_t* hb = reinterpret_cast<const uint8_t*>(&hdr);
    const float d = HalfBits(static_cast<uint16_t>(hdr.x & 0xFFFF));
    const float dmin = HalfBits(static_cast<uint16_t>(hdr.x >> 16));
    float sc0, m0, sc1, m1;
    ScaleMinK4(2 * c, hb + 4, &sc0, &m0);
    ScaleMinK4(2 * c + 1, hb + 4, &sc1, &m1);
    const float d1 = d * sc0, mm1 = dmin * m0, d2 = d * sc1, mm2 = dmin * m1;
    const uint32_t q = __ldg(reinterpret_cast<const uint32_t*>(w.qs + b * 128 + c * 32 + j0));
    uint32_t qh = 0;
    if constexpr (kQ5) qh = __ldg(reinterpret_cast<const uint32_t*>(w.aux2 + b * 32 + j0));
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t byte = (q >> (8 * i)) & 0xFF;
      int lo = static_cast<int>(byte & 0xF), hi = static_cast<int>(byte >> 4);
      if constexpr (kQ5) {
        const uint32_t h = (qh >> (8 * i)) & 0xFF;
        lo += (h >> (2 * c)) & 1 ? 16 : 0;
        hi += (h >> (2 * c + 1)) & 1 ? 16 : 0;
      }
      v[i] = d1 * static_cast<float>(lo) - mm1;
      v[4 + i] = d2 * static_cast<float>(hi) - mm2;
    }
  }
};
template <>
struct Lane8<TensorType::kQ4_K> : Lane8K45<false> {};
template <>
struct Lane8<TensorType::kQ5_K> : Lane8K45<true> {};

// Q6_K: the step is block `step`; lane l takes half h = l / 16 and positions l0, l0 + 1
// (l0 = 2 (l % 16)) of it: columns 128 h + l0 + 32 g (g < 4) from ql, qh and scale 2 g + l0 / 16.
template <>
struct Lane8<TensorType::kQ6_K> {
  static constexpr int kGroups = 4, kWidth = 2;
  __device__ static int64_t XOff(int64_t step, int lane, int g) {
    return step * 256 + (lane / 16) * 128 + (lane % 16) * 2 + g * 32;
  }
  __device__ static void Load(const DevMatrix& w, int64_t r, int64_t step, int lane, float* v) {
    const int64_t b = r * (w.cols / 256) + step;
    const int h = lane / 16, l0 = (lane % 16) * 2, is = l0 / 16;
    const float d = HalfBits(__ldg(reinterpret_cast<const uint16_t*>(w.aux3) + b));
    const int8_t* sc = reinterpret_cast<const int8_t*>(w.aux + b * 16) + 8 * h;
    const uint8_t* ql = w.qs + b * 128 + h * 64;
    const uint32_t qa = __ldg(reinterpret_cast<const uint16_t*>(ql + l0));
    const uint32_t qb = __ldg(reinterpret_cast<const uint16_t*>(ql + l0 + 32));
    const uint32_t qh = __ldg(reinterpret_cast<const uint16_t*>(w.aux2 + b * 64 + h * 32 + l0));
    const float s0 = static_cast<float>(__ldg(sc + is)), s1 = static_cast<float>(__ldg(sc + is + 2));
    const float s2 = static_cast<float>(__ldg(sc + is + 4)), s3 = static_cast<float>(__ldg(sc + is + 6));
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint32_t a = (qa >> (8 * i)) & 0xFF, bb = (qb >> (8 * i)) & 0xFF, hh = (qh >> (8 * i)) & 0xFF;
      const int q1 = static_cast<int>((a & 0xF) | (((hh >> 0) & 3) << 4)) - 32;
      const int q2 = static_cast<int>((bb & 0xF) | (((hh >> 2) & 3) << 4)) - 32;
      const int q3 = static_cast<int>((a >> 4) | (((hh >> 4) & 3) << 4)) - 32;
      const int q4 = static_cast<int>((bb >> 4) | (((hh >> 6) & 3) << 4)) - 32;
      v[i] = d * s0 * static_cast<float>(q1);
      v[2 + i] = d * s1 * static_cast<float>(q2);
      v[4 + i] = d * s2 * static_cast<float>(q3);
      v[6 + i] = d * s3 * static_cast<float>(q4);
    }
  }
};

// The 8-bit quantization of one 32-value block held one value per lane of a warp (all 32 lanes
// call it): q = round(v / d), d = max |v| / 127, block pair (d, d * sum q); see QActs.
__device__ __forceinline__ void QuantizeWarpBlock(float v, int lane, int8_t* q, float* ds_pair) {
  float amax = fabsf(v);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float d = amax / 127.0f;
  const int qv = amax > 0.0f ? __float2int_rn(v / d) : 0;
  int sum = qv;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  *q = static_cast<int8_t>(qv);
  if (lane == 0) *reinterpret_cast<float2*>(ds_pair) = make_float2(d, d * static_cast<float>(sum));
}

// Where value (t, col) of an activation matrix goes in `x`: its byte and its block's pair.
__device__ __forceinline__ int8_t* QActsByte(const QActs& x, int64_t t, int64_t col) { return x.q + t * x.ld + col; }
__device__ __forceinline__ float* QActsPair(const QActs& x, int64_t t, int64_t col) {
  return x.ds + 2 * (t * (x.ld / 32) + col / 32);
}

// The epilogue of the one-warp-per-row matrix-vector kernels: each token's per-lane partial sum
// reduced over the warp and stored (or added) by lane 0 at y[t * ldy + row].
template <int NT>
__device__ __forceinline__ void StoreRowSums(const float (&acc)[NT], int lane, float* y, int64_t ldy, int64_t row,
                                             int accumulate) {
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    float s = acc[t];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) {
      float* dst = y + t * ldy + row;
      *dst = accumulate ? *dst + s : s;
    }
  }
}

// Runs BODY with `T` a constexpr TensorType equal to `type`; sets `ok` false for other types.
#define QWENMUX_DTYPE_CASE(K, ...) \
  case TensorType::K: {             \
    constexpr TensorType T = TensorType::K; \
    __VA_ARGS__;                    \
  } break;
#define QWENMUX_DISPATCH_DTYPE(type, ok, ...) \
  switch (type) {                              \
    QWENMUX_DTYPE_CASE(kF32, __VA_ARGS__)             \
    QWENMUX_DTYPE_CASE(kF16, __VA_ARGS__)             \
    QWENMUX_DTYPE_CASE(kBF16, __VA_ARGS__)            \
    QWENMUX_DTYPE_CASE(kQ8_0, __VA_ARGS__)            \
    QWENMUX_DTYPE_CASE(kQ4_0, __VA_ARGS__)            \
    QWENMUX_DTYPE_CASE(kQ4_K, __VA_ARGS__)            \
    QWENMUX_DTYPE_CASE(kQ5_K, __VA_ARGS__)            \
    QWENMUX_DTYPE_CASE(kQ6_K, __VA_ARGS__)            \
    default: ok = false;                       \
  }

}  // namespace qwenmux::runtime::cuda
