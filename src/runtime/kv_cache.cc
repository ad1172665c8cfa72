#include "runtime/kv_cache.h"

namespace qwenmux::runtime {

uint64_t KvCache::BytesFor(const model::ModelConfig& c, int32_t n_ctx, int32_t n_seq) {
  return uint64_t{2} * sizeof(uint16_t) * c.n_layer * static_cast<uint64_t>(n_seq) * c.kv_dim() *
         static_cast<uint64_t>(n_ctx);
}

Result<KvCache> KvCache::Create(const model::ModelConfig& c, int32_t n_ctx, int32_t n_seq) {
  if (n_ctx <= 0 || n_seq <= 0) {
    return Error(StatusCode::kInvalidArgument, "kv cache: context {} and sequences {} must be positive", n_ctx, n_seq);
  }
  KvCache kv;
  kv.n_layer_ = static_cast<int32_t>(c.n_layer);
  kv.n_seq_ = n_seq;
  kv.n_head_kv_ = static_cast<int32_t>(c.n_head_kv);
  kv.n_ctx_ = n_ctx;
  kv.head_dim_ = static_cast<int32_t>(c.head_dim);
  kv.size_ = static_cast<size_t>(c.n_layer) * n_seq * c.kv_dim() * static_cast<size_t>(n_ctx);
  kv.k_ = PageArray<uint16_t>(kv.size_);
  kv.v_ = PageArray<uint16_t>(kv.size_);
  if (kv.k_.data() == nullptr || kv.v_.data() == nullptr) {
    return Error(StatusCode::kResourceExhausted, "kv cache: cannot allocate {} bytes", BytesFor(c, n_ctx, n_seq));
  }
  kv.lengths_.assign(n_seq, 0);
  return kv;
}

}  // namespace qwenmux::runtime
