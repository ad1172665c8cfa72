// GGUF / ggml quantization block layouts (bit-exact with the files the reference toolchain writes).
//
// Each struct is the on-disk byte layout of one block; fp16 fields hold IEEE binary16 bits
// (convert with base/fp16.h). Blocks are laid out back to back along ne0; a row of n elements
// is n / kBlockSize blocks. Sizes are static_asserted against the GGUF type table.
//
// Alignment: every struct has alignment 2 (uint16_t members). Rows of GGUF tensors start at
// 32-byte aligned offsets and every block size is even, so block pointers into a mapped file are
// suitably aligned; code that may see arbitrary pointers should memcpy blocks instead.
#pragma once

#include <cstddef>
#include <cstdint>

namespace qwenmux::quant {

inline constexpr int kQK4_0 = 32;  // elements per Q4_0 block
inline constexpr int kQK8_0 = 32;  // elements per Q8_0 block
inline constexpr int kQK_K = 256;  // elements per K-quant super-block
inline constexpr int kKScaleBytes = 12;  // packed 6-bit scales+mins of Q4_K / Q5_K

// Q8_0: y[j] = d * qs[j].
struct BlockQ8_0 {
  uint16_t d;  // fp16 scale
  int8_t qs[kQK8_0];
};
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block must be 34 bytes");

// Q4_0: for j < 16: y[j] = d * ((qs[j] & 0xF) - 8), y[j + 16] = d * ((qs[j] >> 4) - 8).
struct BlockQ4_0 {
  uint16_t d;  // fp16 scale
  uint8_t qs[kQK4_0 / 2];
};
static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block must be 18 bytes");

// Q4_K: 8 sub-blocks of 32 with 6-bit scale/min each (packed in `scales`, see
// UnpackScaleMinK4), 4-bit quants. Chunk c (64 outputs) uses qs[32c..32c+31]: low nibbles are
// sub-block 2c, high nibbles sub-block 2c+1. y = d*sc*q - dmin*m.
struct BlockQ4_K {
  uint16_t d;     // fp16 super-block scale of the sub-block scales
  uint16_t dmin;  // fp16 super-block scale of the sub-block mins
  uint8_t scales[kKScaleBytes];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144, "Q4_K block must be 144 bytes");

// Q5_K: as Q4_K plus a fifth bit per value: bit 2c of qh[l] for the low nibble of qs[32c+l],
// bit 2c+1 for its high nibble.
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176, "Q5_K block must be 176 bytes");

// Q6_K: 16 sub-blocks of 16 with int8 scales, 6-bit quants (low 4 bits in ql, high 2 in qh),
// value = d * scales[e / 16] * (q - 32). d comes LAST.
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K block must be 210 bytes");

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block.
inline void UnpackScaleMinK4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

}  // namespace qwenmux::quant
