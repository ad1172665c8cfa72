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
