// Highway implementations of kernels/vec_ops.h, compiled once per SIMD target.
#include "kernels/vec_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "base/fp16.h"

#include "kernels/cpu/matmul_internal.h"  // QM_UNROLL
#include "kernels/cpu/matmul_targets.h"  // same target set as the matmul kernels

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/vec_ops.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/cache_control.h"
#include "hwy/contrib/math/math-inl.h"

HWY_BEFORE_NAMESPACE();
namespace qwenmux::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using qwenmux::Fp16ToFp32;
using qwenmux::Fp32ToFp16;

float DotImpl(const float* a, const float* b, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  auto s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
    s1 = hn::MulAdd(hn::LoadU(d, a + i + N), hn::LoadU(d, b + i + N), s1);
    s2 = hn::MulAdd(hn::LoadU(d, a + i + 2 * N), hn::LoadU(d, b + i + 2 * N), s2);
    s3 = hn::MulAdd(hn::LoadU(d, a + i + 3 * N), hn::LoadU(d, b + i + 3 * N), s3);
  }
  for (; i + N <= n; i += N) s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
  s0 = hn::Add(hn::Add(s0, s1), hn::Add(s2, s3));
  float sum = hn::GetLane(hn::SumOfLanes(d, s0));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void AxpyImpl(float a, const float* x, float* y, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const auto va = hn::Set(d, a);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::MulAdd(va, hn::LoadU(d, x + i), hn::LoadU(d, y + i)), d, y + i);
  for (; i < n; ++i) y[i] += a * x[i];
}

void ScaleImpl(float a, float* y, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const auto va = hn::Set(d, a);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Mul(va, hn::LoadU(d, y + i)), d, y + i);
  for (; i < n; ++i) y[i] *= a;
}

float DotF16Impl(const uint16_t* a, const float* b, size_t n) {
  const hn::ScalableTag<float> d;
  const hn::Rebind<hwy::float16_t, decltype(d)> dh;
  const size_t N = hn::Lanes(d);
  const auto* ha = reinterpret_cast<const hwy::float16_t*>(a);
  auto s0 = hn::Zero(d), s1 = hn::Zero(d);
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    s0 = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, ha + i)), hn::LoadU(d, b + i), s0);
    s1 = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, ha + i + N)), hn::LoadU(d, b + i + N), s1);
  }
  for (; i + N <= n; i += N) s0 = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, ha + i)), hn::LoadU(d, b + i), s0);
  float sum = hn::GetLane(hn::SumOfLanes(d, hn::Add(s0, s1)));
  for (; i < n; ++i) sum += Fp16ToFp32(a[i]) * b[i];
  return sum;
}

// Cached K/V rows are read in order; software prefetch this many rows ahead lets the arithmetic
// overlap the memory reads (measured: without it a thread's time was the sum of the two).
constexpr size_t kAheadRows = 8;
HWY_INLINE void PrefetchRow(const hwy::float16_t* r, size_t dim) {
  for (size_t b = 0; b < dim * sizeof(uint16_t); b += 64) hwy::Prefetch(reinterpret_cast<const uint8_t*>(r) + b);
}

// AttendF16 for a block of GB (<= 4) query heads: scores[g * ns + j] = scale * K[j] . q[g].
// Two accumulators per head keep two FMA chains in flight; each K row is converted once for all
// GB heads.
template <int GB>
HWY_INLINE void DotsBlock(const hwy::float16_t* k, size_t stride, size_t n, const float* q, size_t dim,
                          float scale, float* scores, size_t ns) {
  const hn::ScalableTag<float> d;
  const hn::Rebind<hwy::float16_t, decltype(d)> dh;
  const size_t N = hn::Lanes(d);
  for (size_t j = 0; j < n; ++j) {
    const hwy::float16_t* r = k + j * stride;
    if (j + kAheadRows < n) PrefetchRow(r + kAheadRows * stride, dim);
    hn::Vec<decltype(d)> a0[GB], a1[GB];
    QM_UNROLL for (int g = 0; g < GB; ++g) a0[g] = a1[g] = hn::Zero(d);
    size_t i = 0;
    for (; i + 2 * N <= dim; i += 2 * N) {
      const auto k0 = hn::PromoteTo(d, hn::LoadU(dh, r + i));
      const auto k1 = hn::PromoteTo(d, hn::LoadU(dh, r + i + N));
      QM_UNROLL for (int g = 0; g < GB; ++g) {
        a0[g] = hn::MulAdd(k0, hn::LoadU(d, q + g * dim + i), a0[g]);
        a1[g] = hn::MulAdd(k1, hn::LoadU(d, q + g * dim + i + N), a1[g]);
      }
    }
    for (; i + N <= dim; i += N) {
      const auto k0 = hn::PromoteTo(d, hn::LoadU(dh, r + i));
      QM_UNROLL for (int g = 0; g < GB; ++g) a0[g] = hn::MulAdd(k0, hn::LoadU(d, q + g * dim + i), a0[g]);
    }
    QM_UNROLL for (int g = 0; g < GB; ++g) {
      float s = hn::GetLane(hn::SumOfLanes(d, hn::Add(a0[g], a1[g])));
      for (size_t t = i; t < dim; ++t) s += Fp16ToFp32(reinterpret_cast<const uint16_t*>(r)[t]) * q[g * dim + t];
      scores[g * ns + j] = scale * s;
    }
  }
}

