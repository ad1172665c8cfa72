// Small vector primitives for attention, norms and activations (Highway, dynamic dispatch).
// Pure functions; any alignment.
#pragma once

#include <cstddef>
#include <cstdint>

namespace qwenmux::kernels {

float Dot(const float* a, const float* b, size_t n);
// y[i] += a * x[i]
void Axpy(float a, const float* x, float* y, size_t n);
// y[i] *= a
void Scale(float a, float* y, size_t n);
float SumSquares(const float* x, size_t n);
// Dot of an f16 vector with an f32 vector; y[i] += a * f16 x[i].
float DotF16(const uint16_t* a, const float* b, size_t n);
void AxpyF16(float a, const uint16_t* x, float* y, size_t n);
// Attention helpers over n rows of an f16 matrix with row stride `stride` (elements):
// out[j] = scale * dot(rows[j][0:d], q)  and  out[0:d] = sum_j p[j] * rows[j][0:d].
void DotsF16(const uint16_t* rows, size_t stride, size_t n, const float* q, size_t d, float scale, float* out);
void WeightedSumF16(const uint16_t* rows, size_t stride, size_t n, const float* p, size_t d, float* out);
void F16ToF32(const uint16_t* in, float* out, size_t n);
void F32ToF16(const float* in, uint16_t* out, size_t n);
// out[i] = silu(gate[i]) * up[i]
void SwiGlu(const float* gate, const float* up, float* out, size_t n);

}  // namespace qwenmux::kernels
