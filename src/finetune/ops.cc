#include "finetune/ops.h"

#include <algorithm>
#include <cmath>

#include "kernels/vec_ops.h"

namespace qwenmux::finetune {

namespace {

// Floats of one dequantized tile of a quantized weight (16 MiB).
constexpr int64_t kTileFloats = int64_t{1} << 22;

template <class V>
void Grow(V& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

bool IsFloatType(gguf::TensorType t) {
  return t == gguf::TensorType::kF32 || t == gguf::TensorType::kF16 || t == gguf::TensorType::kBF16;
}

void Parallel(ThreadPool* pool, size_t n, size_t grain, const std::function<void(size_t, size_t, size_t)>& fn) {
  if (n == 0) return;
  if (pool && n > 1) {
    pool->ParallelFor(n, grain, fn);
  } else {
    fn(0, n, 0);
  }
}


// out[tr, cols] = rows [r0, r0 + tr) of w in f32.
void DequantizeRows(const kernels::WeightView& w, int64_t r0, int64_t tr, float* out, ThreadPool* pool) {
  Parallel(pool, static_cast<size_t>(tr), 16, [&](size_t b, size_t e, size_t) {
    for (size_t r = b; r < e; ++r) kernels::DequantizeRowTo(w, r0 + static_cast<int64_t>(r), out + r * w.cols);
  });
}

void AddTo(float* dst, const float* src, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] += src[i];
}

}  // namespace

kernels::WeightView F32View(const float* data, int64_t rows, int64_t cols) {
  kernels::WeightView w;
  w.type = gguf::TensorType::kF32;
  w.data = reinterpret_cast<const uint8_t*>(data);
  w.rows = rows;
  w.cols = cols;
  w.row_bytes = static_cast<size_t>(cols) * sizeof(float);
  return w;
}

void Transpose(const float* src, int64_t rows, int64_t cols, float* dst) {
  constexpr int64_t B = 32;
  for (int64_t i0 = 0; i0 < rows; i0 += B) {
    const int64_t i1 = std::min(rows, i0 + B);
    for (int64_t j0 = 0; j0 < cols; j0 += B) {
      const int64_t j1 = std::min(cols, j0 + B);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) dst[j * rows + i] = src[i * cols + j];
    }
  }
}

void LinearForward(const kernels::WeightView& w, const float* x, int64_t n, float* y, OpScratch* s, ThreadPool* pool) {
  if (n == 0) return;
  if (IsFloatType(w.type)) {
    kernels::MatMul(w, x, w.cols, y, w.rows, n, pool);
    return;
  }
  const int64_t tile_rows = std::max<int64_t>(1, kTileFloats / w.cols);
  for (int64_t r0 = 0; r0 < w.rows; r0 += tile_rows) {
    const int64_t tr = std::min(tile_rows, w.rows - r0);
    Grow(s->tile, static_cast<size_t>(tr * w.cols));
    DequantizeRows(w, r0, tr, s->tile.data(), pool);  // [tr, cols]
    kernels::MatMul(F32View(s->tile.data(), tr, w.cols), x, w.cols, y + r0, w.rows, n, pool);
  }
}

void LinearBackwardInput(const kernels::WeightView& w, const float* dy, int64_t n, float* dx, bool accumulate,
                         OpScratch* s, ThreadPool* pool) {
  if (n == 0) return;
  const int64_t cols = w.cols;
  const int64_t tile_rows = std::max<int64_t>(1, kTileFloats / cols);
  for (int64_t r0 = 0; r0 < w.rows; r0 += tile_rows) {
    const int64_t tr = std::min(tile_rows, w.rows - r0);
    const float* rows = nullptr;
    if (w.type == gguf::TensorType::kF32) {
      rows = reinterpret_cast<const float*>(w.data + static_cast<size_t>(r0) * w.row_bytes);
    } else {
      Grow(s->t1, static_cast<size_t>(tr * cols));
      DequantizeRows(w, r0, tr, s->t1.data(), pool);  // [tr, cols]
      rows = s->t1.data();
    }
    Grow(s->tile, static_cast<size_t>(tr * cols));
    Transpose(rows, tr, cols, s->tile.data());  // [cols, tr]
    const bool direct = !accumulate && r0 == 0;
    float* out = dx;
    if (!direct) {
      Grow(s->tmp, static_cast<size_t>(n * cols));
      out = s->tmp.data();
    }
    // out[t, c] = Σ_r dy[t, r0 + r] · W[r0 + r, c]
    kernels::MatMul(F32View(s->tile.data(), cols, tr), dy + r0, w.rows, out, cols, n, pool);
    if (!direct) AddTo(dx, out, static_cast<size_t>(n * cols));
  }
}

