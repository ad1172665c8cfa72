// MatMul driver: quantizes the activations once per call (for the quantized weight types),
// then splits the output rows over the thread pool and runs the per-type SIMD kernel
// (dynamic dispatch inside matmul_{q8,k,float}.cc).
#include "kernels/matmul.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "kernels/cpu/matmul_internal.h"

namespace qwenmux::kernels {
namespace internal {

void QuantizeActivations(const float* x, int64_t ldx, int64_t t0, int64_t t1, int64_t cols,
                         int64_t block, int8_t* qs, float* d, int16_t* bsums) {
  const int64_t nb = cols / block;
  for (int64_t t = t0; t < t1; ++t) {
    const float* xt = x + t * ldx;
    int8_t* q = qs + t * cols;
    float* dt = d + t * nb;
    int16_t* st = bsums + t * (cols / 16);
    for (int64_t b = 0; b < nb; ++b) {
      const float* xb = xt + b * block;
      int8_t* qb = q + b * block;
      float amax = 0.0f;
      for (int64_t k = 0; k < block; ++k) amax = std::max(amax, std::fabs(xb[k]));
      const float scale = amax / 127.0f;
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      dt[b] = scale;
      for (int64_t k = 0; k < block; ++k) {
        // |x * inv| <= 127 up to rounding; clamp keeps the sign trick's |q| <= 127 invariant.
        const float v = std::min(127.0f, std::max(-127.0f, xb[k] * inv));
        qb[k] = static_cast<int8_t>(std::nearbyint(v));
      }
    }
    for (int64_t g = 0; g < cols / 16; ++g) {
      int s = 0;
      for (int k = 0; k < 16; ++k) s += q[g * 16 + k];
      st[g] = static_cast<int16_t>(s);
    }
  }
}

namespace {

using RowsFn = void (*)(const MatMulArgs&, int64_t, int64_t);

struct TypeInfo {
  RowsFn fn = nullptr;
  int64_t act_block = 0;  // 0: float activations
};

TypeInfo Lookup(gguf::TensorType type) {
  switch (type) {
    case gguf::TensorType::kF32: return {MatMulRowsF32, 0};
    case gguf::TensorType::kF16: return {MatMulRowsF16, 0};
    case gguf::TensorType::kBF16: return {MatMulRowsBF16, 0};
    case gguf::TensorType::kQ8_0: return {MatMulRowsQ8_0, 32};
    case gguf::TensorType::kQ4_0: return {MatMulRowsQ4_0, 32};
    case gguf::TensorType::kQ4_K: return {MatMulRowsQ4_K, 256};
    case gguf::TensorType::kQ5_K: return {MatMulRowsQ5_K, 256};
    case gguf::TensorType::kQ6_K: return {MatMulRowsQ6_K, 256};
    default: return {};
  }
}

// Per-thread scratch for the quantized activations, grown as needed (never per row).
struct Scratch {
  std::vector<int8_t> qs;
  std::vector<float> d;
  std::vector<int16_t> sums;
};
Scratch& ThreadScratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace
}  // namespace internal

void MatMul(const WeightView& w, const float* x, int64_t ldx, float* y, int64_t ldy,
            int64_t n_tokens, ThreadPool* pool) {
  using namespace internal;
  if (n_tokens <= 0 || w.rows <= 0) return;
  const TypeInfo info = Lookup(w.type);
  if (info.fn == nullptr || (info.act_block != 0 && w.cols % info.act_block != 0)) {
    // Precondition violated (the loader checks these): fall back to the oracle, which yields
    // zeros for unsupported types instead of reading out of bounds.
    MatMulReference(w, x, ldx, y, ldy, n_tokens);
    return;
  }
  MatMulArgs a;
  a.w = w;
  a.x = x;
  a.ldx = ldx;
  a.y = y;
  a.ldy = ldy;
  a.n_tokens = n_tokens;
  if (info.act_block != 0) {
    Scratch& s = ThreadScratch();
    const size_t n = static_cast<size_t>(n_tokens * w.cols);
    if (s.qs.size() < n) s.qs.resize(n);
    if (s.d.size() < n / 32) s.d.resize(n / 32);
    if (s.sums.size() < n / 16) s.sums.resize(n / 16);
    const int64_t block = info.act_block;
    int8_t* qs = s.qs.data();
    float* d = s.d.data();
    int16_t* sums = s.sums.data();
    if (pool != nullptr && n_tokens > 1) {
      pool->ParallelFor(static_cast<size_t>(n_tokens), 1, [&](size_t b, size_t e, size_t) {
        QuantizeActivations(x, ldx, static_cast<int64_t>(b), static_cast<int64_t>(e), w.cols,
                            block, qs, d, sums);
      });
    } else {
      QuantizeActivations(x, ldx, 0, n_tokens, w.cols, block, qs, d, sums);
    }
    a.qx.cols = w.cols;
    a.qx.block = block;
    a.qx.qs = qs;
    a.qx.d = d;
    a.qx.bsums = sums;
  }
  if (pool == nullptr || pool->size() <= 1) {
    info.fn(a, 0, w.rows);
    return;
  }
  // Rows are handed out in chunks from a shared counter rather than split statically: on a
  // machine shared with other processes a preempted worker then delays the call by one chunk,
  // not by its whole half. ~8 chunks per thread, in multiples of the row tile.
  const int64_t threads = static_cast<int64_t>(pool->size());
  int64_t chunk = (w.rows + threads * 8 - 1) / (threads * 8);
  chunk = std::max<int64_t>(16, (chunk + 3) / 4 * 4);
  std::atomic<int64_t> next{0};
  pool->Run([&](size_t) {
    for (;;) {
      const int64_t r0 = next.fetch_add(chunk, std::memory_order_relaxed);
      if (r0 >= w.rows) break;
      info.fn(a, r0, std::min(w.rows, r0 + chunk));
    }
  });
}

}  // namespace qwenmux::kernels
