#include "runtime/cpu_backend.h"

#include <fmt/format.h>

namespace qwenmux::runtime {

Result<std::unique_ptr<CpuBackend>> CpuBackend::Create(const model::ModelConfig& config, const ModelWeights& weights,
                                                       int32_t n_ctx, int32_t n_seq, ThreadPool* pool) {
  QM_ASSIGN_OR_RETURN(KvCache kv, KvCache::Create(config, n_ctx, n_seq));
  return std::unique_ptr<CpuBackend>(new CpuBackend(config, weights, std::move(kv), pool));
}

std::string CpuBackend::Describe() const {
  const size_t threads = pool_ ? pool_->size() : 1;
  return fmt::format("cpu ({} thread{})", threads, threads == 1 ? "" : "s");
}

}  // namespace qwenmux::runtime