void RmsNormForward(const float* x, const float* w, float* y, float* rstd, int64_t n, int64_t d, float eps) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * d;
    float* yr = y + t * d;
    const float mean = kernels::SumSquares(xr, d) / static_cast<float>(d);
    const float r = 1.0f / std::sqrt(mean + eps);
    rstd[t] = r;
    for (int64_t i = 0; i < d; ++i) yr[i] = w[i] * (xr[i] * r);
  }
}

void RmsNormBackward(const float* x, const float* w, const float* rstd, const float* dy, float* dx, int64_t n,
                     int64_t d, bool accumulate) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * d;
    const float* g = dy + t * d;
    float* o = dx + t * d;
    const float r = rstd[t];
    float dot = 0;
    for (int64_t i = 0; i < d; ++i) dot += w[i] * g[i] * xr[i];
    const float c = r * r * r * dot / static_cast<float>(d);
    for (int64_t i = 0; i < d; ++i) {
      const float v = r * w[i] * g[i] - c * xr[i];
      o[i] = accumulate ? o[i] + v : v;
    }
  }
}

std::vector<float> RopeTable(std::span<const float> freq, float mscale, int64_t n) {
  const int64_t half = static_cast<int64_t>(freq.size()), hd = 2 * half;
  std::vector<float> cs(static_cast<size_t>(n * hd));
  for (int64_t t = 0; t < n; ++t) {
    const float p = static_cast<float>(t);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = p * freq[i];  // as the inference forward: f32 angle, double cos/sin
      cs[t * hd + i] = static_cast<float>(std::cos(static_cast<double>(angle))) * mscale;
      cs[t * hd + half + i] = static_cast<float>(std::sin(static_cast<double>(angle))) * mscale;
    }
  }
  return cs;
}

void QkNormRopeForward(const float* pre, const float* w, const float* cs, float* out, float* rstd, int64_t n, int64_t h,
                       int64_t hd, float eps) {
  const int64_t half = hd / 2;
  for (int64_t t = 0; t < n; ++t) {
    const float* c = cs + t * hd;
    for (int64_t j = 0; j < h; ++j) {
      const int64_t off = (t * h + j) * hd;
      float* o = out + off;
      RmsNormForward(pre + off, w, o, rstd + t * h + j, 1, hd, eps);
      for (int64_t i = 0; i < half; ++i) {
        const float x0 = o[i], x1 = o[i + half];
        o[i] = x0 * c[i] - x1 * c[half + i];
        o[i + half] = x1 * c[i] + x0 * c[half + i];
      }
    }
  }
}

void QkNormRopeBackward(const float* pre, const float* w, const float* cs, const float* rstd, const float* dout,
                        float* dpre, int64_t n, int64_t h, int64_t hd) {
  const int64_t half = hd / 2;
  std::vector<float> dn(static_cast<size_t>(hd));
  for (int64_t t = 0; t < n; ++t) {
    const float* c = cs + t * hd;
    for (int64_t j = 0; j < h; ++j) {
      const int64_t off = (t * h + j) * hd;
      const float* g = dout + off;
      for (int64_t i = 0; i < half; ++i) {
        dn[i] = g[i] * c[i] + g[i + half] * c[half + i];
        dn[i + half] = g[i + half] * c[i] - g[i] * c[half + i];
      }
      RmsNormBackward(pre + off, w, rstd + t * h + j, dn.data(), dpre + off, 1, hd, false);
    }
  }
}

namespace {

// A [rows, cols] f32 matrix whose rows are `stride` floats apart, as a WeightView.
kernels::WeightView StridedF32(const float* data, int64_t rows, int64_t cols, int64_t stride) {
  kernels::WeightView w = F32View(data, rows, cols);
  w.row_bytes = static_cast<size_t>(stride) * sizeof(float);
  return w;
}

// dst[cols, rows] = the [rows, cols] matrix at src (row stride `stride`) transposed.
void TransposeStrided(const float* src, int64_t rows, int64_t cols, int64_t stride, float* dst) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) dst[j * rows + i] = src[i * stride + j];
}

}  // namespace

