// Per-target building blocks of the MatMul kernels: int8 block dot products and the row x token
// tile driver. Included once per SIMD target by matmul_{q8,k,float}.cc via foreach_target.h.
//
// Two implementations of the int8 primitives:
//  - x86 AVX2 / AVX3 / AVX3_DL: 32 int8 lanes in a __m256i; u8 x s8 products with vpmaddubsw
//    (+ vpmaddwd to int32 with per-16 int16 scales), or vpdpbusd (AVX512-VNNI) on AVX3_DL.
//  - everything else (SSE4, EMU128, NEON): 16-lane halves with Highway ops: widen to int16 and
//    ReorderWidenMulAccumulate into int32.
// Per-file include guard, toggled per target (Highway's convention).
#if defined(QWENMUX_KERNELS_CPU_MATMUL_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef QWENMUX_KERNELS_CPU_MATMUL_INL_H_
#undef QWENMUX_KERNELS_CPU_MATMUL_INL_H_
#else
#define QWENMUX_KERNELS_CPU_MATMUL_INL_H_
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "kernels/cpu/matmul_internal.h"

#undef QM_MATMUL_X86
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
#define QM_MATMUL_X86 1
#include <immintrin.h>
#else
#define QM_MATMUL_X86 0
#endif
// AVX-512: tiles of >= 2 tokens put two tokens in the two 256-bit halves of a zmm register
// (weights broadcast to both halves), so the 256-bit block decoding is shared with AVX2.
#undef QM_MATMUL_AVX512
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
#define QM_MATMUL_AVX512 1
#else
#define QM_MATMUL_AVX512 0
#endif

HWY_BEFORE_NAMESPACE();
#if HWY_TARGET == HWY_AVX3_DL
QM_VNNI_ATTRIBUTES
#endif
namespace qwenmux::kernels::internal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Software prefetch distance (bytes ahead in the weight stream). Measured on Zen (AVX-512):
// 1 KiB -> 15 GB/s, 2 KiB -> 16, 4 KiB -> 18 GB/s for one thread's Q8_0 mat-vec from DRAM.
constexpr size_t kPrefetchBytes = 4096;

// Prefetches the weight bytes [p + kPrefetchBytes, p + kPrefetchBytes + n).
template <size_t n>
HWY_INLINE void PrefetchAhead(const uint8_t* p) {
  for (size_t o = 0; o < n; o += 64) hwy::Prefetch(p + kPrefetchBytes + o);
}

// Loads of possibly unaligned block fields.
HWY_INLINE uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

#if QM_MATMUL_X86
using I256 = __m256i;

HWY_INLINE I256 Load256(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
HWY_INLINE __m128i Load128(const void* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

// acc += sum of w[i] * x[i] over each 4 consecutive bytes (int32 lanes); w signed, |w|, x in
// [-127, 127]. absw = |w| (hoisted by the caller: shared by all tokens).
HWY_INLINE I256 DotS8(I256 acc, I256 absw, I256 w, I256 x) {
  const I256 sx = _mm256_sign_epi8(x, w);
#if HWY_TARGET == HWY_AVX3_DL
  return _mm256_dpbusd_epi32(acc, absw, sx);
#else
  const I256 p16 = _mm256_maddubs_epi16(absw, sx);
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
#endif
}

// acc += sum over pairs of (u[i] * x[i] + u[i+1] * x[i+1]) * sc16[pair], u in [0, 127].
HWY_INLINE I256 DotU8Scaled(I256 acc, I256 u, I256 x, I256 sc16) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), sc16));
}

#if QM_MATMUL_AVX512
using I512 = __m512i;
HWY_INLINE I512 Bcast(I256 v) { return _mm512_broadcast_i64x4(v); }
HWY_INLINE I512 Pair(I256 lo, I256 hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
HWY_INLINE __m512 PairF(float lo, float hi) {
  return _mm512_insertf32x8(_mm512_set1_ps(lo), _mm256_set1_ps(hi), 1);
}
// As DotS8 (AVX-512 has no vpsignb: negate x where w < 0 with a mask).
HWY_INLINE I512 DotS8x2(I512 acc, I512 absw, I512 w, I512 x) {
  const I512 sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
#if HWY_TARGET == HWY_AVX3_DL
  return _mm512_dpbusd_epi32(acc, absw, sx);
#else
  const I512 p16 = _mm512_maddubs_epi16(absw, sx);
  return _mm512_add_epi32(acc, _mm512_madd_epi16(p16, _mm512_set1_epi16(1)));
#endif
}
HWY_INLINE I512 DotU8Scaledx2(I512 acc, I512 u, I512 x, I512 sc16) {
  return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, x), sc16));
}
#endif  // QM_MATMUL_AVX512

