// MatMul kernels for the float weight types F32, F16 and BF16: f32 FMA over full vectors, with
// the weights widened to f32 on load. x is used as is (no activation quantization).
#include <cstdint>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/matmul_float.cc"
#include "kernels/cpu/matmul_targets.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "base/fp16.h"
#include "kernels/cpu/matmul-inl.h"

HWY_BEFORE_NAMESPACE();
#if HWY_TARGET == HWY_AVX3_DL
QM_VNNI_ATTRIBUTES
#endif
namespace qwenmux::kernels::internal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <typename TW>
struct KernelFloat {
  static constexpr bool kRows4 = true;
  using DFv = hn::ScalableTag<float>;

  static HWY_INLINE hn::Vec<DFv> LoadW(const TW* p) {
    if constexpr (std::is_same_v<TW, float>) {
      return hn::LoadU(DFv(), p);
    } else {
      return hn::PromoteTo(DFv(), hn::LoadU(hn::Rebind<TW, DFv>(), p));
    }
  }
  static HWY_INLINE float ScalarW(const TW* p) {
    if constexpr (std::is_same_v<TW, float>) {
      return *p;
    } else {
      uint16_t bits;
      std::memcpy(&bits, p, 2);
      if constexpr (std::is_same_v<TW, hwy::float16_t>) return Fp16ToFp32(bits);
      return Bf16ToFp32(bits);
    }
  }

  template <int R, int T>
  static HWY_INLINE void Tile(const MatMulArgs& a, int64_t r, int64_t t0, float* out) {
    const DFv df;
    const int64_t n = static_cast<int64_t>(hn::Lanes(df));
    const int64_t cols = a.w.cols;
    const TW* w[R];
    QM_UNROLL for (int i = 0; i < R; ++i) {
      w[i] = reinterpret_cast<const TW*>(a.w.data + static_cast<size_t>(r + i) * a.w.row_bytes);
    }
    const float* x[T];
    QM_UNROLL for (int j = 0; j < T; ++j) x[j] = a.x + (t0 + j) * a.ldx;
    hn::Vec<DFv> acc[R][T];
    QM_UNROLL for (int i = 0; i < R; ++i)
      QM_UNROLL for (int j = 0; j < T; ++j) acc[i][j] = hn::Zero(df);
    int64_t k = 0;
    for (; k + n <= cols; k += n) {
      hn::Vec<DFv> wv[R];
      QM_UNROLL for (int i = 0; i < R; ++i) wv[i] = LoadW(w[i] + k);
      QM_UNROLL for (int j = 0; j < T; ++j) {
        const auto xv = hn::LoadU(df, x[j] + k);
        QM_UNROLL for (int i = 0; i < R; ++i) acc[i][j] = hn::MulAdd(wv[i], xv, acc[i][j]);
      }
    }
    QM_UNROLL for (int i = 0; i < R; ++i) {
      QM_UNROLL for (int j = 0; j < T; ++j) {
        float s = hn::GetLane(hn::SumOfLanes(df, acc[i][j]));
        for (int64_t kk = k; kk < cols; ++kk) s += ScalarW(w[i] + kk) * x[j][kk];
        out[i * T + j] = s;
      }
    }
  }
};

void RowsF32(const MatMulArgs& a, int64_t r0, int64_t r1) {
  RunRows<KernelFloat<float>>(a, r0, r1);
}
void RowsF16(const MatMulArgs& a, int64_t r0, int64_t r1) {
  RunRows<KernelFloat<hwy::float16_t>>(a, r0, r1);
}
void RowsBF16(const MatMulArgs& a, int64_t r0, int64_t r1) {
  RunRows<KernelFloat<hwy::bfloat16_t>>(a, r0, r1);
}

}  // namespace HWY_NAMESPACE
}  // namespace qwenmux::kernels::internal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qwenmux::kernels::internal {
HWY_EXPORT(RowsF32);
HWY_EXPORT(RowsF16);
HWY_EXPORT(RowsBF16);
void MatMulRowsF32(const MatMulArgs& a, int64_t r0, int64_t r1) {
  HWY_DYNAMIC_DISPATCH(RowsF32)(a, r0, r1);
}
void MatMulRowsF16(const MatMulArgs& a, int64_t r0, int64_t r1) {
  HWY_DYNAMIC_DISPATCH(RowsF16)(a, r0, r1);
}
void MatMulRowsBF16(const MatMulArgs& a, int64_t r0, int64_t r1) {
  HWY_DYNAMIC_DISPATCH(RowsBF16)(a, r0, r1);
}
}  // namespace qwenmux::kernels::internal
#endif
