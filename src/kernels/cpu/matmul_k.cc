// MatMul kernels for the K-quants Q4_K, Q5_K and Q6_K. Activations are quantized per 256 values
// (as ggml's Q8_K) with int16 sums per 16, so a whole super-block is one integer dot product:
// the 6-bit / 8-bit sub-block scales are applied in the integer domain (vpmaddwd with per-lane
// int16 scales on x86, int16 multiply before widening elsewhere), and the Q4_K/Q5_K mins and the
// Q6_K offset of 32 come from the activation block sums.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/matmul_k.cc"
#include "kernels/cpu/matmul_targets.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/cpu/matmul-inl.h"
#include "quant/blocks.h"

#ifndef QWENMUX_KERNELS_CPU_MATMUL_K_ONCE_
#define QWENMUX_KERNELS_CPU_MATMUL_K_ONCE_
namespace qwenmux::kernels::internal {
// The 8 6-bit scales (sc[0..7]) and mins (m[0..7]) of a Q4_K / Q5_K block, all at once:
// bytes 0-3 hold scales 0-3 and (top 2 bits) the high bits of scales 4-7, bytes 4-7 mins 0-3
// (+ high bits of mins 4-7), bytes 8-11 the low nibbles of scales 4-7 and mins 4-7.
// out[0..1]: the scales as bytes 0-7, out[2..3]: the mins.
inline void UnpackScalesMinsK4Words(const uint8_t* q, uint32_t* out) {
  uint32_t w[3];
  std::memcpy(w, q, 12);
  const uint32_t k6 = 0x3F3F3F3Fu, k4 = 0x0F0F0F0Fu, k2 = 0x03030303u;
  out[0] = w[0] & k6;
  out[1] = (w[2] & k4) | (((w[0] >> 6) & k2) << 4);
  out[2] = w[1] & k6;
  out[3] = ((w[2] >> 4) & k4) | (((w[1] >> 6) & k2) << 4);
}
inline void UnpackScalesMinsK4(const uint8_t* q, uint8_t* sc, uint8_t* m) {
  uint32_t v[4];
  UnpackScalesMinsK4Words(q, v);
  std::memcpy(sc, v, 8);
  std::memcpy(m, v + 2, 8);
}
}  // namespace qwenmux::kernels::internal
#endif

HWY_BEFORE_NAMESPACE();
#if HWY_TARGET == HWY_AVX3_DL
QM_VNNI_ATTRIBUTES
#endif
namespace qwenmux::kernels::internal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR
constexpr int kQK = quant::kQK_K;

#if QM_MATMUL_X86
// The 32 6-bit quants (0..63) of sub-block pair k (0..3) of half h of a Q6_K block.
HWY_INLINE I256 Q6Quants(const uint8_t* blk, int h, int k, I256 m4) {
  const I256 ql = Load256(blk + 64 * h + 32 * (k & 1));
  const I256 qh = Load256(blk + offsetof(quant::BlockQ6_K, qh) + 32 * h);
  const I256 nib = k < 2 ? _mm256_and_si256(ql, m4) : _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4);
  I256 hb;
  switch (k) {
    case 0: hb = _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x03)), 4); break;
    case 1: hb = _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x0C)), 2); break;
    case 2: hb = _mm256_and_si256(qh, _mm256_set1_epi8(0x30)); break;
    default:
      hb = _mm256_srli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(static_cast<char>(0xC0))), 2);
      break;
  }
  return _mm256_or_si256(nib, hb);
}

// UnpackScalesMinsK4Words in vector registers: the 12 packed bytes at q (16 are read) -> bytes
// 0-7 the 6-bit scales, bytes 8-15 the mins.
HWY_INLINE __m128i ScalesMinsK4(const uint8_t* q) {
  const __m128i v = Load128(q);  // 32-bit words w0 w1 w2 (and 4 bytes not used)
  const __m128i a = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
  const __m128i b = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7));
  // [w0 & 0x3F, w2 & 0x0F, w1 & 0x3F, (w2 >> 4) & 0x0F]
  const __m128i low = _mm_or_si128(
      _mm_and_si128(a, _mm_setr_epi32(0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0)),
      _mm_and_si128(_mm_srli_epi16(a, 4), _mm_setr_epi32(0, 0, 0, 0x0F0F0F0F)));
  // the top 2 bits of w0 (scales 4-7) and w1 (mins 4-7), as bits 4-5
  const __m128i top = _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(b, 6), _mm_setr_epi32(0, 0x03030303, 0, 0x03030303)), 4);
  return _mm_or_si128(low, top);
}