// fp16 -> f32 with F16C (exact, fp16 subnormals included: they are normal f32 values).
HWY_INLINE float HalfToFloatF16C(const uint8_t* p) {
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(LoadU16(p))));
}
// The two fp16 values at p (d and dmin of a K-quant block) as f32 lanes 0 and 1.
HWY_INLINE __m128 Half2ToFloatF16C(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(v)));
}

// vpshufb of v with one of matmul_internal.h's kSplatI16 controls (per-sub-block scales).
HWY_INLINE I256 SplatI16(I256 v, const int8_t* ctl) { return _mm256_shuffle_epi8(v, Load256(ctl)); }

HWY_INLINE float HSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#if QM_MATMUL_AVX512
// Sums of the low and high 256-bit halves (the two tokens of a pair).
HWY_INLINE void HSum2(__m512 v, float* lo, float* hi) {
  *lo = HSum(_mm512_castps512_ps256(v));
  *hi = HSum(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
#endif
#if QM_MATMUL_AVX512
// out[i * T + j] from the pair accumulators acc[i][j / 2] (half j % 2).
template <int R, int T, int P>
HWY_INLINE void StorePairs(const __m512 (&acc)[R][P], float* out) {
  QM_UNROLL for (int i = 0; i < R; ++i) {
    QM_UNROLL for (int p = 0; p < P; ++p) {
      float lo, hi;
      HSum2(acc[i][p], &lo, &hi);
      out[i * T + 2 * p] = lo;
      if (2 * p + 1 < T) out[i * T + 2 * p + 1] = hi;
    }
  }
}
#endif
HWY_INLINE int32_t HSumI32(I256 v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

#elif HWY_TARGET != HWY_SCALAR  // portable 128-bit

using D8 = hn::Full128<int8_t>;
using DU8 = hn::Full128<uint8_t>;
using D16 = hn::Full128<int16_t>;
using D32 = hn::Full128<int32_t>;
using DF = hn::Full128<float>;
using DH8 = hn::Full64<int8_t>;
using V8 = hn::Vec<D8>;
using V16 = hn::Vec<D16>;
using V32 = hn::Vec<D32>;
using VF = hn::Vec<DF>;

// Int32 accumulator pair for ReorderWidenMulAccumulate (lane order is irrelevant: we only sum).
// (User-provided constructor: GCC would otherwise emit the implicit one without the target
// attributes and fail to inline the vector constructors on aarch64.)
struct AccI {
  HWY_INLINE AccI() : a(hn::Zero(D32())), b(hn::Zero(D32())) {}
  V32 a, b;
};
HWY_INLINE AccI ZeroAcc() { return AccI(); }
HWY_INLINE V16 WidenLo(V8 v) { return hn::PromoteTo(D16(), hn::LowerHalf(DH8(), v)); }
HWY_INLINE V16 WidenHi(V8 v) { return hn::PromoteTo(D16(), hn::UpperHalf(DH8(), v)); }
HWY_INLINE void Mac(AccI& acc, V16 w, V16 x) {
  acc.a = hn::ReorderWidenMulAccumulate(D32(), w, x, acc.a, acc.b);
}
HWY_INLINE V32 Total(const AccI& acc) { return hn::Add(acc.a, acc.b); }
HWY_INLINE float HSumF(VF v) { return hn::GetLane(hn::SumOfLanes(DF(), v)); }
HWY_INLINE int32_t HSumI(V32 v) { return hn::GetLane(hn::SumOfLanes(D32(), v)); }

// The 32 activations of one block as 4 x 8 int16.
struct X32 {
  V16 v[4];
};
HWY_INLINE X32 LoadX32(const int8_t* p) {
  const V8 lo = hn::LoadU(D8(), p);
  const V8 hi = hn::LoadU(D8(), p + 16);
  return X32{{WidenLo(lo), WidenHi(lo), WidenLo(hi), WidenHi(hi)}};
}
#endif  // QM_MATMUL_X86

// HWY_SCALAR (no 128-bit vectors): dequantize each row and dot in f32.
inline HWY_NOINLINE void RowsScalar(const MatMulArgs& a, int64_t r0, int64_t r1) {
  float* row = new float[static_cast<size_t>(a.w.cols)];
  for (int64_t r = r0; r < r1; ++r) {
    DequantizeRowTo(a.w, r, row);
    for (int64_t t = 0; t < a.n_tokens; ++t) {
      const float* xt = a.x + t * a.ldx;
      float s = 0.0f;
      for (int64_t k = 0; k < a.w.cols; ++k) s += row[k] * xt[k];
      a.y[t * a.ldy + r] = s;
    }
  }
  delete[] row;
}

// Drives a per-type kernel K over rows [r0, r1) and all tokens. K::Tile<R, T>(w, row_bytes,
// qx/x, t0, out) computes out[r * T + t] = dot(row r, token t0 + t) for an R x T tile, so
// each loaded weight block is reused by T tokens and each activation block by R rows.
template <class K, int R, int T>
HWY_INLINE void RunTile(const MatMulArgs& a, int64_t r, int64_t t) {
  float out[R * T];
  K::template Tile<R, T>(a, r, t, out);
  QM_UNROLL for (int i = 0; i < R; ++i) {
    QM_UNROLL for (int j = 0; j < T; ++j) a.y[(t + j) * a.ldy + r + i] = out[i * T + j];
  }
}

template <class K, int R>
HWY_INLINE void RunTokens(const MatMulArgs& a, int64_t r, int64_t t0, int64_t t1) {
  int64_t t = t0;
  for (; t + 4 <= t1; t += 4) RunTile<K, R, 4>(a, r, t);
  switch (t1 - t) {
    case 3: RunTile<K, R, 3>(a, r, t); break;
    case 2: RunTile<K, R, 2>(a, r, t); break;
    case 1: RunTile<K, R, 1>(a, r, t); break;
    default: break;
  }
}

// Up to this many tokens a call runs row by row (see RunRows).
constexpr int64_t kFewTokens = 8;

template <class K>
HWY_NOINLINE void RunRows(const MatMulArgs& a, int64_t r0, int64_t r1) {
  if (a.n_tokens == 1) {
    // Mat-vec: one row at a time keeps a single sequential stream, which the software
    // prefetch (kPrefetchBytes ahead) turns into near-DRAM-bandwidth reads. Several rows
    // at once measured 2-3x slower from DRAM.
    for (int64_t r = r0; r < r1; ++r) RunTile<K, 1, 1>(a, r, 0);
    return;
  }
  if (a.n_tokens <= kFewTokens) {
    // A few tokens (a decode step of a few batched sequences): still one row at a time, so the
    // weights stream as in the mat-vec, each block reused by every token. Multi-row tiles measured
    // 2.4x the mat-vec's time for 4 tokens from DRAM (Q8_0, Zen 4), this 1.7x.
    for (int64_t r = r0; r < r1; ++r) RunTokens<K, 1>(a, r, 0, a.n_tokens);
    return;
  }
  // Row groups small enough to stay in L2 (<= 16 rows), each run over all tokens: the weights
  // are read from memory once and the quantized activations stream from L2/L3. (Token blocks
  // outside the row loop measured 2x slower from n_tokens = 256 on: the weights fell out of
  // cache between blocks.)
  constexpr int64_t kRowGroup = 16;
  for (int64_t g = r0; g < r1; g += kRowGroup) {
    const int64_t ge = std::min(r1, g + kRowGroup);
    int64_t r = g;
#if QM_MATMUL_AVX512
    // 32 zmm registers: 4 rows x 2 token pairs of accumulators where the kernel's live state
    // allows (K::kRows4: Q8_0/Q4_0; the K-quants spill with 4 rows and measured slower).
    if constexpr (K::kRows4) {
      for (; r + 4 <= ge; r += 4) RunTokens<K, 4>(a, r, 0, a.n_tokens);
    }
#endif
    for (; r + 2 <= ge; r += 2) RunTokens<K, 2>(a, r, 0, a.n_tokens);
    for (; r < ge; ++r) RunTokens<K, 1>(a, r, 0, a.n_tokens);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace qwenmux::kernels::internal
HWY_AFTER_NAMESPACE();

#endif  // include guard