// out[g][i .. i + C * N) = inv[g] * sum_j p[g][j] V[j][i ..], for GB heads at once: each V row
// chunk is converted once for all GB heads.
template <int GB, int C>
HWY_INLINE size_t WeightedBlock(const hwy::float16_t* v, size_t stride, size_t n, const float* p, size_t ns,
                                const float* inv, size_t dim, size_t i, float* out) {
  const hn::ScalableTag<float> d;
  const hn::Rebind<hwy::float16_t, decltype(d)> dh;
  const size_t N = hn::Lanes(d);
  for (; i + C * N <= dim; i += C * N) {
    hn::Vec<decltype(d)> a[GB][C];
    QM_UNROLL for (int g = 0; g < GB; ++g)
      QM_UNROLL for (int c = 0; c < C; ++c) a[g][c] = hn::Zero(d);
    for (size_t j = 0; j < n; ++j) {
      const hwy::float16_t* r = v + j * stride + i;
      // The first pass streams whole rows in from memory; the later ones find them in L2.
      if (i == 0 && j + kAheadRows < n) PrefetchRow(r + kAheadRows * stride, dim);
      hn::Vec<decltype(d)> x[C];
      QM_UNROLL for (int c = 0; c < C; ++c) x[c] = hn::PromoteTo(d, hn::LoadU(dh, r + c * N));
      QM_UNROLL for (int g = 0; g < GB; ++g) {
        const auto pj = hn::Set(d, p[g * ns + j]);
        QM_UNROLL for (int c = 0; c < C; ++c) a[g][c] = hn::MulAdd(pj, x[c], a[g][c]);
      }
    }
    QM_UNROLL for (int g = 0; g < GB; ++g)
      QM_UNROLL for (int c = 0; c < C; ++c) hn::StoreU(hn::Mul(a[g][c], hn::Set(d, inv[g])), d, out + g * dim + i + c * N);
  }
  return i;
}

template <int GB>
HWY_INLINE void AttendBlock(const uint16_t* k, const uint16_t* v, size_t stride, size_t n, const float* q,
                            size_t dim, float scale, float* scores, float* out) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const auto* hk = reinterpret_cast<const hwy::float16_t*>(k);
  const auto* hv = reinterpret_cast<const hwy::float16_t*>(v);
  DotsBlock<GB>(hk, stride, n, q, dim, scale, scores, n);
  float inv[GB];
  QM_UNROLL for (int g = 0; g < GB; ++g) {  // softmax numerators in place; 1 / their sum
    float* s = scores + g * n;
    auto vmax = hn::Set(d, -std::numeric_limits<float>::infinity());
    size_t j = 0;
    for (; j + N <= n; j += N) vmax = hn::Max(vmax, hn::LoadU(d, s + j));
    float mx = hn::GetLane(hn::MaxOfLanes(d, vmax));
    for (size_t t = j; t < n; ++t) mx = std::max(mx, s[t]);
    const auto vmx = hn::Set(d, mx);
    auto vsum = hn::Zero(d);
    for (j = 0; j + N <= n; j += N) {
      const auto e = hn::Exp(d, hn::Sub(hn::LoadU(d, s + j), vmx));
      hn::StoreU(e, d, s + j);
      vsum = hn::Add(vsum, e);
    }
    float sum = hn::GetLane(hn::SumOfLanes(d, vsum));
    for (; j < n; ++j) {
      s[j] = std::exp(s[j] - mx);
      sum += s[j];
    }
    inv[g] = 1.0f / sum;
  }
  size_t i = WeightedBlock<GB, (GB <= 2 ? 4 : 2)>(hv, stride, n, scores, n, inv, dim, 0, out);
  i = WeightedBlock<GB, 1>(hv, stride, n, scores, n, inv, dim, i, out);
  for (; i < dim; ++i) {
    QM_UNROLL for (int g = 0; g < GB; ++g) {
      float acc = 0;
      for (size_t j = 0; j < n; ++j) acc += scores[g * n + j] * Fp16ToFp32(v[j * stride + i]);
      out[g * dim + i] = acc * inv[g];
    }
  }
}

