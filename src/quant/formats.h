// Per-format reference routines behind quant.h. Block pointers must be aligned for their
// struct (alignment 2); n must be a multiple of the block size (not checked here: use the
// checked API in quant.h). Exposed for the tests and for the CPU kernels' tests.
#pragma once

#include <cstdint>

#include "quant/blocks.h"

namespace qwenmux::quant {

// ggml's nearest_int: round-to-nearest-even of fval via the 1.5*2^23 trick. Valid for
// |fval| <= 4194303 (the reference asserts that); larger inputs give a wrong but defined value.
int NearestInt(float fval);

void QuantizeRowF16(const float* x, uint16_t* y, int64_t n);
void DequantizeRowF16(const uint16_t* x, float* y, int64_t n);
void QuantizeRowBF16(const float* x, uint16_t* y, int64_t n);
void DequantizeRowBF16(const uint16_t* x, float* y, int64_t n);

void QuantizeRowQ8_0(const float* x, BlockQ8_0* y, int64_t n);
void DequantizeRowQ8_0(const BlockQ8_0* x, float* y, int64_t n);
void QuantizeRowQ4_0(const float* x, BlockQ4_0* y, int64_t n);
void DequantizeRowQ4_0(const BlockQ4_0* x, float* y, int64_t n);

void QuantizeRowQ4_K(const float* x, BlockQ4_K* y, int64_t n);
void DequantizeRowQ4_K(const BlockQ4_K* x, float* y, int64_t n);
void QuantizeRowQ5_K(const float* x, BlockQ5_K* y, int64_t n);
void DequantizeRowQ5_K(const BlockQ5_K* x, float* y, int64_t n);
void QuantizeRowQ6_K(const float* x, BlockQ6_K* y, int64_t n);
void DequantizeRowQ6_K(const BlockQ6_K* x, float* y, int64_t n);

}  // namespace qwenmux::quant
