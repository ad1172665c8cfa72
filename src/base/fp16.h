// IEEE binary16 and bfloat16 conversions (scalar, exact round-to-nearest-even).
#pragma once

#include <cstdint>
#include <cstring>

namespace qwenmux {

inline float Fp32FromBits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline uint32_t BitsFromFp32(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// fp16 -> fp32, exact (handles subnormals, inf, nan).
inline float Fp16ToFp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return Fp32FromBits(sign | 0x7F800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return Fp32FromBits(sign);
    // Subnormal: normalise.
    exp = 127 - 15 + 1;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --exp;
    }
    mant &= 0x3FFu;
    return Fp32FromBits(sign | (exp << 23) | (mant << 13));
  }
  return Fp32FromBits(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

// fp32 -> fp16 with round-to-nearest-even (same results as F16C / numpy astype(float16)).
inline uint16_t Fp32ToFp16(float f) {
  const uint32_t x = BitsFromFp32(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) {  // inf or nan
    return static_cast<uint16_t>(sign | 0x7C00u | (abs > 0x7F800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // overflow -> inf
  if (abs < 0x38800000u) {  // subnormal or zero in fp16
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);  // < 2^-25 rounds to 0
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14 - (e - 127) + 13 - 1 ... shift for 2^-24 units
    const uint32_t shift_total = shift;  // m * 2^(e-150) / 2^-24 = m >> (126 - e)
    uint32_t r = m >> shift_total;
    const uint32_t rem = m & ((1u << shift_total) - 1);
    const uint32_t half = 1u << (shift_total - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = ((abs >> 13) - ((127 - 15) << 10));
  const uint32_t rem = abs & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return static_cast<uint16_t>(sign | r);
}

inline float Bf16ToFp32(uint16_t b) { return Fp32FromBits(static_cast<uint32_t>(b) << 16); }

// fp32 -> bf16, round-to-nearest-even; nan stays nan (as the reference converter does).
inline uint16_t Fp32ToBf16(float f) {
  uint32_t x = BitsFromFp32(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 64u);
  x += 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

}  // namespace qwenmux