// The 64 quants (0..15, or 0..31 with Q5_K's fifth bit from qh) of sub-blocks 2c (lo) and 2c + 1
// (hi) of a Q4_K / Q5_K block: qs holds 32 bytes per pair, low nibbles first.
template <bool kFive>
HWY_INLINE void Q45Quants(const uint8_t* qs, I256 qh, int c, I256 m4, I256* lo, I256* hi) {
  const I256 q = Load256(qs + 32 * c);
  *lo = _mm256_and_si256(q, m4);
  *hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
  if constexpr (kFive) {
    const I256 b0 = _mm256_set1_epi8(static_cast<char>(1 << (2 * c)));
    const I256 b1 = _mm256_set1_epi8(static_cast<char>(2 << (2 * c)));
    const I256 k16 = _mm256_set1_epi8(16);
    *lo = _mm256_or_si256(*lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b0), b0), k16));
    *hi = _mm256_or_si256(*hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b1), b1), k16));
  }
}
#endif

// Q4_K and Q5_K share everything but the fifth bit.
template <bool kFive>
struct KernelQ45K {
  static constexpr bool kRows4 = false;
  static constexpr size_t kBytes = kFive ? sizeof(quant::BlockQ5_K) : sizeof(quant::BlockQ4_K);
  static constexpr size_t kQsOff = kFive ? offsetof(quant::BlockQ5_K, qs)
                                         : offsetof(quant::BlockQ4_K, qs);
  static constexpr size_t kQhOff = kFive ? offsetof(quant::BlockQ5_K, qh) : 0;

  template <int R, int T>
  static HWY_INLINE void Tile(const MatMulArgs& a, int64_t r, int64_t t0, float* out) {
    const int64_t nsb = a.w.cols / kQK;
    const uint8_t* w[R];
    QM_UNROLL for (int i = 0; i < R; ++i) w[i] = a.w.data + static_cast<size_t>(r + i) * a.w.row_bytes;
    const int8_t* xq[T];
    const float* xd[T];
    const int16_t* xs[T];
    QM_UNROLL for (int j = 0; j < T; ++j) {
      xq[j] = a.qx.Qs(t0 + j);
      xd[j] = a.qx.D(t0 + j);
      xs[j] = a.qx.Sums(t0 + j);
    }
#if QM_MATMUL_AVX512
    if constexpr (T >= 2) {
      constexpr int P = (T + 1) / 2;  // token pairs in the two halves of a zmm register
      __m512 acc[R][P];
      QM_UNROLL for (int i = 0; i < R; ++i)
        QM_UNROLL for (int p = 0; p < P; ++p) acc[i][p] = _mm512_setzero_ps();
      const I256 m4 = _mm256_set1_epi8(0x0F);
      for (int64_t sb = 0; sb < nsb; ++sb) {
        const uint8_t* blk[R];
        uint8_t sc[R][8];
        I512 mins16[R];
        QM_UNROLL for (int i = 0; i < R; ++i) {
          blk[i] = w[i] + sb * kBytes;
          PrefetchAhead<kBytes>(blk[i]);
          uint8_t m[8];
          UnpackScalesMinsK4(blk[i] + 4, sc[i], m);
          __m128i mv = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(m));
          mins16[i] = Bcast(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mv, mv)));
        }
        I512 isum[R][P];
        QM_UNROLL for (int i = 0; i < R; ++i)
          QM_UNROLL for (int p = 0; p < P; ++p) isum[i][p] = _mm512_setzero_si512();
        I256 qh[R];
        if constexpr (kFive) {
          QM_UNROLL for (int i = 0; i < R; ++i) qh[i] = Load256(blk[i] + kQhOff);
        }
        QM_UNROLL for (int c = 0; c < 4; ++c) {
          I512 lo[R], hi[R], s0[R], s1[R];
          QM_UNROLL for (int i = 0; i < R; ++i) {
            I256 l, h;
            Q45Quants<kFive>(blk[i] + kQsOff, kFive ? qh[i] : m4, c, m4, &l, &h);
            lo[i] = Bcast(l);
            hi[i] = Bcast(h);
            s0[i] = _mm512_set1_epi16(sc[i][2 * c]);
            s1[i] = _mm512_set1_epi16(sc[i][2 * c + 1]);
          }
          QM_UNROLL for (int p = 0; p < P; ++p) {
            const int j0 = 2 * p, j1 = std::min(2 * p + 1, T - 1);
            const int64_t o = sb * kQK + 64 * c;
            const I512 x0 = Pair(Load256(xq[j0] + o), Load256(xq[j1] + o));
            const I512 x1 = Pair(Load256(xq[j0] + o + 32), Load256(xq[j1] + o + 32));
            QM_UNROLL for (int i = 0; i < R; ++i) {
              isum[i][p] = DotU8Scaledx2(isum[i][p], lo[i], x0, s0[i]);
              isum[i][p] = DotU8Scaledx2(isum[i][p], hi[i], x1, s1[i]);
            }
          }
        }
        QM_UNROLL for (int p = 0; p < P; ++p) {
          const int j0 = 2 * p, j1 = std::min(2 * p + 1, T - 1);
          const I512 bs = Pair(Load256(xs[j0] + sb * 16), Load256(xs[j1] + sb * 16));
          const float dx0 = xd[j0][sb], dx1 = xd[j1][sb];
          QM_UNROLL for (int i = 0; i < R; ++i) {
            const float d = HalfToFloat(LoadU16(blk[i]));
            const float dmin = HalfToFloat(LoadU16(blk[i] + 2));
            const I512 msum = _mm512_madd_epi16(mins16[i], bs);
            acc[i][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[i][p]), PairF(d * dx0, d * dx1),
                                        acc[i][p]);
            acc[i][p] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), PairF(dmin * dx0, dmin * dx1),
                                         acc[i][p]);
          }
        }
      }
      StorePairs<R, T, P>(acc, out);
      return;
    }
