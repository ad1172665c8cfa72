// MatMul driver: quantizes the activations once per call (for the quantized weight types),
// then splits the output rows over the thread pool and runs the per-type SIMD kernel
// (dynamic dispatch inside matmul_{q8,k,float}.cc).
#include "kernels/matmul.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <vector>

#include "kernels/cpu/matmul_internal.h"

namespace qwenmux::kernels {
namespace internal {

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
  // Rows are handed out in chunks that the pool's participants claim one at a time: on a machine
  // shared with other processes a preempted worker then delays the call by at most one chunk.
  // ~8 chunks per thread, in multiples of the row tile.
  const int64_t threads = static_cast<int64_t>(pool->size());
  int64_t chunk = (w.rows + threads * 8 - 1) / (threads * 8);
  chunk = std::max<int64_t>(16, (chunk + 3) / 4 * 4);
  const int64_t n_chunks = (w.rows + chunk - 1) / chunk;
  pool->ParallelChunks(static_cast<size_t>(n_chunks), [&](size_t c, size_t) {
    const int64_t r0 = static_cast<int64_t>(c) * chunk;
    info.fn(a, r0, std::min(w.rows, r0 + chunk));
  });
}

}  // namespace qwenmux::kernels
