// cuBLAS for the prefill and large-batch matrix products, loaded at run time (dlopen of
// libcublas.so.13, then .12): the program needs no cuBLAS to start, and where the library is
// missing the products run on the own tensor-core kernel (LaunchGemm) instead.
// QWENMUX_CUDA_CUBLAS=0 keeps cuBLAS off.
//
// Thread-safety: a Blas handle is used by one thread at a time (one per CudaForward).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>

namespace qwenmux::runtime::cuda {

class Blas {
 public:
  // A handle bound to `stream`, or null where cuBLAS is unavailable (`why` says why).
  static std::unique_ptr<Blas> Create(cudaStream_t stream, std::string* why);
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  // C[m, n] (+)= sum_k A[m, k] * B[n, k], as LaunchGemm (A [M, K] lda, B [N, K] ldb, f16 or bf16;
  // C f32, ldc); f32 accumulation. False when cuBLAS reports an error (then nothing is written
  // that the caller can rely on: it reruns the product on LaunchGemm).
  bool Gemm(const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb, float* c, int64_t ldc, int64_t m,
            int64_t n, int64_t k, bool accumulate, bool bf16);

  // The library's version (e.g. 130000), for the benchmarks' output.
  int version() const { return version_; }

 private:
  Blas() = default;
  void* handle_ = nullptr;  // cublasHandle_t
  int version_ = 0;
};

}  // namespace qwenmux::runtime::cuda