#endif
#if QM_MATMUL_X86
    __m256 acc[R][T];
    QM_UNROLL for (int i = 0; i < R; ++i)
      QM_UNROLL for (int j = 0; j < T; ++j) acc[i][j] = _mm256_setzero_ps();
    const I256 m4 = _mm256_set1_epi8(0x0F);
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* blk[R];
      I256 sc16[R];    // the 8 scales as int16, in both 128-bit halves
      I256 mins16[R];  // m0 m0 m1 m1 ... (int16, one per 16 activations)
      QM_UNROLL for (int i = 0; i < R; ++i) {
        blk[i] = w[i] + sb * kBytes;
        PrefetchAhead<kBytes>(blk[i]);
        const __m128i smv = ScalesMinsK4(blk[i] + 4);
        sc16[i] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(smv));
        mins16[i] = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(smv, smv));
      }
      I256 isum[R][T];
      QM_UNROLL for (int i = 0; i < R; ++i)
        QM_UNROLL for (int j = 0; j < T; ++j) isum[i][j] = _mm256_setzero_si256();
      I256 qh[R];
      if constexpr (kFive) {
        QM_UNROLL for (int i = 0; i < R; ++i) qh[i] = Load256(blk[i] + kQhOff);
      }
      QM_UNROLL for (int c = 0; c < 4; ++c) {
        I256 lo[R], hi[R], s0[R], s1[R];
        QM_UNROLL for (int i = 0; i < R; ++i) {
          Q45Quants<kFive>(blk[i] + kQsOff, kFive ? qh[i] : m4, c, m4, &lo[i], &hi[i]);
          s0[i] = SplatI16(sc16[i], kSplatI16.c[2 * c]);
          s1[i] = SplatI16(sc16[i], kSplatI16.c[2 * c + 1]);
        }
        QM_UNROLL for (int j = 0; j < T; ++j) {
          const I256 x0 = Load256(xq[j] + sb * kQK + 64 * c);
          const I256 x1 = Load256(xq[j] + sb * kQK + 64 * c + 32);
          QM_UNROLL for (int i = 0; i < R; ++i) {
            isum[i][j] = DotU8Scaled(isum[i][j], lo[i], x0, s0[i]);
            isum[i][j] = DotU8Scaled(isum[i][j], hi[i], x1, s1[i]);
          }
        }
      }
      QM_UNROLL for (int j = 0; j < T; ++j) {
        const I256 bs = Load256(xs[j] + sb * 16);
        const float dx = xd[j][sb];
        QM_UNROLL for (int i = 0; i < R; ++i) {
          const __m128 dm = _mm_mul_ps(Half2ToFloatF16C(blk[i]), _mm_set1_ps(dx));  // d, dmin
          const I256 msum = _mm256_madd_epi16(mins16[i], bs);
          acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[i][j]), _mm256_broadcastss_ps(dm),
                                      acc[i][j]);
          acc[i][j] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum),
                                       _mm256_broadcastss_ps(_mm_movehdup_ps(dm)), acc[i][j]);
        }
      }
    }
    QM_UNROLL for (int i = 0; i < R; ++i)
      QM_UNROLL for (int j = 0; j < T; ++j) out[i * T + j] = HSum(acc[i][j]);
