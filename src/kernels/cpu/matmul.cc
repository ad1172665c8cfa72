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

// Per-thread scratch for the quantized activations, grown as needed (never per row): one set per
// activation block size (32: Q8_0/Q4_0, 256: the K-quants), so one call can hold both.
struct Scratch {
  std::vector<int8_t> qs;
  std::vector<float> d;
  std::vector<int16_t> sums;
};
Scratch& ThreadScratch(int64_t block) {
  thread_local Scratch s[2];
  return s[block == 32 ? 0 : 1];
}

// x quantized for block size `block` (once per call and block size).
QuantizedX Quantize(const float* x, int64_t ldx, int64_t cols, int64_t n_tokens, int64_t block,
                    ThreadPool* pool) {
  Scratch& s = ThreadScratch(block);
  const size_t n = static_cast<size_t>(n_tokens * cols);
  if (s.qs.size() < n) s.qs.resize(n);
  if (s.d.size() < n / 32) s.d.resize(n / 32);
  if (s.sums.size() < n / 16) s.sums.resize(n / 16);
  int8_t* qs = s.qs.data();
  float* d = s.d.data();
  int16_t* sums = s.sums.data();
  if (pool != nullptr && n_tokens > 1) {
    pool->ParallelFor(static_cast<size_t>(n_tokens), 1, [&](size_t b, size_t e, size_t) {
      QuantizeActivations(x, ldx, static_cast<int64_t>(b), static_cast<int64_t>(e), cols, block,
                          qs, d, sums);
    });
  } else {
    QuantizeActivations(x, ldx, 0, n_tokens, cols, block, qs, d, sums);
  }
  QuantizedX q;
  q.cols = cols;
  q.block = block;
  q.qs = qs;
  q.d = d;
  q.bsums = sums;
  return q;
}

}  // namespace
}  // namespace internal

void MatMul(const WeightView& w, const float* x, int64_t ldx, float* y, int64_t ldy,
            int64_t n_tokens, ThreadPool* pool) {
  const MatMulOut out{w, y, ldy};
  MatMulMany({&out, 1}, x, ldx, n_tokens, pool);
}

void MatMulMany(std::span<const MatMulOut> outs, const float* x, int64_t ldx, int64_t n_tokens,
                ThreadPool* pool) {
  using namespace internal;
  if (n_tokens <= 0 || outs.empty()) return;
  constexpr size_t kMax = 4;
  if (outs.size() > kMax) {
    for (size_t i = 0; i < outs.size(); i += kMax) {
      MatMulMany(outs.subspan(i, std::min(kMax, outs.size() - i)), x, ldx, n_tokens, pool);
    }
    return;
  }
  // Per product: its kernel and arguments. x is quantized once per block size in use.
  MatMulArgs args[kMax];
  RowsFn fns[kMax] = {};
  QuantizedX qx[2];  // block 32, block 256
  bool have_qx[2] = {false, false};
  for (size_t i = 0; i < outs.size(); ++i) {
    const WeightView& w = outs[i].w;
    const TypeInfo info = Lookup(w.type);
    if (info.fn == nullptr || (info.act_block != 0 && w.cols % info.act_block != 0)) {
      // Precondition violated (the loader checks these): fall back to the oracle, which yields
      // zeros for unsupported types instead of reading out of bounds.
      MatMulReference(w, x, ldx, outs[i].y, outs[i].ldy, n_tokens);
      continue;
    }
    fns[i] = info.fn;
    MatMulArgs& a = args[i];
    a.w = w;
    a.x = x;
    a.ldx = ldx;
    a.y = outs[i].y;
    a.ldy = outs[i].ldy;
    a.n_tokens = n_tokens;
    if (info.act_block != 0) {
      const int k = info.act_block == 32 ? 0 : 1;
      if (!have_qx[k]) {
        qx[k] = Quantize(x, ldx, w.cols, n_tokens, info.act_block, pool);
        have_qx[k] = true;
      }
      a.qx = qx[k];
    }
  }
  if (pool == nullptr || pool->size() <= 1) {
    for (size_t i = 0; i < outs.size(); ++i) {
      if (fns[i] != nullptr && args[i].w.rows > 0) fns[i](args[i], 0, args[i].w.rows);
    }
    return;
  }
  // Rows are handed out in chunks that the pool's participants claim one at a time: on a machine
  // shared with other processes a preempted worker then delays the call by at most one chunk.
  // ~8 chunks per thread and product, in multiples of the row tile.
  const int64_t threads = static_cast<int64_t>(pool->size());
  int64_t chunk[kMax] = {}, first[kMax + 1] = {};
  for (size_t i = 0; i < outs.size(); ++i) {
    const int64_t rows = fns[i] != nullptr ? args[i].w.rows : 0;
    const int64_t c = (rows + threads * 8 - 1) / (threads * 8);
    chunk[i] = std::max<int64_t>(16, (c + 3) / 4 * 4);
    first[i + 1] = first[i] + (rows + chunk[i] - 1) / chunk[i];
  }
  const size_t n = outs.size();
  pool->ParallelChunks(static_cast<size_t>(first[n]), [&](size_t c, size_t) {
    size_t i = 0;
    while (static_cast<int64_t>(c) >= first[i + 1]) ++i;
    const int64_t r0 = (static_cast<int64_t>(c) - first[i]) * chunk[i];
    fns[i](args[i], r0, std::min(args[i].w.rows, r0 + chunk[i]));
  });
}

}  // namespace qwenmux::kernels
