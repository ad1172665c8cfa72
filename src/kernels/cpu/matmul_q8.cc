// MatMul kernels for the 32-element block types Q8_0 and Q4_0 (activations quantized like Q8_0:
// one f32 scale per 32 int8 values). Per block: integer dot product, then one f32 FMA with
// scale(w) * scale(x).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/matmul_q8.cc"
#include "kernels/cpu/matmul_targets.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/cpu/matmul-inl.h"
#include "quant/blocks.h"

HWY_BEFORE_NAMESPACE();
#if HWY_TARGET == HWY_AVX3_DL
QM_VNNI_ATTRIBUTES
#endif
namespace qwenmux::kernels::internal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR
// Decodes block b of a Q8_0 / Q4_0 row into signed int8 values.
struct DecQ8_0 {
  static constexpr size_t kBytes = sizeof(quant::BlockQ8_0);
#if QM_MATMUL_X86
  static HWY_INLINE I256 Quants(const uint8_t* blk) { return Load256(blk + 2); }
#else
  static HWY_INLINE void Quants(const uint8_t* blk, V16* w) {
    const V8 lo = hn::LoadU(D8(), reinterpret_cast<const int8_t*>(blk + 2));
    const V8 hi = hn::LoadU(D8(), reinterpret_cast<const int8_t*>(blk + 18));
    w[0] = WidenLo(lo);
    w[1] = WidenHi(lo);
    w[2] = WidenLo(hi);
    w[3] = WidenHi(hi);
  }
#endif
};

struct DecQ4_0 {
  static constexpr size_t kBytes = sizeof(quant::BlockQ4_0);
#if QM_MATMUL_X86
  static HWY_INLINE I256 Quants(const uint8_t* blk) {
    const __m128i v = Load128(blk + 2);
    const __m128i m = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(v, m);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
    return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
  }
#else
  static HWY_INLINE void Quants(const uint8_t* blk, V16* w) {
    const auto v = hn::LoadU(DU8(), blk + 2);
    const auto k8 = hn::Set(D8(), 8);
    const V8 lo = hn::Sub(hn::BitCast(D8(), hn::And(v, hn::Set(DU8(), 0x0F))), k8);
    const V8 hi = hn::Sub(hn::BitCast(D8(), hn::ShiftRight<4>(v)), k8);
    w[0] = WidenLo(lo);
    w[1] = WidenHi(lo);
    w[2] = WidenLo(hi);
    w[3] = WidenHi(hi);
  }
#endif
};

template <class Dec>
struct KernelQ32 {
  static constexpr bool kRows4 = true;
  template <int R, int T>
  static HWY_INLINE void Tile(const MatMulArgs& a, int64_t r, int64_t t0, float* out) {
    const int64_t nb = a.w.cols / 32;
    const uint8_t* w[R];
    QM_UNROLL for (int i = 0; i < R; ++i) w[i] = a.w.data + static_cast<size_t>(r + i) * a.w.row_bytes;
    const int8_t* xq[T];
    const float* xd[T];
    QM_UNROLL for (int j = 0; j < T; ++j) {
      xq[j] = a.qx.Qs(t0 + j);
      xd[j] = a.qx.D(t0 + j);
    }
#if QM_MATMUL_AVX512
    if constexpr (T >= 2) {
      constexpr int P = (T + 1) / 2;  // token pairs; an odd last token pairs with itself
      __m512 acc[R][P];
      QM_UNROLL for (int i = 0; i < R; ++i)
        QM_UNROLL for (int p = 0; p < P; ++p) acc[i][p] = _mm512_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        I512 wv[R], absw[R];
        __m512 dw[R];
        QM_UNROLL for (int i = 0; i < R; ++i) {
          const uint8_t* blk = w[i] + b * Dec::kBytes;
          if ((b & 1) == 0) PrefetchAhead<64>(blk);
          const I256 q = Dec::Quants(blk);
          wv[i] = Bcast(q);
          absw[i] = Bcast(_mm256_abs_epi8(q));
          dw[i] = _mm512_set1_ps(HalfToFloat(LoadU16(blk)));
        }
        QM_UNROLL for (int p = 0; p < P; ++p) {
          const int j0 = 2 * p, j1 = std::min(2 * p + 1, T - 1);
          const I512 xv = Pair(Load256(xq[j0] + b * 32), Load256(xq[j1] + b * 32));
          const __m512 dx = PairF(xd[j0][b], xd[j1][b]);
          QM_UNROLL for (int i = 0; i < R; ++i) {
            const I512 s = DotS8x2(_mm512_setzero_si512(), absw[i], wv[i], xv);
            acc[i][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[i], dx), acc[i][p]);
          }
        }
      }
      QM_UNROLL for (int i = 0; i < R; ++i) {
        QM_UNROLL for (int p = 0; p < P; ++p) {
          float lo, hi;
          HSum2(acc[i][p], &lo, &hi);
          out[i * T + 2 * p] = lo;
          if (2 * p + 1 < T) out[i * T + 2 * p + 1] = hi;
        }
      }
      return;
    }
