// Every CUDA kernel against the CPU reference kernels on odd shapes and batch sizes. Skips
// without a CUDA device.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <tuple>

#include "cuda/cuda_test_util.h"
#include "runtime/cuda/cuda_blas.h"
#include "base/fp16.h"
#include "kernels/matmul.h"
#include "quant/quant.h"

namespace qwenmux::runtime::cuda {
namespace {

struct TypeCase {
  gguf::TensorType type;
  int64_t cols;  // a multiple of the type's unit, not of larger powers of two where possible
};

std::string Name(gguf::TensorType t) { return gguf::TensorTypeName(t); }

class CudaMatMul : public ::testing::TestWithParam<TypeCase> {};

std::vector<float> RandomFloats(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// A paged KV cache layer (KvLayer) holding the logical cache [n_seq][n_kv][n_ctx][128] of kc and
// vc, each sequence's blocks at scattered physical places (blocks numbered backwards and
// interleaved across sequences), so a kernel that ignored the block table would read the wrong
// rows. Unused blocks of the pool are NaN.
struct PagedKv {
  DevBuf<uint16_t> k, v;
  DevBuf<int32_t> table;
  KvLayer layer;
  static size_t PoolBlocks(int32_t n_seq, int32_t n_ctx) {
    return static_cast<size_t>(n_seq) * ((n_ctx + kKvBlock - 1) / kKvBlock) + 1;  // one spare
  }
  PagedKv(const std::vector<uint16_t>& kc, const std::vector<uint16_t>& vc, int32_t n_seq, int32_t n_kv, int32_t n_ctx)
      : k(PoolBlocks(n_seq, n_ctx) * n_kv * kKvBlock * 128),
        v(PoolBlocks(n_seq, n_ctx) * n_kv * kKvBlock * 128),
        table(static_cast<size_t>(n_seq) * ((n_ctx + kKvBlock - 1) / kKvBlock)) {
    const int32_t mb = (n_ctx + kKvBlock - 1) / kKvBlock;
    const size_t pool = PoolBlocks(n_seq, n_ctx);
    std::vector<int32_t> tbl(static_cast<size_t>(n_seq) * mb);
    for (int32_t b = 0; b < mb; ++b)
      for (int32_t sq = 0; sq < n_seq; ++sq) tbl[static_cast<size_t>(sq) * mb + b] = static_cast<int32_t>(pool) - 1 - (b * n_seq + sq);
    std::vector<uint16_t> hk(pool * n_kv * kKvBlock * 128, 0x7E00u), hv(hk.size(), 0x7E00u);
    for (int32_t sq = 0; sq < n_seq; ++sq)
      for (int32_t h = 0; h < n_kv; ++h)
        for (int32_t p = 0; p < n_ctx; ++p) {
          const size_t src = ((static_cast<size_t>(sq) * n_kv + h) * n_ctx + p) * 128;
          const size_t blk = static_cast<size_t>(tbl[static_cast<size_t>(sq) * mb + p / kKvBlock]);
          const size_t dst = ((blk * n_kv + h) * kKvBlock + p % kKvBlock) * 128;
          std::copy(kc.begin() + src, kc.begin() + src + 128, hk.begin() + dst);
          std::copy(vc.begin() + src, vc.begin() + src + 128, hv.begin() + dst);
        }
    EXPECT_EQ(cudaMemcpy(k.p, hk.data(), hk.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(v.p, hv.data(), hv.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(table.p, tbl.data(), tbl.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    layer = KvLayer{k.p, v.p, table.p, mb, n_kv};
  }
};

// Rows of 37 (odd: the last block of 4 warps is partial), batch sizes across the matrix-vector
// chunks of 8 and the GEMM's 64-token tiles.
TEST_P(CudaMatMul, MatchesReference) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  const TypeCase c = GetParam();
  const int64_t rows = 37, cols = c.cols;
  const std::vector<float> wf = RandomFloats(rows * cols, 1, 1.0f / std::sqrt(static_cast<float>(cols)));
  const size_t rb = quant::RowSize(c.type, cols);
  ASSERT_GT(rb, 0u);
  std::vector<uint8_t> raw(rows * rb);
  for (int64_t r = 0; r < rows; ++r) ASSERT_TRUE(quant::QuantizeRow(c.type, wf.data() + r * cols, raw.data() + r * rb, cols).ok());
  kernels::WeightView view{c.type, raw.data(), rows, cols, rb};
  DevUpload w(static_cast<DType>(c.type), rows, cols, raw);

  // Embedding rows: the dequantized rows themselves.
  {
    std::vector<int32_t> ids = {5, 0, 36, 5};
    DevBuf<int32_t> d_ids(ids);
    DevBuf<float> out(ids.size() * cols);
    ASSERT_EQ(LaunchEmbedRows(w.m, d_ids.p, static_cast<int64_t>(ids.size()), out.p, nullptr), cudaSuccess);
    const auto got = out.Read(ids.size() * cols);
    std::vector<float> ref(cols);
    for (size_t i = 0; i < ids.size(); ++i) {
      kernels::DequantizeRowTo(view, ids[i], ref.data());
      for (int64_t j = 0; j < cols; ++j) {
        ASSERT_NEAR(got[i * cols + j], ref[j], 1e-6f * (1.0f + std::fabs(ref[j]))) << Name(c.type) << " row " << ids[i] << " col " << j;
      }
    }
  }

  for (int64_t n : {1, 3, 8, 13, 70}) {
    const std::vector<float> x = RandomFloats(n * cols, 100 + static_cast<uint32_t>(n), 1.0f);
    std::vector<float> ref(n * rows), absdot(n * rows, 0.0f);
    kernels::MatMulReference(view, x.data(), cols, ref.data(), rows, n);
    std::vector<float> deq(cols);
    for (int64_t r = 0; r < rows; ++r) {
      kernels::DequantizeRowTo(view, r, deq.data());
      for (int64_t t = 0; t < n; ++t)
        for (int64_t k = 0; k < cols; ++k) absdot[t * rows + r] += std::fabs(deq[k] * x[t * cols + k]);
    }
    DevBuf<float> dx(x);
    // Matrix-vector kernel (any n, chunks of 8), accumulating onto ones, in both layouts (kLane8
    // falls back to kPerUnit where cols % 256 != 0).
    for (MatVecLayout layout : {MatVecLayout::kPerUnit, MatVecLayout::kLane8}) {
      DevBuf<float> dy(std::vector<float>(n * rows, 1.0f));
      ASSERT_EQ(LaunchMatVec(w.m, dx.p, cols, dy.p, rows, n, /*accumulate=*/true, nullptr, layout), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const auto got = dy.Read(n * rows);
      double worst = 0;
      for (int64_t i = 0; i < n * rows; ++i) {
        const double err = std::fabs(got[i] - 1.0f - ref[i]) / (absdot[i] + 1e-6);
        worst = std::max(worst, err);
      }
      EXPECT_LT(worst, 2e-5) << Name(c.type) << " matvec n=" << n << " layout "
                             << (layout == MatVecLayout::kLane8 ? "lane8" : "per-unit");
    }

    // Integer kernels (decode-sized batches): x quantized on the device, checked against x;
    // the product against the dequantized weights times those 8-bit activations in double.
    if (n <= 32 && MatVecQ8Supports(static_cast<DType>(c.type))) {
      const int64_t ld = (cols + 31) / 32 * 32 + 32;  // a wider row stride than cols
      DevBuf<int8_t> q(n * ld);
      DevBuf<float> ds(n * (ld / 32) * 2);
      QActs xq{q.p, ds.p, ld};
      ASSERT_EQ(LaunchQuantizeActs(dx.p, cols, n, cols, xq, nullptr), cudaSuccess);
      DevBuf<float> dy(std::vector<float>(n * rows, 1.0f));
      ASSERT_EQ(LaunchMatVecQ8(w.m, xq, dy.p, rows, n, /*accumulate=*/true, nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const auto hq = q.Read(n * ld);
      const auto hds = ds.Read(n * (ld / 32) * 2);
      std::vector<double> xd(n * cols);
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t b = 0; b < cols / 32; ++b) {
          const float d = hds[2 * (t * (ld / 32) + b)], s = hds[2 * (t * (ld / 32) + b) + 1];
          int64_t sum = 0;
          for (int64_t j = 0; j < 32; ++j) {
            const int64_t k = b * 32 + j;
            const int qv = hq[t * ld + k];
            sum += qv;
            xd[t * cols + k] = static_cast<double>(d) * qv;
            ASSERT_LE(std::fabs(xd[t * cols + k] - x[t * cols + k]), 0.5001 * d + 1e-7) << "quantize t=" << t << " k=" << k;
          }
          ASSERT_NEAR(s, d * static_cast<float>(sum), 1e-5f * (1.0f + std::fabs(s))) << "block sum t=" << t << " b=" << b;
        }
      }
      const auto got = dy.Read(n * rows);
      double worst = 0;
      for (int64_t r = 0; r < rows; ++r) {
        kernels::DequantizeRowTo(view, r, deq.data());
        for (int64_t t = 0; t < n; ++t) {
          double want = 0;
          for (int64_t k = 0; k < cols; ++k) want += static_cast<double>(deq[k]) * xd[t * cols + k];
          worst = std::max(worst, std::fabs(got[t * rows + r] - 1.0 - want) / (absdot[t * rows + r] + 1e-6));
        }
      }
      EXPECT_LT(worst, 2e-5) << Name(c.type) << " matvec_q8 n=" << n;
      // One launch for three matrices (here the same one, rows 37, 37 and 36): each output
      // bitwise the single launch's.
      {
        DevBuf<float> y0(std::vector<float>(n * rows, 1.0f)), y1(std::vector<float>(n * (rows + 5), 1.0f)),
            y2(std::vector<float>(n * rows, 1.0f));
        const DevMatrix short_w = w.m.Slice(0, rows - 1);
        const MatVecOut outs[] = {{&w.m, y0.p, rows}, {&w.m, y1.p, rows + 5}, {&short_w, y2.p, rows}};
        ASSERT_EQ(LaunchMatVecQ8Group(outs, 3, xq, n, /*accumulate=*/true, nullptr), cudaSuccess);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const auto g0 = y0.Read(n * rows), g1 = y1.Read(n * (rows + 5)), g2 = y2.Read(n * rows);
        for (int64_t t = 0; t < n; ++t) {
          for (int64_t r = 0; r < rows; ++r) {
            ASSERT_EQ(g0[t * rows + r], got[t * rows + r]) << Name(c.type) << " group 0 t=" << t << " r=" << r;
            ASSERT_EQ(g1[t * (rows + 5) + r], got[t * rows + r]) << Name(c.type) << " group 1";
            if (r < rows - 1) {
              ASSERT_EQ(g2[t * rows + r], got[t * rows + r]) << Name(c.type) << " group 2";
            }
          }
          ASSERT_EQ(g2[t * rows + rows - 1], 1.0f) << "a row past the sliced matrix was written";
        }
      }
      // Against the f32 product: the 8-bit activations' own error (under 1% of sum |w x|).
      double vs_f32 = 0;
      for (int64_t i = 0; i < n * rows; ++i) vs_f32 = std::max(vs_f32, std::fabs(got[i] - 1.0f - ref[i]) / (absdot[i] + 1e-6));
      EXPECT_LT(vs_f32, 1e-2) << Name(c.type) << " matvec_q8 vs f32 n=" << n;
    }

    // Dequantize to f16/bf16 + tensor-core GEMM.
    for (bool bf16 : {false, true}) {
      DevBuf<uint16_t> xh(n * cols), wh(rows * cols);
      DevBuf<float> gy(n * rows);
      ASSERT_EQ(LaunchToHalf(dx.p, xh.p, n * cols, bf16, nullptr), cudaSuccess);
      ASSERT_EQ(LaunchDequantize(w.m, 0, rows, wh.p, bf16, nullptr), cudaSuccess);
      ASSERT_EQ(LaunchGemm(xh.p, cols, wh.p, cols, gy.p, rows, n, rows, cols, false, bf16, nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const auto g = gy.Read(n * rows);
      double gw = 0;
      for (int64_t i = 0; i < n * rows; ++i) gw = std::max(gw, std::fabs(g[i] - ref[i]) / (absdot[i] + 1e-6));
      EXPECT_LT(gw, bf16 ? 1.2e-2 : 1.5e-3) << Name(c.type) << " gemm n=" << n << (bf16 ? " bf16" : " f16");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Types, CudaMatMul,
    ::testing::Values(TypeCase{gguf::TensorType::kF32, 96}, TypeCase{gguf::TensorType::kF16, 160},
                      TypeCase{gguf::TensorType::kBF16, 96}, TypeCase{gguf::TensorType::kQ8_0, 96},
                      TypeCase{gguf::TensorType::kQ8_0, 4128}, TypeCase{gguf::TensorType::kQ4_0, 160},
                      TypeCase{gguf::TensorType::kQ4_K, 768}, TypeCase{gguf::TensorType::kQ5_K, 768},
                      TypeCase{gguf::TensorType::kQ6_K, 768}, TypeCase{gguf::TensorType::kQ6_K, 2816},
                      // cols % 256 == 0 for the simple types too (the kLane8 layout)
                      TypeCase{gguf::TensorType::kF32, 512}, TypeCase{gguf::TensorType::kF16, 256},
                      TypeCase{gguf::TensorType::kBF16, 768}, TypeCase{gguf::TensorType::kQ8_0, 1024},
                      TypeCase{gguf::TensorType::kQ4_0, 512}, TypeCase{gguf::TensorType::kQ5_K, 2304}),
    [](const ::testing::TestParamInfo<TypeCase>& i) {
      return Name(i.param.type) + "_" + std::to_string(i.param.cols);
    });

// GEMM edges: M and N not multiples of the 64 x 128 tile, K several tiles; the own kernel and
// cuBLAS (when the library loads) on the same operands.
TEST(CudaGemm, RaggedTiles) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  const int64_t M = 67, N = 131, K = 96;
  const auto a = RandomFloats(M * K, 7, 1.0f), b = RandomFloats(N * K, 8, 1.0f);
  DevBuf<float> da(a), db(b);
  DevBuf<uint16_t> ah(M * K), bh(N * K);
  ASSERT_EQ(LaunchToHalf(da.p, ah.p, M * K, false, nullptr), cudaSuccess);
  ASSERT_EQ(LaunchToHalf(db.p, bh.p, N * K, false, nullptr), cudaSuccess);
  auto check = [&](const std::vector<float>& got, const char* what) {
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N + 3; ++n) {
        double ref = 2.0, mag = 0;
        if (n < N) {
          for (int64_t k = 0; k < K; ++k) ref += a[m * K + k] * b[n * K + k], mag += std::fabs(a[m * K + k] * b[n * K + k]);
        }
        ASSERT_NEAR(got[m * (N + 3) + n], ref, 2e-3 * mag + 1e-5) << what << " " << m << "," << n;
      }
    }
  };
  DevBuf<float> c(std::vector<float>(M * (N + 3), 2.0f));
  ASSERT_EQ(LaunchGemm(ah.p, K, bh.p, K, c.p, N + 3, M, N, K, /*accumulate=*/true, false, nullptr), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  check(c.Read(M * (N + 3)), "own");
  std::string why;
  if (auto blas = Blas::Create(nullptr, &why)) {
    DevBuf<float> c2(std::vector<float>(M * (N + 3), 2.0f));
    ASSERT_TRUE(blas->Gemm(ah.p, K, bh.p, K, c2.p, N + 3, M, N, K, /*accumulate=*/true, false));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    check(c2.Read(M * (N + 3)), "cublas");
  } else {
    std::printf("cuBLAS not checked: %s\n", why.c_str());
  }
}

TEST(CudaRmsNorm, MatchesFormulaWithGatheredRows) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  const int64_t dim = 1000, n = 5;
  const auto x = RandomFloats(n * dim, 3, 2.0f), w = RandomFloats(dim, 4, 1.0f);
  const std::vector<int32_t> rows = {4, 1};
  DevBuf<float> dx(x), dw(w), dy(rows.size() * dim);
  DevBuf<int32_t> dr(rows);
  ASSERT_EQ(LaunchRmsNorm(dx.p, dw.p, dy.p, static_cast<int64_t>(rows.size()), dim, 1e-6f, dr.p, nullptr), cudaSuccess);
  const auto got = dy.Read(rows.size() * dim);
  for (size_t i = 0; i < rows.size(); ++i) {
    double ss = 0;
    for (int64_t j = 0; j < dim; ++j) ss += x[rows[i] * dim + j] * x[rows[i] * dim + j];
    const float r = 1.0f / std::sqrt(static_cast<float>(ss / dim) + 1e-6f);
    for (int64_t j = 0; j < dim; ++j) ASSERT_NEAR(got[i * dim + j], w[j] * x[rows[i] * dim + j] * r, 1e-5);
  }
}

TEST(CudaSwiGlu, MatchesFormula) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  const int64_t n = 1001;
  const auto g = RandomFloats(n, 5, 3.0f), u = RandomFloats(n, 6, 1.0f);
  DevBuf<float> dg(g), du(u);
  ASSERT_EQ(LaunchSwiGlu(dg.p, du.p, dg.p, n, nullptr), cudaSuccess);
  const auto got = dg.Read(n);
  for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(got[i], g[i] / (1 + std::exp(-g[i])) * u[i], 1e-5);
}

// The 8-bit copies that RmsNorm, SwiGLU and the split-KV attention write beside their f32
// outputs equal LaunchQuantizeActs of those outputs, byte for byte.
struct QCopy {
  int64_t n, cols, ld;
  DevBuf<int8_t> q;
  DevBuf<float> ds;
  QCopy(int64_t n_, int64_t cols_) : n(n_), cols(cols_), ld(cols_ + 64), q(n_ * (cols_ + 64)), ds(n_ * ((cols_ + 64) / 32) * 2) {}
  QActs acts() const { return QActs{q.p, ds.p, ld}; }
  // Compares this copy with a standalone quantization of f32 rows y [n, cols].
  void ExpectEqualsQuantized(const float* y, const char* what) {
    QCopy ref(n, cols);
    ASSERT_EQ(LaunchQuantizeActs(y, cols, n, cols, ref.acts(), nullptr), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const auto a = q.Read(n * ld), b = ref.q.Read(n * ld);
    const auto da = ds.Read(n * (ld / 32) * 2), db = ref.ds.Read(n * (ld / 32) * 2);
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t k = 0; k < cols; ++k) ASSERT_EQ(a[t * ld + k], b[t * ld + k]) << what << " t=" << t << " k=" << k;
      for (int64_t j = 0; j < cols / 32 * 2; ++j) ASSERT_EQ(da[t * (ld / 32) * 2 + j], db[t * (ld / 32) * 2 + j]) << what;
    }
  }
};

TEST(CudaInt8Copies, EqualStandaloneQuantization) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  {  // RmsNorm over gathered rows
    const int64_t dim = 992, n = 4;
    const auto x = RandomFloats(n * dim, 7, 2.0f), w = RandomFloats(dim, 8, 1.0f);
    const std::vector<int32_t> rows = {3, 0, 2};
    DevBuf<float> dx(x), dw(w), dy(rows.size() * dim);
    DevBuf<int32_t> dr(rows);
    QCopy c(static_cast<int64_t>(rows.size()), dim);
    const QActs a = c.acts();
    ASSERT_EQ(LaunchRmsNorm(dx.p, dw.p, dy.p, c.n, dim, 1e-6f, dr.p, nullptr, &a), cudaSuccess);
    c.ExpectEqualsQuantized(dy.p, "rms_norm");
    // A row length that is not whole blocks is refused.
    EXPECT_EQ(LaunchRmsNorm(dx.p, dw.p, dy.p, 1, 1000, 1e-6f, nullptr, nullptr, &a), cudaErrorInvalidValue);
  }
  {  // SwiGLU over 3 rows of 320
    const int64_t cols = 320, n = 3;
    const auto g = RandomFloats(n * cols, 9, 3.0f), u = RandomFloats(n * cols, 10, 1.0f);
    DevBuf<float> dg(g), du(u);
    QCopy c(n, cols);
    const QActs a = c.acts();
    ASSERT_EQ(LaunchSwiGlu(dg.p, du.p, dg.p, n * cols, nullptr, cols, &a), cudaSuccess);
    c.ExpectEqualsQuantized(dg.p, "swiglu");
  }
  {  // split-KV attention, 2 tokens of one sequence, GQA 4:2 heads
    const int32_t n_head = 4, n_kv = 2, n_ctx = 70, hd = 128;
    std::vector<uint16_t> kc(n_kv * n_ctx * hd), vc(n_kv * n_ctx * hd);
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> ud(-1.0f, 1.0f);
    for (auto* c : {&kc, &vc}) {
      for (auto& h : *c) {  // f16 bits of small values: sign, exponent 13..14, random mantissa
        h = static_cast<uint16_t>((rng() & 0x8000u) | (0x3400u + (rng() % 0x0800u)));
      }
    }
    const int64_t n = 2;
    const auto q = RandomFloats(n * n_head * hd, 12, 1.0f);
    const std::vector<int32_t> pos = {40, 69}, seq = {0, 0};
    PagedKv paged(kc, vc, 1, n_kv, n_ctx);
    DevBuf<float> dq(q), out(n * n_head * hd);
    DevBuf<int32_t> dp(pos), ds(seq);
    const KvLayer kv = paged.layer;
    const int32_t chunk = 32;
    DevBuf<float> partial(AttentionScratchFloats(n, n_head, n_ctx, chunk));
    QCopy c(n, n_head * hd);
    const QActs a = c.acts();
    ASSERT_EQ(LaunchAttention(dq.p, n, n_head, dp.p, ds.p, n_ctx, chunk, kv, partial.p, out.p, nullptr, &a), cudaSuccess);
    c.ExpectEqualsQuantized(out.p, "attention");
  }
}

// The mixed batch of the flash-attention tests: a 100-token prompt of sequence 0 (two tiles), 21
// tokens of sequence 1 after 37 cached ones, then single tokens of sequences 0 and 2.
struct FlashBatch {
  std::vector<int32_t> pos, seq;
  FlashBatch() {
    for (int32_t p = 0; p < 100; ++p) pos.push_back(p), seq.push_back(0);
    for (int32_t p = 37; p < 58; ++p) pos.push_back(p), seq.push_back(1);
    pos.push_back(150), seq.push_back(0);
    pos.push_back(0), seq.push_back(2);
  }
};

TEST(CudaFlashAttention, TilesAreRunsOfOneSequenceUpToTheTileSize) {
  const FlashBatch b;
  std::vector<int32_t> tiles(2 * b.pos.size(), -1);
  const int32_t count = FlashTiles(b.pos.data(), b.seq.data(), static_cast<int64_t>(b.pos.size()), tiles.data());
  tiles.resize(2 * static_cast<size_t>(count));
  EXPECT_EQ(tiles, (std::vector<int32_t>{0, 64, 64, 36, 100, 21, 121, 1, 122, 1}));
  // A position that does not follow its predecessor starts a tile, even in the same sequence.
  const std::vector<int32_t> pos = {5, 6, 8, 9}, seq = {3, 3, 3, 3};
  std::vector<int32_t> t2(8, -1);
  ASSERT_EQ(FlashTiles(pos.data(), seq.data(), 4, t2.data()), 2);
  EXPECT_EQ(std::vector<int32_t>(t2.begin(), t2.begin() + 4), (std::vector<int32_t>{0, 2, 2, 2}));
}

// Both attention kernels against softmax attention in double on the host, over a paged cache
// whose blocks are scattered (PagedKv): the one-pass kernel (f32 throughout) and the flash
// kernel (q and probabilities in f16), on the mixed batch, GQA 8:2, with NaN in every cache slot
// past each sequence's last position (a tile must never read them in).
TEST(CudaFlashAttention, BothKernelsEqualAttentionInDoubleOverAPagedCache) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  const FlashBatch b;
  const int32_t n_head = 8, n_kv = 2, n_ctx = 160, n_seq = 3, hd = 128;
  const int64_t n = static_cast<int64_t>(b.pos.size());
  const int32_t last[n_seq] = {150, 57, 0};
  std::vector<uint16_t> kc(static_cast<size_t>(n_seq) * n_kv * n_ctx * hd), vc(kc.size());
  std::mt19937 rng(21);
  for (int32_t sq = 0; sq < n_seq; ++sq)
    for (int32_t h = 0; h < n_kv; ++h)
      for (int32_t p = 0; p < n_ctx; ++p)
        for (int32_t d = 0; d < hd; ++d) {
          const size_t i = ((static_cast<size_t>(sq) * n_kv + h) * n_ctx + p) * hd + d;
          for (auto* c : {&kc, &vc}) {  // small f16 values; NaN past the sequence's end
            (*c)[i] = p > last[sq] ? 0x7E00u : static_cast<uint16_t>((rng() & 0x8000u) | (0x3400u + (rng() % 0x0800u)));
          }
        }
  const auto q = RandomFloats(n * n_head * hd, 22, 2.0f);
  // The reference: token t, head h over positions [0, pos_t] of its sequence.
  std::vector<double> want(q.size());
  for (int64_t t = 0; t < n; ++t)
    for (int32_t h = 0; h < n_head; ++h) {
      const size_t head = (static_cast<size_t>(b.seq[t]) * n_kv + h / (n_head / n_kv)) * n_ctx * hd;
      const float* qv = q.data() + (t * n_head + h) * hd;
      std::vector<double> p(static_cast<size_t>(b.pos[t]) + 1);
      double mx = -1e300, sum = 0;
      for (size_t j = 0; j < p.size(); ++j) {
        double dot = 0;
        for (int32_t d = 0; d < hd; ++d) dot += qv[d] * static_cast<double>(Fp16ToFp32(kc[head + j * hd + d]));
        p[j] = dot / std::sqrt(static_cast<double>(hd));
        mx = std::max(mx, p[j]);
      }
      for (double& x : p) sum += (x = std::exp(x - mx));
      for (int32_t d = 0; d < hd; ++d) {
        double o = 0;
        for (size_t j = 0; j < p.size(); ++j) o += p[j] * Fp16ToFp32(vc[head + j * hd + d]);
        want[(t * n_head + h) * hd + d] = o / sum;
      }
    }
  PagedKv paged(kc, vc, n_seq, n_kv, n_ctx);
  DevBuf<float> dq(q), one(n * n_head * hd), flash(n * n_head * hd);
  DevBuf<int32_t> dp(b.pos), ds(b.seq);
  ASSERT_EQ(LaunchAttention(dq.p, n, n_head, dp.p, ds.p, n_ctx, 0, paged.layer, nullptr, one.p, nullptr), cudaSuccess);
  std::vector<int32_t> tiles(2 * n);
  const int32_t count = FlashTiles(b.pos.data(), b.seq.data(), n, tiles.data());
  DevBuf<int32_t> dt(tiles);
  ASSERT_EQ(LaunchFlashPrefill(dq.p, n_head, dp.p, ds.p, dt.p, count, paged.layer, flash.p, nullptr), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  double max_ref = 0;
  for (double w : want) max_ref = std::max(max_ref, std::fabs(w));
  for (const auto& [name, buf, tol] : {std::tuple{"one-pass", &one, 1e-5}, std::tuple{"flash", &flash, 4e-3}}) {
    const auto got = buf->Read(n * n_head * hd);
    double max_err = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << name << ": token " << i / (n_head * hd) << " head " << i / hd % n_head;
      max_err = std::max(max_err, std::fabs(got[i] - want[i]));
    }
    std::printf("%s vs double: max abs err %.3g (max |out| %.3g)\n", name, max_err, max_ref);
    EXPECT_LT(max_err, tol * max_ref) << name;  // flash: q and the probabilities in f16 (2^-11 relative)
  }
}

}  // namespace
}  // namespace qwenmux::runtime::cuda
