#include "runtime/cuda/cuda_blas.h"

#include <cublas_v2.h>
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

namespace qwenmux::runtime::cuda {

namespace {

// The entry points used, resolved once per process.
struct Api {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasGetVersion_v2) get_version = nullptr;
  // The 32-bit-size cublasGemmEx (C++ sees an overload set).
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
  std::string why;  // empty when loaded
};

const Api& LoadApi() {
  static const Api api = [] {
    Api a;
    const char* off = std::getenv("QWENMUX_CUDA_CUBLAS");
    if (off && std::strcmp(off, "0") == 0) {
      a.why = "QWENMUX_CUDA_CUBLAS=0";
      return a;
    }
    void* lib = nullptr;
    for (const char* name : {"libcublas.so.13", "libcublas.so.12", "libcublas.so"}) {
      if ((lib = dlopen(name, RTLD_NOW | RTLD_LOCAL)) != nullptr) break;
    }
    if (!lib) {
      const char* e = dlerror();
      a.why = std::string("libcublas not found: ") + (e ? e : "dlopen failed");
      return a;
    }
    auto sym = [&](auto* fn, const char* name) {
      *fn = reinterpret_cast<std::remove_pointer_t<decltype(fn)>>(dlsym(lib, name));
      if (!*fn && a.why.empty()) a.why = std::string("libcublas lacks ") + name;
    };
    sym(&a.create, "cublasCreate_v2");
    sym(&a.destroy, "cublasDestroy_v2");
    sym(&a.set_stream, "cublasSetStream_v2");
    sym(&a.get_version, "cublasGetVersion_v2");
    sym(&a.gemm_ex, "cublasGemmEx");
    return a;  // the library stays loaded for the process
  }();
  return api;
}

}  // namespace

std::unique_ptr<Blas> Blas::Create(cudaStream_t stream, std::string* why) {
  const Api& api = LoadApi();
  if (!api.why.empty()) {
    if (why) *why = api.why;
    return nullptr;
  }
  cublasHandle_t h = nullptr;
  if (api.create(&h) != CUBLAS_STATUS_SUCCESS) {
    if (why) *why = "cublasCreate failed";
    return nullptr;
  }
  if (api.set_stream(h, stream) != CUBLAS_STATUS_SUCCESS) {
    api.destroy(h);
    if (why) *why = "cublasSetStream failed";
    return nullptr;
  }
  std::unique_ptr<Blas> b(new Blas());
  b->handle_ = h;
  api.get_version(h, &b->version_);
  return b;
}

Blas::~Blas() {
  if (handle_) LoadApi().destroy(static_cast<cublasHandle_t>(handle_));
}

// Row-major C [m, n] is column-major C^T [n, m]: C^T = op_T(B^T as stored) * A^T as stored, so
// cuBLAS sees B (k x n column-major, lda = ldb) transposed times A (k x m column-major).
bool Blas::Gemm(const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb, float* c, int64_t ldc, int64_t m,
                int64_t n, int64_t k, bool accumulate, bool bf16) {
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  const cudaDataType_t t = bf16 ? CUDA_R_16BF : CUDA_R_16F;
  const cublasStatus_t s =
      LoadApi().gemm_ex(static_cast<cublasHandle_t>(handle_), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                        static_cast<int>(m), static_cast<int>(k), &alpha, b, t, static_cast<int>(ldb), a, t,
                        static_cast<int>(lda), &beta, c, CUDA_R_32F, static_cast<int>(ldc), CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT);
  return s == CUBLAS_STATUS_SUCCESS;
}

}  // namespace qwenmux::runtime::cuda
