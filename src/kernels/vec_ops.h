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
void F16ToF32(const uint16_t* in, float* out, size_t n);
void F32ToF16(const float* in, uint16_t* out, size_t n);
// out[i] = silu(gate[i]) * up[i]
void SwiGlu(const float* gate, const float* up, float* out, size_t n);

}  // namespace qwenmux::kernels