#endif
#if QM_MATMUL_X86
    __m256 acc[R][T];
    QM_UNROLL for (int i = 0; i < R; ++i)
      QM_UNROLL for (int j = 0; j < T; ++j) acc[i][j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      I256 wv[R], absw[R];
      __m256 dw[R];
      QM_UNROLL for (int i = 0; i < R; ++i) {
        const uint8_t* blk = w[i] + b * Dec::kBytes;
        if ((b & 1) == 0) PrefetchAhead<64>(blk);
        wv[i] = Dec::Quants(blk);
        absw[i] = _mm256_abs_epi8(wv[i]);
        dw[i] = _mm256_set1_ps(HalfToFloatF16C(blk));
      }
      QM_UNROLL for (int j = 0; j < T; ++j) {
        const I256 xv = Load256(xq[j] + b * 32);
        const __m256 dx = _mm256_broadcast_ss(xd[j] + b);
        QM_UNROLL for (int i = 0; i < R; ++i) {
          const I256 s = DotS8(_mm256_setzero_si256(), absw[i], wv[i], xv);
          acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw[i], dx), acc[i][j]);
        }
      }
    }
    QM_UNROLL for (int i = 0; i < R; ++i)
      QM_UNROLL for (int j = 0; j < T; ++j) out[i * T + j] = HSum(acc[i][j]);
#else
    VF acc[R][T];
    QM_UNROLL for (int i = 0; i < R; ++i)
      QM_UNROLL for (int j = 0; j < T; ++j) acc[i][j] = hn::Zero(DF());
    for (int64_t b = 0; b < nb; ++b) {
      V16 wv[R][4];
      float dw[R];
      QM_UNROLL for (int i = 0; i < R; ++i) {
        const uint8_t* blk = w[i] + b * Dec::kBytes;
        if ((b & 1) == 0) PrefetchAhead<64>(blk);
        Dec::Quants(blk, wv[i]);
        dw[i] = HalfToFloat(LoadU16(blk));
      }
      QM_UNROLL for (int j = 0; j < T; ++j) {
        const X32 xv = LoadX32(xq[j] + b * 32);
        QM_UNROLL for (int i = 0; i < R; ++i) {
          AccI s = ZeroAcc();
          QM_UNROLL for (int k = 0; k < 4; ++k) Mac(s, wv[i][k], xv.v[k]);
          acc[i][j] = hn::MulAdd(hn::ConvertTo(DF(), Total(s)), hn::Set(DF(), dw[i] * xd[j][b]),
                                 acc[i][j]);
        }
      }
    }
    QM_UNROLL for (int i = 0; i < R; ++i)
      QM_UNROLL for (int j = 0; j < T; ++j) out[i * T + j] = HSumF(acc[i][j]);
#endif
  }
};

#endif  // HWY_TARGET != HWY_SCALAR

