// Highway implementations of kernels/vec_ops.h, compiled once per SIMD target.
#include "kernels/vec_ops.h"

#include <cmath>

#include "base/fp16.h"

#include "kernels/cpu/matmul_targets.h"  // same target set as the matmul kernels

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/vec_ops.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

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

void AxpyF16Impl(float a, const uint16_t* x, float* y, size_t n) {
  const hn::ScalableTag<float> d;
  const hn::Rebind<hwy::float16_t, decltype(d)> dh;
  const size_t N = hn::Lanes(d);
  const auto* hx = reinterpret_cast<const hwy::float16_t*>(x);
  const auto va = hn::Set(d, a);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    hn::StoreU(hn::MulAdd(va, hn::PromoteTo(d, hn::LoadU(dh, hx + i)), hn::LoadU(d, y + i)), d, y + i);
  }
  for (; i < n; ++i) y[i] += a * Fp16ToFp32(x[i]);
}

void DotsF16Impl(const uint16_t* rows, size_t stride, size_t n, const float* q, size_t dim, float scale, float* out) {
  for (size_t j = 0; j < n; ++j) out[j] = scale * DotF16Impl(rows + j * stride, q, dim);
}

void WeightedSumF16Impl(const uint16_t* rows, size_t stride, size_t n, const float* p, size_t dim, float* out) {
  const hn::ScalableTag<float> d;
  const hn::Rebind<hwy::float16_t, decltype(d)> dh;
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  // Four vectors of the output at a time stay in registers over all rows.
  for (; i + 4 * N <= dim; i += 4 * N) {
    auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    for (size_t j = 0; j < n; ++j) {
      const auto* r = reinterpret_cast<const hwy::float16_t*>(rows + j * stride) + i;
      const auto pj = hn::Set(d, p[j]);
      a0 = hn::MulAdd(pj, hn::PromoteTo(d, hn::LoadU(dh, r)), a0);
      a1 = hn::MulAdd(pj, hn::PromoteTo(d, hn::LoadU(dh, r + N)), a1);
      a2 = hn::MulAdd(pj, hn::PromoteTo(d, hn::LoadU(dh, r + 2 * N)), a2);
      a3 = hn::MulAdd(pj, hn::PromoteTo(d, hn::LoadU(dh, r + 3 * N)), a3);
    }
    hn::StoreU(a0, d, out + i);
    hn::StoreU(a1, d, out + i + N);
    hn::StoreU(a2, d, out + i + 2 * N);
    hn::StoreU(a3, d, out + i + 3 * N);
  }
  for (; i < dim; ++i) {
    float acc = 0;
    for (size_t j = 0; j < n; ++j) acc += p[j] * Fp16ToFp32(rows[j * stride + i]);
    out[i] = acc;
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
  // silu(g) = g / (1 + exp(-g)); exp via std::exp per element keeps it exact enough and simple.
  for (size_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
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
HWY_EXPORT(DotsF16Impl);
HWY_EXPORT(WeightedSumF16Impl);
HWY_EXPORT(DotF16Impl);
HWY_EXPORT(AxpyF16Impl);
HWY_EXPORT(F16ToF32Impl);
HWY_EXPORT(F32ToF16Impl);
HWY_EXPORT(SwiGluImpl);

float Dot(const float* a, const float* b, size_t n) { return HWY_DYNAMIC_DISPATCH(DotImpl)(a, b, n); }
void Axpy(float a, const float* x, float* y, size_t n) { HWY_DYNAMIC_DISPATCH(AxpyImpl)(a, x, y, n); }
void Scale(float a, float* y, size_t n) { HWY_DYNAMIC_DISPATCH(ScaleImpl)(a, y, n); }
float SumSquares(const float* x, size_t n) { return HWY_DYNAMIC_DISPATCH(SumSquaresImpl)(x, n); }
float DotF16(const uint16_t* a, const float* b, size_t n) { return HWY_DYNAMIC_DISPATCH(DotF16Impl)(a, b, n); }
void AxpyF16(float a, const uint16_t* x, float* y, size_t n) { HWY_DYNAMIC_DISPATCH(AxpyF16Impl)(a, x, y, n); }
void DotsF16(const uint16_t* rows, size_t stride, size_t n, const float* q, size_t d, float scale, float* out) {
  HWY_DYNAMIC_DISPATCH(DotsF16Impl)(rows, stride, n, q, d, scale, out);
}
void WeightedSumF16(const uint16_t* rows, size_t stride, size_t n, const float* p, size_t d, float* out) {
  HWY_DYNAMIC_DISPATCH(WeightedSumF16Impl)(rows, stride, n, p, d, out);
}
void F16ToF32(const uint16_t* in, float* out, size_t n) { HWY_DYNAMIC_DISPATCH(F16ToF32Impl)(in, out, n); }
void F32ToF16(const float* in, uint16_t* out, size_t n) { HWY_DYNAMIC_DISPATCH(F32ToF16Impl)(in, out, n); }
void SwiGlu(const float* gate, const float* up, float* out, size_t n) {
  HWY_DYNAMIC_DISPATCH(SwiGluImpl)(gate, up, out, n);
}
}  // namespace qwenmux::kernels
#endif
