// Forward and backward steps of LoRA training on the CPU, in f32 activations (no 8-bit activation
// quantization: ../shared/testdata/README.md, "LoRA", shows that misses the gradient bars).
//
// Layouts are row-major, one row per token: x [n, d] means token t's vector at x + t * d. Every
// backward takes the forward's saved values and the gradient of the output, and either writes or
// adds (`accumulate`) the gradient of the input, as named.
//
// Frozen weights are kernels::WeightView in any type the engine runs: float types go straight to
// the f32 SIMD product (kernels::MatMul keeps x in f32 for them); quantized types are dequantized
// to f32 in tiles of rows first, so the products are always f32 × f32.
//
// Thread-safety: free functions over their arguments; `pool` (may be nullptr) must be idle.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/matmul.h"

namespace qwenmux::finetune {

// Reusable buffers of the products (grown on demand).
struct OpScratch {
  std::vector<float> tile;  // dequantized rows of a weight (or their transpose)
  std::vector<float> tmp;   // partial outputs
  std::vector<float> t1, t2;
};

// An f32 [rows, cols] matrix as a WeightView (rows = output features).
kernels::WeightView F32View(const float* data, int64_t rows, int64_t cols);

// dst[cols, rows] = src[rows, cols]ᵀ
void Transpose(const float* src, int64_t rows, int64_t cols, float* dst);

// y[n, w.rows] = x[n, w.cols] · Wᵀ
void LinearForward(const kernels::WeightView& w, const float* x, int64_t n, float* y, OpScratch* s, ThreadPool* pool);
// dx[n, w.cols] (=|+=) dy[n, w.rows] · W
void LinearBackwardInput(const kernels::WeightView& w, const float* dy, int64_t n, float* dx, bool accumulate,
                         OpScratch* s, ThreadPool* pool);

// y[n, d] = w ⊙ x / sqrt(mean(x²) + eps); rstd[n] keeps 1 / sqrt(mean(x²) + eps).
void RmsNormForward(const float* x, const float* w, float* y, float* rstd, int64_t n, int64_t d, float eps);
void RmsNormBackward(const float* x, const float* w, const float* rstd, const float* dy, float* dx, int64_t n,
                     int64_t d, bool accumulate);

// NeoX RoPE tables for positions 0..n-1: cs[n, head_dim] = [cos(half) | sin(half)] · mscale.
std::vector<float> RopeTable(std::span<const float> freq, float mscale, int64_t n);
// Per head (h heads of head_dim each, one shared weight w [head_dim]): RMSNorm, then RoPE at the
// token's position. pre [n, h, hd] -> out [n, h, hd]; rstd [n * h].
void QkNormRopeForward(const float* pre, const float* w, const float* cs, float* out, float* rstd, int64_t n, int64_t h,
                       int64_t hd, float eps);
void QkNormRopeBackward(const float* pre, const float* w, const float* cs, const float* rstd, const float* dout,
                        float* dpre, int64_t n, int64_t h, int64_t hd);

// Causal grouped-query attention of one sequence: q [n, hq, hd], k and v [n, hkv, hd] -> o [n, hq,
// hd]; softmax(q·kᵀ / sqrt(hd)) over positions j <= t. lse [hq, n] keeps each row's log-sum-exp.
struct AttnShape {
  int64_t n = 0, hq = 0, hkv = 0, hd = 0;
};
void AttentionForward(const AttnShape& a, const float* q, const float* k, const float* v, float* o, float* lse,
                      ThreadPool* pool);
// dq, dk, dv are written (not accumulated).
void AttentionBackward(const AttnShape& a, const float* q, const float* k, const float* v, const float* o,
                       const float* lse, const float* dout, float* dq, float* dk, float* dv, ThreadPool* pool);

// h = silu(g) ⊙ u (exact exp).
void SwiGluForward(const float* g, const float* u, float* h, int64_t n);
void SwiGluBackward(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n);

// A LoRA pair's trainable halves: a [rank, in], b [out, rank] (torch layout), factor = alpha / rank.
struct LoraRef {
  int64_t rank = 0, in = 0, out = 0;
  float factor = 1.0f;
  const float* a = nullptr;
  const float* b = nullptr;
};
// y[n, out] += factor · (x·Aᵀ)·Bᵀ; mid[n, rank] = x·Aᵀ (kept for the backward).
void LoraForward(const LoraRef& p, const float* x, int64_t n, float* y, float* mid, OpScratch* s, ThreadPool* pool);
// ga [rank, in] += ∂/∂A, gb [out, rank] += ∂/∂B; dx [n, in] += ∂/∂x when dx is not null.
void LoraBackward(const LoraRef& p, const float* x, const float* mid, const float* dy, int64_t n, float* ga, float* gb,
                  float* dx, OpScratch* s, ThreadPool* pool);

// Cross-entropy of m rows of logits [m, vocab] against labels[m], each weighted by `weight`:
// returns Σ (lse − logit[label]) (unweighted, in double) and overwrites logits with
// weight · (softmax − onehot), the gradient of weight · Σ. argmax_ok[i] (when not null) says
// whether row i's largest logit is its label.
double CrossEntropyForwardBackward(float* logits, const int32_t* labels, int64_t m, int64_t vocab, float weight,
                                   uint8_t* argmax_ok, ThreadPool* pool);

}  // namespace qwenmux::finetune