// Activation quantization (see QuantizedX): per block, d = amax / 127 and q = round(x / d).
void QuantizeRowsT(const float* x, int64_t ldx, int64_t t0, int64_t t1, int64_t cols,
                   int64_t block, int8_t* qs, float* d, int16_t* bsums) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));  // divides 32 on every target used
  const int64_t nb = cols / block;
  const auto lim = hn::Set(df, 127.0f);
  const auto neg_lim = hn::Set(df, -127.0f);
  for (int64_t t = t0; t < t1; ++t) {
    const float* xt = x + t * ldx;
    int8_t* q = qs + t * cols;
    float* dt = d + t * nb;
    for (int64_t b = 0; b < nb; ++b) {
      const float* xb = xt + b * block;
      int8_t* qb = q + b * block;
      // vsum only carries NaN: Max drops a NaN operand on some targets (NEON's fmaxnm, and x86
      // depending on the operand order), which would quantize a NaN block to finite zeros. A NaN
      // input must give NaN outputs, as float arithmetic would (the engine's non-finite check).
      auto vmax = hn::Zero(df), vsum = hn::Zero(df);
      for (int64_t k = 0; k < block; k += n) {
        const auto v = hn::LoadU(df, xb + k);
        vmax = hn::Max(vmax, hn::Abs(v));
        vsum = hn::Add(vsum, v);
      }
      const float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
      dt[b] = std::isnan(hn::GetLane(hn::SumOfLanes(df, vsum))) ? std::numeric_limits<float>::quiet_NaN() : amax / 127.0f;
      const auto inv = hn::Set(df, amax > 0.0f ? 127.0f / amax : 0.0f);
      for (int64_t k = 0; k < block; k += n) {
        const auto v = hn::Min(hn::Max(hn::Mul(hn::LoadU(df, xb + k), inv), neg_lim), lim);
        hn::StoreU(hn::DemoteTo(d8, hn::NearestInt(v)), d8, qb + k);
      }
    }
    int16_t* st = bsums + t * (cols / 16);
    for (int64_t g = 0; g < cols / 16; ++g) {
      int s = 0;
      for (int k = 0; k < 16; ++k) s += q[g * 16 + k];
      st[g] = static_cast<int16_t>(s);
    }
  }
}

void RowsQ8_0(const MatMulArgs& a, int64_t r0, int64_t r1) {
  
#if HWY_TARGET == HWY_SCALAR
  RowsScalar(a, r0, r1);
#else
  RunRows<KernelQ32<DecQ8_0>>(a, r0, r1);
#endif

}
void RowsQ4_0(const MatMulArgs& a, int64_t r0, int64_t r1) {
  
#if HWY_TARGET == HWY_SCALAR
  RowsScalar(a, r0, r1);
#else
  RunRows<KernelQ32<DecQ4_0>>(a, r0, r1);
#endif

}

}  // namespace HWY_NAMESPACE
}  // namespace qwenmux::kernels::internal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qwenmux::kernels::internal {
HWY_EXPORT(RowsQ8_0);
HWY_EXPORT(QuantizeRowsT);
void QuantizeActivations(const float* x, int64_t ldx, int64_t t0, int64_t t1, int64_t cols,
                         int64_t block, int8_t* qs, float* d, int16_t* bsums) {
  HWY_DYNAMIC_DISPATCH(QuantizeRowsT)(x, ldx, t0, t1, cols, block, qs, d, bsums);
}
HWY_EXPORT(RowsQ4_0);
void MatMulRowsQ8_0(const MatMulArgs& a, int64_t r0, int64_t r1) {
  HWY_DYNAMIC_DISPATCH(RowsQ8_0)(a, r0, r1);
}
void MatMulRowsQ4_0(const MatMulArgs& a, int64_t r0, int64_t r1) {
  HWY_DYNAMIC_DISPATCH(RowsQ4_0)(a, r0, r1);
}
}  // namespace qwenmux::kernels::internal
#endif