#else
    VF acc[R][T];
    float macc[R][T];
    QM_UNROLL for (int i = 0; i < R; ++i)
      QM_UNROLL for (int j = 0; j < T; ++j) {
        acc[i][j] = hn::Zero(DF());
        macc[i][j] = 0.0f;
      }
    const auto m4 = hn::Set(DU8(), 0x0F);
    const auto k16 = hn::Set(DU8(), 16);
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* blk[R];
      uint8_t sc[R][8], mn[R][8];
      QM_UNROLL for (int i = 0; i < R; ++i) {
        blk[i] = w[i] + sb * kBytes;
        PrefetchAhead<kBytes>(blk[i]);
        UnpackScalesMinsK4(blk[i] + 4, sc[i], mn[i]);
      }
      AccI isum[R][T];
      QM_UNROLL for (int i = 0; i < R; ++i)
        QM_UNROLL for (int j = 0; j < T; ++j) isum[i][j] = ZeroAcc();
      QM_UNROLL for (int c = 0; c < 4; ++c) {
        V16 wv[R][2][4];  // [row][sub-block 2c / 2c+1][8 lanes]
        QM_UNROLL for (int i = 0; i < R; ++i) {
          const uint8_t* q = blk[i] + kQsOff + 32 * c;
          QM_UNROLL for (int h = 0; h < 2; ++h) {  // elements 16h .. 16h+15 of both sub-blocks
            const auto v = hn::LoadU(DU8(), q + 16 * h);
            auto lo = hn::And(v, m4);
            auto hi = hn::ShiftRight<4>(v);
            if constexpr (kFive) {
              const auto qh = hn::LoadU(DU8(), blk[i] + kQhOff + 16 * h);
              const auto b0 = hn::Set(DU8(), static_cast<uint8_t>(1 << (2 * c)));
              const auto b1 = hn::Set(DU8(), static_cast<uint8_t>(2 << (2 * c)));
              lo = hn::Or(lo, hn::IfThenElseZero(hn::Eq(hn::And(qh, b0), b0), k16));
              hi = hn::Or(hi, hn::IfThenElseZero(hn::Eq(hn::And(qh, b1), b1), k16));
            }
            const V16 s0 = hn::Set(D16(), sc[i][2 * c]);
            const V16 s1 = hn::Set(D16(), sc[i][2 * c + 1]);
            const V8 l8 = hn::BitCast(D8(), lo), h8 = hn::BitCast(D8(), hi);
            wv[i][0][2 * h] = hn::Mul(WidenLo(l8), s0);
            wv[i][0][2 * h + 1] = hn::Mul(WidenHi(l8), s0);
            wv[i][1][2 * h] = hn::Mul(WidenLo(h8), s1);
            wv[i][1][2 * h + 1] = hn::Mul(WidenHi(h8), s1);
          }
        }
        QM_UNROLL for (int j = 0; j < T; ++j) {
          const X32 x0 = LoadX32(xq[j] + sb * kQK + 64 * c);
          const X32 x1 = LoadX32(xq[j] + sb * kQK + 64 * c + 32);
          QM_UNROLL for (int i = 0; i < R; ++i) {
            QM_UNROLL for (int k = 0; k < 4; ++k) Mac(isum[i][j], wv[i][0][k], x0.v[k]);
            QM_UNROLL for (int k = 0; k < 4; ++k) Mac(isum[i][j], wv[i][1][k], x1.v[k]);
          }
        }
      }
      QM_UNROLL for (int j = 0; j < T; ++j) {
        const int16_t* bs = xs[j] + sb * 16;
        const float dx = xd[j][sb];
        QM_UNROLL for (int i = 0; i < R; ++i) {
          int32_t msum = 0;
          QM_UNROLL for (int k = 0; k < 8; ++k) msum += mn[i][k] * (bs[2 * k] + bs[2 * k + 1]);
          const float d = HalfToFloat(LoadU16(blk[i])) * dx;
          const float dmin = HalfToFloat(LoadU16(blk[i] + 2)) * dx;
          acc[i][j] = hn::MulAdd(hn::ConvertTo(DF(), Total(isum[i][j])), hn::Set(DF(), d),
                                 acc[i][j]);
          macc[i][j] -= dmin * static_cast<float>(msum);
        }
      }
    }
    QM_UNROLL for (int i = 0; i < R; ++i)
      QM_UNROLL for (int j = 0; j < T; ++j) out[i * T + j] = HSumF(acc[i][j]) + macc[i][j];
