// Internal plumbing between the MatMul driver (matmul.cc) and the per-type SIMD kernels
// (matmul_q8.cc, matmul_k.cc, matmul_float.cc). Not part of the public kernel API.
//
// Activations for the quantized weight types are quantized once per call into QuantizedX:
// per token, `cols` int8 values with one f32 scale per `block` values (32 for Q8_0/Q4_0, 256
// for the K-quants, as ggml's Q8_0 / Q8_K) and the int16 sum of each 16 consecutive values
// (used for the K-quant min / offset terms).
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/matmul.h"

// Full unrolling of the small fixed loops over tile rows / tokens / sub-blocks: without it GCC
// -O2 keeps the accumulator arrays in memory (measured 2x slower tiles).
#if defined(__clang__)
#define QM_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define QM_UNROLL _Pragma("GCC unroll 16")
#else
#define QM_UNROLL
#endif

namespace qwenmux::kernels::internal {

// vpshufb controls splatting one int16 lane of each 128-bit half over that half:
// kSplatI16[k] lane k in both halves (k < 8); kSplatI16[8 + k] lane 2k in the low half and lane
// 2k + 1 in the high half (k < 4).
struct SplatControls {
  alignas(32) int8_t c[12][32];
};
constexpr SplatControls MakeSplatControls() {
  SplatControls t{};
  for (int k = 0; k < 12; ++k) {
    for (int b = 0; b < 32; ++b) {
      const int lane = k < 8 ? k : 2 * (k - 8) + (b >= 16 ? 1 : 0);
      t.c[k][b] = static_cast<int8_t>(2 * lane + (b & 1));
    }
  }
  return t;
}
inline constexpr SplatControls kSplatI16 = MakeSplatControls();

struct QuantizedX {
  int64_t cols = 0;
  int64_t block = 32;
  const int8_t* qs = nullptr;     // [n_tokens, cols]
  const float* d = nullptr;       // [n_tokens, cols / block]
  const int16_t* bsums = nullptr; // [n_tokens, cols / 16]

  const int8_t* Qs(int64_t t) const { return qs + t * cols; }
  const float* D(int64_t t) const { return d + t * (cols / block); }
  const int16_t* Sums(int64_t t) const { return bsums + t * (cols / 16); }
};

struct MatMulArgs {
  WeightView w;
  const float* x = nullptr;  // [n_tokens, ldx] (float types)
  int64_t ldx = 0;
  float* y = nullptr;        // [n_tokens, ldy]
  int64_t ldy = 0;
  int64_t n_tokens = 0;
  QuantizedX qx;             // quantized x (quantized types)
};

// Each computes y[t, r] for all tokens and rows r in [r0, r1), on the best SIMD target.
void MatMulRowsQ8_0(const MatMulArgs& a, int64_t r0, int64_t r1);
void MatMulRowsQ4_0(const MatMulArgs& a, int64_t r0, int64_t r1);
void MatMulRowsQ4_K(const MatMulArgs& a, int64_t r0, int64_t r1);
void MatMulRowsQ5_K(const MatMulArgs& a, int64_t r0, int64_t r1);
void MatMulRowsQ6_K(const MatMulArgs& a, int64_t r0, int64_t r1);
void MatMulRowsF32(const MatMulArgs& a, int64_t r0, int64_t r1);
void MatMulRowsF16(const MatMulArgs& a, int64_t r0, int64_t r1);
void MatMulRowsBF16(const MatMulArgs& a, int64_t r0, int64_t r1);

// Quantizes token rows [t0, t1) of x into the buffers behind qx (block 32 or 256).
void QuantizeActivations(const float* x, int64_t ldx, int64_t t0, int64_t t1, int64_t cols,
                         int64_t block, int8_t* qs, float* d, int16_t* bsums);

// fp16 bits -> f32, exact for every input (same results as base/fp16.h's Fp16ToFp32), without
// ever touching an f32 denormal: the fp16 subnormals (common for Q6_K / Q5_K super-block
// scales of small weights) are converted as integer * 2^-24, which is exact and normal in f32.
// (A shift-and-multiply-by-2^112 version hit denormal microcode assists: 2-3x slower Q6_K.)
inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7FFFu;
  float f;
  if (em >= 0x0400u && em < 0x7C00u) {  // normal
    const uint32_t bits = (em << 13) + ((127u - 15u) << 23);
    std::memcpy(&f, &bits, 4);
  } else if (em < 0x0400u) {  // zero or subnormal: em * 2^-24
    f = static_cast<float>(em) * 5.9604644775390625e-08f;
  } else {  // inf / nan
    const uint32_t bits = 0x7F800000u | ((em & 0x3FFu) << 13);
    std::memcpy(&f, &bits, 4);
  }
  uint32_t b;
  std::memcpy(&b, &f, 4);
  b |= sign;
  std::memcpy(&f, &b, 4);
  return f;
}

}  // namespace qwenmux::kernels::internal
