#include "runtime/cuda/cuda_lora.h"

#include <fmt/format.h>

#include <algorithm>

#include "runtime/lora.h"

namespace qwenmux::runtime::cuda {

namespace {

std::string Why(cudaError_t e) { return fmt::format("{} ({})", cudaGetErrorString(e), cudaGetErrorName(e)); }

}  // namespace

DeviceLoras::~DeviceLoras() {
  for (Copy& c : copies_) cudaFree(c.mem);
  for (void* p : {static_cast<void*>(d_slot_), static_cast<void*>(d_scale_), static_cast<void*>(d_tables_),
                  static_cast<void*>(d_mid_)}) {
    if (p) cudaFree(p);
  }
}

Status DeviceLoras::Grow(void** p, size_t* have, size_t want, const char* what) {
  if (*have >= want) return Status::Ok();
  want = std::max<size_t>(want, 2 * *have);
  if (*p) cudaFree(*p);
  *p = nullptr;
  bytes_ -= *have;
  *have = 0;
  const cudaError_t e = cudaMalloc(p, want);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return Error(StatusCode::kResourceExhausted, "cuda: out of device memory for LoRA {} ({} bytes): {}", what, want,
                 Why(e));
  }
  *have = want;
  bytes_ += want;
  return Status::Ok();
}

// One allocation per adapter: every pair's A then B (f32, as the host copy), then the table of
// device pointers, one LoraRef per (layer, target).
Result<size_t> DeviceLoras::Upload(const LoraAdapter& a, int32_t n_layer) {
  std::vector<float> data;
  std::vector<LoraRef> table(static_cast<size_t>(n_layer) * kLoraTargets);
  std::vector<std::pair<size_t, size_t>> offsets(table.size(), {0, 0});  // (a, b) float offsets
  int32_t max_rank = 0;
  for (int32_t il = 0; il < n_layer; ++il) {
    for (int t = 0; t < kLoraTargets; ++t) {
      const LoraPair* p = a.Find(il, static_cast<LoraTarget>(t));
      if (!p) continue;
      const size_t i = static_cast<size_t>(il) * kLoraTargets + t;
      offsets[i].first = data.size();
      data.insert(data.end(), p->a.begin(), p->a.end());
      offsets[i].second = data.size();
      data.insert(data.end(), p->b.begin(), p->b.end());
      table[i].rank = p->rank;
      table[i].factor = p->factor;
      max_rank = std::max(max_rank, p->rank);
    }
  }
  const size_t data_bytes = (data.size() * sizeof(float) + 255) / 256 * 256;
  const size_t total = data_bytes + table.size() * sizeof(LoraRef);
  void* mem = nullptr;
  cudaError_t e = cudaMalloc(&mem, total);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return Error(StatusCode::kResourceExhausted, "cuda: out of device memory for LoRA adapter {} ({:.1f} MiB): {}",
                 a.name, total / 1048576.0, Why(e));
  }
  const float* base = static_cast<const float*>(mem);
  for (size_t i = 0; i < table.size(); ++i) {
    if (table[i].rank == 0) continue;
    table[i].a = base + offsets[i].first;
    table[i].b = base + offsets[i].second;
  }
  e = cudaMemcpy(mem, data.data(), data.size() * sizeof(float), cudaMemcpyHostToDevice);
  if (e == cudaSuccess) {
    e = cudaMemcpy(static_cast<char*>(mem) + data_bytes, table.data(), table.size() * sizeof(LoraRef),
                   cudaMemcpyHostToDevice);
  }
  if (e != cudaSuccess) {
    cudaFree(mem);
    return Error(StatusCode::kInternal, "cuda: uploading LoRA adapter {}: {}", a.name, Why(e));
  }
  Copy c;
  c.serial = a.serial;
  c.mem = mem;
  c.bytes = total;
  c.table = reinterpret_cast<const LoraRef*>(static_cast<char*>(mem) + data_bytes);
  c.max_rank = max_rank;
  copies_.push_back(c);
  bytes_ += total;
  return copies_.size() - 1;
}