// Per query head, with the products as f32 matrix products (the SIMD path, threaded over rows):
// S = Q_h·K_hᵀ [n, n], causal softmax in place (P), O_h = P·V_h.
void AttentionForward(const AttnShape& a, const float* q, const float* k, const float* v, float* o, float* lse,
                      ThreadPool* pool) {
  const int64_t n = a.n, group = a.hq / a.hkv, hd = a.hd, qs = a.hq * hd, ks = a.hkv * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> S(static_cast<size_t>(n * n)), vt(static_cast<size_t>(hd * n));
  for (int64_t kh = 0; kh < a.hkv; ++kh) {
    TransposeStrided(v + kh * hd, n, hd, ks, vt.data());  // [hd, n]
    for (int64_t h = kh * group; h < (kh + 1) * group; ++h) {
      kernels::MatMul(StridedF32(k + kh * hd, n, hd, ks), q + h * hd, qs, S.data(), n, n, pool);  // S[t, j] = q_t·k_j
      Parallel(pool, static_cast<size_t>(n), 16, [&](size_t b, size_t e, size_t) {
        for (size_t tt = b; tt < e; ++tt) {
          const int64_t t = static_cast<int64_t>(tt);
          float* row = S.data() + t * n;
          float mx = -INFINITY;
          for (int64_t j = 0; j <= t; ++j) mx = std::max(mx, row[j] *= scale);
          float sum = 0;
          for (int64_t j = 0; j <= t; ++j) sum += (row[j] = std::exp(row[j] - mx));
          const float inv = 1.0f / sum;
          for (int64_t j = 0; j <= t; ++j) row[j] *= inv;
          std::fill(row + t + 1, row + n, 0.0f);
          lse[h * n + t] = mx + std::log(sum);
        }
      });
      kernels::MatMul(F32View(vt.data(), hd, n), S.data(), n, o + h * hd, qs, n, pool);  // o_t = Σ_j P[t, j] v_j
    }
  }
}

// Per query head: P recomputed from the saved log-sum-exp, dP = dO_h·V_hᵀ,
// dS = P ⊙ (dP − rowsum(dO_h ⊙ O_h)) · scale, dQ_h = dS·K_h, dK_h += dSᵀ·Q_h, dV_h += Pᵀ·dO_h.
void AttentionBackward(const AttnShape& a, const float* q, const float* k, const float* v, const float* o,
                       const float* lse, const float* dout, float* dq, float* dk, float* dv, ThreadPool* pool) {
  const int64_t n = a.n, group = a.hq / a.hkv, hd = a.hd, qs = a.hq * hd, ks = a.hkv * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::fill(dk, dk + n * ks, 0.0f);
  std::fill(dv, dv + n * ks, 0.0f);
  const size_t nn = static_cast<size_t>(n * n), nd = static_cast<size_t>(n * hd);
  std::vector<float> P(nn), dS(nn), T(nn), kt(nd), qt(nd), dot(nd), tmp(nd);
  for (int64_t kh = 0; kh < a.hkv; ++kh) {
    TransposeStrided(k + kh * hd, n, hd, ks, kt.data());  // [hd, n]
    for (int64_t h = kh * group; h < (kh + 1) * group; ++h) {
      kernels::MatMul(StridedF32(k + kh * hd, n, hd, ks), q + h * hd, qs, P.data(), n, n, pool);     // q_t·k_j
      kernels::MatMul(StridedF32(v + kh * hd, n, hd, ks), dout + h * hd, qs, dS.data(), n, n, pool);  // do_t·v_j
      Parallel(pool, static_cast<size_t>(n), 16, [&](size_t b, size_t e, size_t) {
        for (size_t tt = b; tt < e; ++tt) {
          const int64_t t = static_cast<int64_t>(tt);
          float* p = P.data() + t * n;
          float* ds = dS.data() + t * n;
          const float l = lse[h * n + t];
          const float dd = kernels::Dot(dout + t * qs + h * hd, o + t * qs + h * hd, hd);
          for (int64_t j = 0; j <= t; ++j) {
            p[j] = std::exp(scale * p[j] - l);
            ds[j] = p[j] * (ds[j] - dd) * scale;
          }
          std::fill(p + t + 1, p + n, 0.0f);
          std::fill(ds + t + 1, ds + n, 0.0f);
        }
      });
      kernels::MatMul(F32View(kt.data(), hd, n), dS.data(), n, dq + h * hd, qs, n, pool);  // dq_t = Σ_j dS[t, j] k_j
      TransposeStrided(q + h * hd, n, hd, qs, qt.data());  // [hd, n]
      Transpose(dS.data(), n, n, T.data());
      kernels::MatMul(F32View(qt.data(), hd, n), T.data(), n, tmp.data(), hd, n, pool);  // Σ_t dS[t, j] q_t
      for (int64_t j = 0; j < n; ++j) AddTo(dk + j * ks + kh * hd, tmp.data() + j * hd, static_cast<size_t>(hd));
      TransposeStrided(dout + h * hd, n, hd, qs, dot.data());  // [hd, n]
      Transpose(P.data(), n, n, T.data());
      kernels::MatMul(F32View(dot.data(), hd, n), T.data(), n, tmp.data(), hd, n, pool);  // Σ_t P[t, j] do_t
      for (int64_t j = 0; j < n; ++j) AddTo(dv + j * ks + kh * hd, tmp.data() + j * hd, static_cast<size_t>(hd));
    }
  }
}

