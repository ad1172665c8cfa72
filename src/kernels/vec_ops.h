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
// Dot of an f16 vector with an f32 vector.
float DotF16(const uint16_t* a, const float* b, size_t n);
// Grouped-query attention of `heads` query heads sharing one KV head, over n positions of an f16
// K and V (row stride `stride` elements): out[g][0:d] = softmax_j(scale * K[j] . q[g]) V[j], with
// q and out [heads][d]. scores: scratch of at least min(heads, 4) * n floats. Each K and V row is
// read once per block of up to 4 heads.
void AttendF16(const uint16_t* k, const uint16_t* v, size_t stride, size_t n, const float* q, size_t heads,
               size_t d, float scale, float* scores, float* out);
void F16ToF32(const uint16_t* in, float* out, size_t n);
void F32ToF16(const float* in, uint16_t* out, size_t n);
// out[i] = silu(gate[i]) * up[i]
void SwiGlu(const float* gate, const float* up, float* out, size_t n);

}  // namespace qwenmux::kernels