Status DeviceLoras::Prepare(std::span<const BatchEntry> batch, int32_t n_layer, cudaStream_t s, LoraStep* step,
                            float** mid) {
  ++clock_;
  std::vector<const LoraAdapter*> used;  // slot -> adapter
  std::vector<int32_t> slot(batch.size(), -1);
  std::vector<float> scale(batch.size(), 0.0f);
  for (size_t t = 0; t < batch.size(); ++t) {
    const LoraAdapter* a = batch[t].lora;
    if (!a) continue;
    if (a->layers.size() != static_cast<size_t>(n_layer)) {
      return Error(StatusCode::kInvalidArgument, "forward: adapter {} has {} layers, the model {}", a->name,
                   a->layers.size(), n_layer);
    }
    auto it = std::find(used.begin(), used.end(), a);
    if (it == used.end()) it = used.insert(used.end(), a);
    slot[t] = static_cast<int32_t>(it - used.begin());
    scale[t] = batch[t].lora_scale;
  }
  std::vector<const LoraRef*> tables(used.size());
  int32_t max_rank = 0;
  for (size_t i = 0; i < used.size(); ++i) {
    auto it = std::find_if(copies_.begin(), copies_.end(), [&](const Copy& c) { return c.serial == used[i]->serial; });
    size_t k = 0;
    if (it != copies_.end()) {
      k = static_cast<size_t>(it - copies_.begin());
    } else {
      auto up = Upload(*used[i], n_layer);
      if (!up.ok()) return up.status();
      k = *up;
    }
    copies_[k].last_use = clock_;
    tables[i] = copies_[k].table;
    max_rank = std::max(max_rank, copies_[k].max_rank);
  }
  // Beyond kMaxResident, free the least recently used copies this step does not use.
  while (copies_.size() > kMaxResident) {
    auto lru = std::min_element(copies_.begin(), copies_.end(),
                                [](const Copy& a, const Copy& b) { return a.last_use < b.last_use; });
    if (lru->last_use == clock_) break;
    cudaFree(lru->mem);
    bytes_ -= lru->bytes;
    copies_.erase(lru);
  }
  const size_t n = batch.size();
  QM_RETURN_IF_ERROR(Grow(reinterpret_cast<void**>(&d_slot_), &slot_bytes_, n * sizeof(int32_t), "slots"));
  QM_RETURN_IF_ERROR(Grow(reinterpret_cast<void**>(&d_scale_), &scale_bytes_, n * sizeof(float), "scales"));
  QM_RETURN_IF_ERROR(Grow(reinterpret_cast<void**>(&d_tables_), &tables_bytes_,
                          std::max<size_t>(1, tables.size()) * sizeof(LoraRef*), "tables"));
  QM_RETURN_IF_ERROR(Grow(reinterpret_cast<void**>(&d_mid_), &mid_bytes_,
                          n * static_cast<size_t>(std::max(1, max_rank)) * sizeof(float), "scratch"));
  // Pageable sources: each copy has read its source when the call returns.
  cudaError_t e = cudaMemcpyAsync(d_slot_, slot.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice, s);
  if (e == cudaSuccess) e = cudaMemcpyAsync(d_scale_, scale.data(), n * sizeof(float), cudaMemcpyHostToDevice, s);
  if (e == cudaSuccess && !tables.empty()) {
    e = cudaMemcpyAsync(d_tables_, tables.data(), tables.size() * sizeof(LoraRef*), cudaMemcpyHostToDevice, s);
  }
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  if (e != cudaSuccess) return Error(StatusCode::kInternal, "cuda: LoRA step tables: {}", Why(e));
  step->slot = d_slot_;
  step->scale = d_scale_;
  step->tables = d_tables_;
  step->max_rank = max_rank;
  *mid = d_mid_;
  return Status::Ok();
}

}  // namespace qwenmux::runtime::cuda