void SwiGluForward(const float* g, const float* u, float* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void SwiGluBackward(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = 1.0f / (1.0f + std::exp(-g[i]));
    du[i] = dh[i] * g[i] * s;
    dg[i] = dh[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
  }
}

void LoraForward(const LoraRef& p, const float* x, int64_t n, float* y, float* mid, OpScratch* s, ThreadPool* pool) {
  if (n == 0) return;
  const int64_t r = p.rank;
  kernels::MatMul(F32View(p.a, r, p.in), x, p.in, mid, r, n, pool);  // [n, r] = x·Aᵀ
  Grow(s->t1, static_cast<size_t>(n * r));
  for (int64_t i = 0; i < n * r; ++i) s->t1[i] = p.factor * mid[i];
  Grow(s->tmp, static_cast<size_t>(n * p.out));
  kernels::MatMul(F32View(p.b, p.out, r), s->t1.data(), r, s->tmp.data(), p.out, n, pool);  // [n, out]
  AddTo(y, s->tmp.data(), static_cast<size_t>(n * p.out));
}

void LoraBackward(const LoraRef& p, const float* x, const float* mid, const float* dy, int64_t n, float* ga, float* gb,
                  float* dx, OpScratch* s, ThreadPool* pool) {
  if (n == 0) return;
  const int64_t r = p.rank, in = p.in, out = p.out;
  // dmid [n, r] = factor · dy·B
  std::vector<float> bt(static_cast<size_t>(r * out));
  Transpose(p.b, out, r, bt.data());  // [r, out]
  std::vector<float> dmid(static_cast<size_t>(n * r));
  kernels::MatMul(F32View(bt.data(), r, out), dy, out, dmid.data(), r, n, pool);
  for (float& d : dmid) d *= p.factor;
  // gb [out, r] += factor · dyᵀ·mid
  std::vector<float> dyt(static_cast<size_t>(out * n)), midt(static_cast<size_t>(r * n));
  Transpose(dy, n, out, dyt.data());   // [out, n]
  Transpose(mid, n, r, midt.data());   // [r, n]
  Grow(s->tmp, static_cast<size_t>(std::max(out * r, std::max(r * in, n * in))));
  kernels::MatMul(F32View(midt.data(), r, n), dyt.data(), n, s->tmp.data(), r, out, pool);
  for (int64_t i = 0; i < out * r; ++i) gb[i] += p.factor * s->tmp[i];
  // ga [r, in] += dmidᵀ·x
  std::vector<float> xt(static_cast<size_t>(in * n)), dmidt(static_cast<size_t>(r * n));
  Transpose(x, n, in, xt.data());            // [in, n]
  Transpose(dmid.data(), n, r, dmidt.data());  // [r, n]
  kernels::MatMul(F32View(xt.data(), in, n), dmidt.data(), n, s->tmp.data(), in, r, pool);
  AddTo(ga, s->tmp.data(), static_cast<size_t>(r * in));
  if (dx == nullptr) return;
  // dx [n, in] += dmid·A
  std::vector<float> at(static_cast<size_t>(in * r));
  Transpose(p.a, r, in, at.data());  // [in, r]
  kernels::MatMul(F32View(at.data(), in, r), dmid.data(), r, s->tmp.data(), in, n, pool);
  AddTo(dx, s->tmp.data(), static_cast<size_t>(n * in));
}

double CrossEntropyForwardBackward(float* logits, const int32_t* labels, int64_t m, int64_t vocab, float weight,
                                   uint8_t* argmax_ok, ThreadPool* pool) {
  std::vector<double> loss(static_cast<size_t>(m));
  Parallel(pool, static_cast<size_t>(m), 1, [&](size_t b, size_t e, size_t) {
    for (size_t i = b; i < e; ++i) {
      float* l = logits + static_cast<int64_t>(i) * vocab;
      const int32_t y = labels[i];
      const int64_t am = std::max_element(l, l + vocab) - l;
      const float mx = l[am];
      const float ly = l[y];
      double sum = 0;
      for (int64_t j = 0; j < vocab; ++j) {
        l[j] = std::exp(l[j] - mx);  // ≤ 1; kept for the gradient
        sum += l[j];
      }
      loss[i] = mx + std::log(sum) - ly;
      if (argmax_ok) argmax_ok[i] = am == y;
      kernels::Scale(static_cast<float>(weight / sum), l, static_cast<size_t>(vocab));
      l[y] -= weight;
    }
  });
  double total = 0;
  for (double v : loss) total += v;
  return total;
}

}  // namespace qwenmux::finetune