#endif
  }
};

struct KernelQ6K {
  static constexpr bool kRows4 = false;
  static constexpr size_t kBytes = sizeof(quant::BlockQ6_K);
  static constexpr size_t kQhOff = offsetof(quant::BlockQ6_K, qh);
  static constexpr size_t kScOff = offsetof(quant::BlockQ6_K, scales);
  static constexpr size_t kDOff = offsetof(quant::BlockQ6_K, d);

  template <int R, int T>
  static HWY_INLINE void Tile(const MatMulArgs& a, int64_t r, int64_t t0, float* out) {
    const int64_t nsb = a.w.cols / kQK;
    const uint8_t* w[R];
    QM_UNROLL for (int i = 0; i < R; ++i) w[i] = a.w.data + static_cast<size_t>(r + i) * a.w.row_bytes;
    const int8_t* xq[T];
    const float* xd[T];
    [[maybe_unused]] const int16_t* xs[T];  // only the x86 paths read the block sums
    QM_UNROLL for (int j = 0; j < T; ++j) {
      xq[j] = a.qx.Qs(t0 + j);
      xd[j] = a.qx.D(t0 + j);
      xs[j] = a.qx.Sums(t0 + j);
    }
#if QM_MATMUL_AVX512
    if constexpr (T >= 2) {
      constexpr int P = (T + 1) / 2;
      __m512 acc[R][P];
      QM_UNROLL for (int i = 0; i < R; ++i)
        QM_UNROLL for (int p = 0; p < P; ++p) acc[i][p] = _mm512_setzero_ps();
      const I256 m4 = _mm256_set1_epi8(0x0F);
      for (int64_t sb = 0; sb < nsb; ++sb) {
        const uint8_t* blk[R];
        I512 sc16[R];
        QM_UNROLL for (int i = 0; i < R; ++i) {
          blk[i] = w[i] + sb * kBytes;
          PrefetchAhead<kBytes>(blk[i]);
          sc16[i] = Bcast(_mm256_cvtepi8_epi16(Load128(blk[i] + kScOff)));
        }
        I512 isum[R][P];
        QM_UNROLL for (int i = 0; i < R; ++i)
          QM_UNROLL for (int p = 0; p < P; ++p) isum[i][p] = _mm512_setzero_si512();
        QM_UNROLL for (int h = 0; h < 2; ++h) {
          QM_UNROLL for (int k = 0; k < 4; ++k) {
            I512 q[R], s[R];
            QM_UNROLL for (int i = 0; i < R; ++i) {
              q[i] = Bcast(Q6Quants(blk[i], h, k, m4));
              const int8_t* scp = reinterpret_cast<const int8_t*>(blk[i] + kScOff) + 8 * h + 2 * k;
              s[i] = Bcast(_mm256_set_m128i(_mm_set1_epi16(scp[1]), _mm_set1_epi16(scp[0])));
            }
            QM_UNROLL for (int p = 0; p < P; ++p) {
              const int j0 = 2 * p, j1 = std::min(2 * p + 1, T - 1);
              const int64_t o = sb * kQK + 128 * h + 32 * k;
              const I512 x = Pair(Load256(xq[j0] + o), Load256(xq[j1] + o));
              QM_UNROLL for (int i = 0; i < R; ++i) {
                isum[i][p] = DotU8Scaledx2(isum[i][p], q[i], x, s[i]);
              }
            }
          }
        }
        QM_UNROLL for (int p = 0; p < P; ++p) {
          const int j0 = 2 * p, j1 = std::min(2 * p + 1, T - 1);
          const I512 bs = Pair(Load256(xs[j0] + sb * 16), Load256(xs[j1] + sb * 16));
          const float dx0 = xd[j0][sb], dx1 = xd[j1][sb];
          QM_UNROLL for (int i = 0; i < R; ++i) {
            const I512 off = _mm512_madd_epi16(sc16[i], bs);
            const I512 tot = _mm512_sub_epi32(isum[i][p], _mm512_slli_epi32(off, 5));
            const float d = HalfToFloat(LoadU16(blk[i] + kDOff));
            acc[i][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tot), PairF(d * dx0, d * dx1),
                                        acc[i][p]);
          }
        }
      }
      StorePairs<R, T, P>(acc, out);
      return;
    }
#endif
#if QM_MATMUL_X86
    __m256 acc[R][T];
    QM_UNROLL for (int i = 0; i < R; ++i)
      QM_UNROLL for (int j = 0; j < T; ++j) acc[i][j] = _mm256_setzero_ps();
    const I256 m4 = _mm256_set1_epi8(0x0F);
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* blk[R];
      I256 sc16[R];     // the 16 scales as int16
      I256 sc_h[R][2];  // scales 8h .. 8h + 7 in both halves
      QM_UNROLL for (int i = 0; i < R; ++i) {
        blk[i] = w[i] + sb * kBytes;
        PrefetchAhead<kBytes>(blk[i]);
        sc16[i] = _mm256_cvtepi8_epi16(Load128(blk[i] + kScOff));
        sc_h[i][0] = _mm256_permute2x128_si256(sc16[i], sc16[i], 0x00);
        sc_h[i][1] = _mm256_permute2x128_si256(sc16[i], sc16[i], 0x11);
      }
      I256 isum[R][T];
      QM_UNROLL for (int i = 0; i < R; ++i)
        QM_UNROLL for (int j = 0; j < T; ++j) isum[i][j] = _mm256_setzero_si256();
      QM_UNROLL for (int h = 0; h < 2; ++h) {
        QM_UNROLL for (int k = 0; k < 4; ++k) {
          I256 q[R], s[R];
          QM_UNROLL for (int i = 0; i < R; ++i) {
            q[i] = Q6Quants(blk[i], h, k, m4);
            s[i] = SplatI16(sc_h[i][h], kSplatI16.c[8 + k]);  // scales 8h + 2k, 8h + 2k + 1
          }
          QM_UNROLL for (int j = 0; j < T; ++j) {
            const I256 x = Load256(xq[j] + sb * kQK + 128 * h + 32 * k);
            QM_UNROLL for (int i = 0; i < R; ++i) isum[i][j] = DotU8Scaled(isum[i][j], q[i], x, s[i]);
          }
        }
      }
      QM_UNROLL for (int j = 0; j < T; ++j) {
        const I256 bs = Load256(xs[j] + sb * 16);
        const float dx = xd[j][sb];
        QM_UNROLL for (int i = 0; i < R; ++i) {
          // sum (q - 32) * sc * x = sum q * sc * x - 32 * sum_g sc_g * bsum_g
          const I256 off = _mm256_madd_epi16(sc16[i], bs);
          const I256 tot = _mm256_sub_epi32(isum[i][j], _mm256_slli_epi32(off, 5));
          const float d = HalfToFloatF16C(blk[i] + kDOff) * dx;
          acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(tot), _mm256_set1_ps(d), acc[i][j]);
        }
      }
    }
    QM_UNROLL for (int i = 0; i < R; ++i)
      QM_UNROLL for (int j = 0; j < T; ++j) out[i * T + j] = HSum(acc[i][j]);
