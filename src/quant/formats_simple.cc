// F16, BF16, Q8_0 and Q4_0 reference rows (ggml's quantize_row_q8_0_ref / q4_0_ref semantics).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "quant/formats.h"

namespace qwenmux::quant {

namespace {

// C++ leaves float->int conversion of out-of-range values undefined; the reference relies on
// x86's cvttss2si (out of range or nan -> INT32_MIN) followed by truncation to 8 bits. Only
// reachable for inputs whose block maximum is a float subnormal (1/d overflows).
inline int8_t TruncToInt8(float v) {
  if (!(v > -2147483648.0f && v < 2147483648.0f)) return 0;  // low byte of INT32_MIN
  return static_cast<int8_t>(static_cast<uint8_t>(static_cast<uint32_t>(static_cast<int32_t>(v))));
}

}  // namespace

int NearestInt(float fval) {
  const float val = fval + 12582912.f;  // 1.5 * 2^23: the mantissa then holds round(fval)
  int32_t i;
  std::memcpy(&i, &val, sizeof(i));
  return (i & 0x007fffff) - 0x00400000;
}

void QuantizeRowF16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = Fp32ToFp16(x[i]);
}

void DequantizeRowF16(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = Fp16ToFp32(x[i]);
}

void QuantizeRowBF16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = Fp32ToBf16(x[i]);
}

void DequantizeRowBF16(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = Bf16ToFp32(x[i]);
}

void QuantizeRowQ8_0(const float* x, BlockQ8_0* y, int64_t n) {
  const int64_t nb = n / kQK8_0;
  for (int64_t i = 0; i < nb; ++i, x += kQK8_0) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = Fp32ToFp16(d);
    for (int j = 0; j < kQK8_0; ++j) y[i].qs[j] = TruncToInt8(std::round(x[j] * id));
  }
}

void DequantizeRowQ8_0(const BlockQ8_0* x, float* y, int64_t n) {
  const int64_t nb = n / kQK8_0;
  for (int64_t i = 0; i < nb; ++i, y += kQK8_0) {
    const float d = Fp16ToFp32(x[i].d);
    for (int j = 0; j < kQK8_0; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
  }
}

void QuantizeRowQ4_0(const float* x, BlockQ4_0* y, int64_t n) {
  const int64_t nb = n / kQK4_0;
  for (int64_t i = 0; i < nb; ++i, x += kQK4_0) {
    // The value of largest magnitude, sign kept (first one on ties), maps to -8.
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < kQK4_0; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = Fp32ToFp16(d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      // +8.5 then truncation = round half up of x*id + 8.
      const int8_t q0 = TruncToInt8(x[j] * id + 8.5f);
      const int8_t q1 = TruncToInt8(x[kQK4_0 / 2 + j] * id + 8.5f);
      const uint8_t l0 = static_cast<uint8_t>(std::min<int>(15, q0));
      const uint8_t l1 = static_cast<uint8_t>(std::min<int>(15, q1));
      y[i].qs[j] = static_cast<uint8_t>(l0 | (l1 << 4));
    }
  }
}

void DequantizeRowQ4_0(const BlockQ4_0* x, float* y, int64_t n) {
  const int64_t nb = n / kQK4_0;
  for (int64_t i = 0; i < nb; ++i, y += kQK4_0) {
    const float d = Fp16ToFp32(x[i].d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const int q0 = (x[i].qs[j] & 0x0F) - 8;
      const int q1 = (x[i].qs[j] >> 4) - 8;
      y[j] = static_cast<float>(q0) * d;
      y[j + kQK4_0 / 2] = static_cast<float>(q1) * d;
    }
  }
}

}  // namespace qwenmux::quant
