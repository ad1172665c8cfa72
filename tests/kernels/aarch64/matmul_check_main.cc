// Cross check of the portable (NEON) MatMul path on aarch64 under qemu: MatMul vs
// MatMulReference for every weight type. Not part of the gtest binary (x86 host); build and run:
//   aarch64-linux-gnu-g++ -static -O2 -std=c++20 -DHWY_COMPILE_ONLY_STATIC -Isrc -Iinclude \
//     -isystem <dir with only hwy/> -isystem <dir with only fmt/> -DFMT_HEADER_ONLY \
//     tests/kernels/aarch64/matmul_check_main.cc src/kernels/cpu/matmul*.cc \
//     src/kernels/reference/matmul_ref.cc src/quant/*.cc src/base/status.cc \
//     src/base/thread_pool.cc src/gguf/gguf_types.cc -o /tmp/a64 -lpthread && qemu-aarch64 /tmp/a64
// (The -isystem dirs keep the host's x86 headers out: e.g. mkdir d; ln -s /usr/include/hwy d/hwy.)
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>
#include "kernels/matmul.h"
#include "quant/quant.h"
using namespace qwenmux;
int main() {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  int fails = 0;
  ThreadPool pool(2);
  for (auto type : {gguf::TensorType::kF32, gguf::TensorType::kF16, gguf::TensorType::kBF16,
                    gguf::TensorType::kQ8_0, gguf::TensorType::kQ4_0, gguf::TensorType::kQ4_K,
                    gguf::TensorType::kQ5_K, gguf::TensorType::kQ6_K}) {
    for (int64_t n : {1, 3, 5}) {
      const int64_t rows = 19, cols = 768;
      const size_t rb = quant::RowSize(type, cols);
      std::vector<uint8_t> w(rb * rows);
      std::vector<float> row(cols);
      for (int64_t r = 0; r < rows; ++r) {
        for (auto& v : row) v = nd(rng) * 0.05f;
        if (!quant::QuantizeRow(type, row.data(), w.data() + rb * r, cols).ok()) return 1;
      }
      kernels::WeightView v{type, w.data(), rows, cols, rb};
      std::vector<float> x(n * cols + 1), y(n * rows), yr(n * rows);
      for (auto& e : x) e = nd(rng);
      kernels::MatMul(v, x.data() + 1, cols, y.data(), rows, n, n == 3 ? &pool : nullptr);
      kernels::MatMulReference(v, x.data() + 1, cols, yr.data(), rows, n);
      double err = 0, ref = 0;
      for (size_t i = 0; i < y.size(); ++i) { err += (y[i] - yr[i]) * (y[i] - yr[i]); ref += yr[i] * yr[i]; }
      const double rel = std::sqrt(err / ref);
      const bool ok = rel < (type == gguf::TensorType::kF32 || type == gguf::TensorType::kF16 || type == gguf::TensorType::kBF16 ? 1e-5 : 2e-2);
      if (!ok) ++fails;
      std::printf("%-5s n=%ld rel_err=%.2e %s\n", gguf::TensorTypeName(type), (long)n, rel, ok ? "ok" : "FAIL");
    }
  }
  std::printf("%s\n", fails ? "FAILED" : "ALL OK");
  return fails != 0;
}