#else
    VF acc[R][T];
    QM_UNROLL for (int i = 0; i < R; ++i)
      QM_UNROLL for (int j = 0; j < T; ++j) acc[i][j] = hn::Zero(DF());
    const auto m4 = hn::Set(DU8(), 0x0F);
    const V16 k32 = hn::Set(D16(), 32);
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* blk[R];
      QM_UNROLL for (int i = 0; i < R; ++i) {
        blk[i] = w[i] + sb * kBytes;
        PrefetchAhead<kBytes>(blk[i]);
      }
      AccI isum[R][T];
      QM_UNROLL for (int i = 0; i < R; ++i)
        QM_UNROLL for (int j = 0; j < T; ++j) isum[i][j] = ZeroAcc();
      QM_UNROLL for (int h = 0; h < 2; ++h) {
        QM_UNROLL for (int k = 0; k < 4; ++k) {
          V16 wv[R][4];
          QM_UNROLL for (int i = 0; i < R; ++i) {
            const int8_t* scp = reinterpret_cast<const int8_t*>(blk[i] + kScOff) + 8 * h + 2 * k;
            QM_UNROLL for (int half = 0; half < 2; ++half) {
              const auto ql = hn::LoadU(DU8(), blk[i] + 64 * h + 32 * (k & 1) + 16 * half);
              const auto qh = hn::LoadU(DU8(), blk[i] + kQhOff + 32 * h + 16 * half);
              const auto nib = k < 2 ? hn::And(ql, m4) : hn::ShiftRight<4>(ql);
              hn::Vec<DU8> hb;
              switch (k) {
                case 0: hb = hn::ShiftLeft<4>(hn::And(qh, hn::Set(DU8(), 0x03))); break;
                case 1: hb = hn::ShiftLeft<2>(hn::And(qh, hn::Set(DU8(), 0x0C))); break;
                case 2: hb = hn::And(qh, hn::Set(DU8(), 0x30)); break;
                default: hb = hn::ShiftRight<2>(hn::And(qh, hn::Set(DU8(), 0xC0))); break;
              }
              const V8 q8 = hn::BitCast(D8(), hn::Or(nib, hb));
              const V16 s = hn::Set(D16(), scp[half]);
              wv[i][2 * half] = hn::Mul(hn::Sub(WidenLo(q8), k32), s);
              wv[i][2 * half + 1] = hn::Mul(hn::Sub(WidenHi(q8), k32), s);
            }
          }
          QM_UNROLL for (int j = 0; j < T; ++j) {
            const X32 x = LoadX32(xq[j] + sb * kQK + 128 * h + 32 * k);
            QM_UNROLL for (int i = 0; i < R; ++i)
              QM_UNROLL for (int e = 0; e < 4; ++e) Mac(isum[i][j], wv[i][e], x.v[e]);
          }
        }
      }
      QM_UNROLL for (int j = 0; j < T; ++j) {
        const float dx = xd[j][sb];
        QM_UNROLL for (int i = 0; i < R; ++i) {
          const float d = HalfToFloat(LoadU16(blk[i] + kDOff)) * dx;
          acc[i][j] = hn::MulAdd(hn::ConvertTo(DF(), Total(isum[i][j])), hn::Set(DF(), d),
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

void RowsQ4_K(const MatMulArgs& a, int64_t r0, int64_t r1) {
  
#if HWY_TARGET == HWY_SCALAR
  RowsScalar(a, r0, r1);
#else
  RunRows<KernelQ45K<false>>(a, r0, r1);
#endif

}
void RowsQ5_K(const MatMulArgs& a, int64_t r0, int64_t r1) {
  
#if HWY_TARGET == HWY_SCALAR
  RowsScalar(a, r0, r1);
#else
  RunRows<KernelQ45K<true>>(a, r0, r1);
#endif

}
void RowsQ6_K(const MatMulArgs& a, int64_t r0, int64_t r1) {
#if HWY_TARGET == HWY_SCALAR
  RowsScalar(a, r0, r1);
#else
  RunRows<KernelQ6K>(a, r0, r1);
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace qwenmux::kernels::internal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qwenmux::kernels::internal {
HWY_EXPORT(RowsQ4_K);
HWY_EXPORT(RowsQ5_K);
HWY_EXPORT(RowsQ6_K);
void MatMulRowsQ4_K(const MatMulArgs& a, int64_t r0, int64_t r1) {
  HWY_DYNAMIC_DISPATCH(RowsQ4_K)(a, r0, r1);
}
void MatMulRowsQ5_K(const MatMulArgs& a, int64_t r0, int64_t r1) {
  HWY_DYNAMIC_DISPATCH(RowsQ5_K)(a, r0, r1);
}
void MatMulRowsQ6_K(const MatMulArgs& a, int64_t r0, int64_t r1) {
  HWY_DYNAMIC_DISPATCH(RowsQ6_K)(a, r0, r1);
}
}  // namespace qwenmux::kernels::internal
#endif