void AttendF16Impl(const uint16_t* k, const uint16_t* v, size_t stride, size_t n, const float* q, size_t heads,
                   size_t dim, float scale, float* scores, float* out) {
  for (size_t g = 0; g < heads; g += 4) {
    const float* qg = q + g * dim;
    float* og = out + g * dim;
    switch (std::min<size_t>(4, heads - g)) {
      case 1: AttendBlock<1>(k, v, stride, n, qg, dim, scale, scores, og); break;
      case 2: AttendBlock<2>(k, v, stride, n, qg, dim, scale, scores, og); break;
      case 3: AttendBlock<3>(k, v, stride, n, qg, dim, scale, scores, og); break;
      default: AttendBlock<4>(k, v, stride, n, qg, dim, scale, scores, og); break;
    }
  }
}

float SumSquaresImpl(const float* x, size_t n) { return DotImpl(x, x, n); }

void F16ToF32Impl(const uint16_t* in, float* out, size_t n) {
  const hn::ScalableTag<float> d;
  const hn::Rebind<hwy::float16_t, decltype(d)> dh;
  const size_t N = hn::Lanes(d);
  const auto* hin = reinterpret_cast<const hwy::float16_t*>(in);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::PromoteTo(d, hn::LoadU(dh, hin + i)), d, out + i);
  for (; i < n; ++i) out[i] = Fp16ToFp32(in[i]);
}

void F32ToF16Impl(const float* in, uint16_t* out, size_t n) {
  const hn::ScalableTag<float> d;
  const hn::Rebind<hwy::float16_t, decltype(d)> dh;
  const size_t N = hn::Lanes(d);
  auto* hout = reinterpret_cast<hwy::float16_t*>(out);
  size_t i = 0;
#if HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3 || HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128
  // Without hardware f16 conversion Highway 1.0.3 truncates; keep round-to-nearest-even so the
  // KV cache holds the same values on every target.
  (void)N;
  (void)hout;
  (void)dh;
#else
  for (; i + N <= n; i += N) hn::StoreU(hn::DemoteTo(dh, hn::LoadU(d, in + i)), dh, hout + i);
#endif
  for (; i < n; ++i) out[i] = Fp32ToFp16(in[i]);
}

void SwiGluImpl(const float* gate, const float* up, float* out, size_t n) {
  // silu(g) = g / (1 + exp(-g)). Highway's Exp is defined up to +88: -g is clamped there, where
  // g / (1 + e^88) is already 0 to f32 precision of the product.
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const auto one = hn::Set(d, 1.0f), lim = hn::Set(d, 88.0f);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto g = hn::LoadU(d, gate + i);
    const auto e = hn::Exp(d, hn::Min(hn::Neg(g), lim));
    hn::StoreU(hn::Mul(hn::Div(g, hn::Add(one, e)), hn::LoadU(d, up + i)), d, out + i);
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(std::min(-gate[i], 88.0f))) * up[i];
}

}  // namespace HWY_NAMESPACE
}  // namespace qwenmux::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qwenmux::kernels {
HWY_EXPORT(DotImpl);
HWY_EXPORT(AxpyImpl);
HWY_EXPORT(ScaleImpl);
HWY_EXPORT(SumSquaresImpl);
HWY_EXPORT(AttendF16Impl);
HWY_EXPORT(DotF16Impl);
HWY_EXPORT(F16ToF32Impl);
HWY_EXPORT(F32ToF16Impl);
HWY_EXPORT(SwiGluImpl);

float Dot(const float* a, const float* b, size_t n) { return HWY_DYNAMIC_DISPATCH(DotImpl)(a, b, n); }
void Axpy(float a, const float* x, float* y, size_t n) { HWY_DYNAMIC_DISPATCH(AxpyImpl)(a, x, y, n); }
void Scale(float a, float* y, size_t n) { HWY_DYNAMIC_DISPATCH(ScaleImpl)(a, y, n); }
float SumSquares(const float* x, size_t n) { return HWY_DYNAMIC_DISPATCH(SumSquaresImpl)(x, n); }
float DotF16(const uint16_t* a, const float* b, size_t n) { return HWY_DYNAMIC_DISPATCH(DotF16Impl)(a, b, n); }
void AttendF16(const uint16_t* k, const uint16_t* v, size_t stride, size_t n, const float* q, size_t heads,
               size_t d, float scale, float* scores, float* out) {
  HWY_DYNAMIC_DISPATCH(AttendF16Impl)(k, v, stride, n, q, heads, d, scale, scores, out);
}
void F16ToF32(const uint16_t* in, float* out, size_t n) { HWY_DYNAMIC_DISPATCH(F16ToF32Impl)(in, out, n); }
void F32ToF16(const float* in, uint16_t* out, size_t n) { HWY_DYNAMIC_DISPATCH(F32ToF16Impl)(in, out, n); }
void SwiGlu(const float* gate, const float* up, float* out, size_t n) {
  HWY_DYNAMIC_DISPATCH(SwiGluImpl)(gate, up, out, n);
}
}  // namespace qwenmux::kernels
#endif
