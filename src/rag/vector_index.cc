#include "rag/vector_index.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

// hnswlib 0.6's SSE search path prefetches the entry one past the end of a neighbour list
// (searchBaseLayer: `*(datal + j + 1)`), a 4-byte over-read of a malloc'd level list that is
// harmless on hardware but fails AddressSanitizer; sanitizer builds take its scalar path.
#if defined(__SANITIZE_ADDRESS__) && !defined(NO_MANUAL_VECTORIZATION)
#define NO_MANUAL_VECTORIZATION
#endif
#include <hnswlib/hnswlib.h>

namespace qwenmux::rag {

struct VectorIndex::Impl {
  explicit Impl(int32_t dim) : space(static_cast<size_t>(dim)) {}
  hnswlib::InnerProductSpace space;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> hnsw;
};

VectorIndex::VectorIndex(int32_t dim, const HnswParams& params)
    : dim_(dim), params_(params), impl_(std::make_unique<Impl>(dim)) {}
VectorIndex::~VectorIndex() = default;

std::unique_ptr<VectorIndex> VectorIndex::Create(int32_t dim, const HnswParams& params) {
  std::unique_ptr<VectorIndex> v(new VectorIndex(dim, params));
  v->impl_->hnsw = std::make_unique<hnswlib::HierarchicalNSW<float>>(&v->impl_->space, 1024, params.m,
                                                                      params.ef_construction);
  return v;
}

namespace {

// The fixed header hnswlib 0.6 writes (saveIndex), in order.
struct HnswHeader {
  size_t offset_level0, max_elements, count, size_per_element, label_offset, offset_data;
  int max_level;
  uint32_t enter_point;
  size_t max_m, max_m0, m;
  double mult;
  size_t ef_construction;
};

template <typename T>
bool ReadPod(std::ifstream& in, T* v) {
  in.read(reinterpret_cast<char*>(v), sizeof(T));
  return static_cast<bool>(in);
}

// Checks what hnswlib's loader would trust blindly: element layout for `dim`, counts that fit the
// file, and every level list size (the loader checks only that they add up to the file size).
Status CheckHnswFile(const std::string& path, int32_t dim) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(StatusCode::kNotFound, "{}: cannot open", path);
  in.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  HnswHeader h{};
  bool ok = ReadPod(in, &h.offset_level0) && ReadPod(in, &h.max_elements) && ReadPod(in, &h.count) &&
            ReadPod(in, &h.size_per_element) && ReadPod(in, &h.label_offset) && ReadPod(in, &h.offset_data) &&
            ReadPod(in, &h.max_level) && ReadPod(in, &h.enter_point) && ReadPod(in, &h.max_m) &&
            ReadPod(in, &h.max_m0) && ReadPod(in, &h.m) && ReadPod(in, &h.mult) && ReadPod(in, &h.ef_construction);
  if (!ok) return Error(StatusCode::kCorrupt, "{}: truncated header", path);
  const size_t links0 = h.max_m0 * sizeof(uint32_t) + sizeof(uint32_t);
  const size_t data = static_cast<size_t>(dim) * sizeof(float);
  if (h.m == 0 || h.m > 10000 || h.max_m != h.m || h.max_m0 != 2 * h.m || h.offset_level0 != 0 ||
      h.offset_data != links0 || h.label_offset != links0 + data ||
      h.size_per_element != links0 + data + sizeof(hnswlib::labeltype)) {
    return Error(StatusCode::kCorrupt, "{}: header does not describe a {}-dimensional index", path, dim);
  }
  if (h.count > h.max_elements || h.count > (file_size / h.size_per_element) || h.max_level < 0 || h.max_level > 64 ||
      (h.count > 0 && h.enter_point >= h.count)) {
    return Error(StatusCode::kCorrupt, "{}: element count or entry point out of range", path);
  }
  const size_t links_per_level = h.max_m * sizeof(uint32_t) + sizeof(uint32_t);
  in.seekg(static_cast<std::streamoff>(h.count * h.size_per_element), std::ios::cur);
  for (size_t i = 0; i < h.count; ++i) {
    uint32_t n = 0;
    if (!ReadPod(in, &n)) return Error(StatusCode::kCorrupt, "{}: truncated level lists", path);
    if (n % links_per_level != 0 || n / links_per_level > static_cast<size_t>(h.max_level))
      return Error(StatusCode::kCorrupt, "{}: bad level list size for element {}", path, i);
    in.seekg(n, std::ios::cur);
  }
  if (!in || static_cast<uint64_t>(in.tellg()) != file_size)
    return Error(StatusCode::kCorrupt, "{}: size does not match its contents", path);
  return Status::Ok();
}

Status SyncFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return Error(StatusCode::kIo, "{}: cannot open for fsync", path);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Error(StatusCode::kIo, "{}: fsync failed", path);
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<VectorIndex>> VectorIndex::Load(const std::string& path, int32_t dim, const HnswParams& params) {
  QM_RETURN_IF_ERROR(CheckHnswFile(path, dim));
  std::unique_ptr<VectorIndex> v(new VectorIndex(dim, params));
  try {
    v->impl_->hnsw = std::make_unique<hnswlib::HierarchicalNSW<float>>(&v->impl_->space, path);
  } catch (const std::exception& e) {
    return Error(StatusCode::kCorrupt, "{}: {}", path, e.what());
  }
  auto& h = *v->impl_->hnsw;
  size_t deleted = 0;
  for (const auto& [label, internal] : h.label_lookup_) {
    v->watermark_ = std::max<int64_t>(v->watermark_, static_cast<int64_t>(label));
    deleted += h.isMarkedDeleted(internal) ? 1 : 0;
  }
  h.num_deleted_ = deleted;  // hnswlib 0.6's loader counts from an uninitialised value
  return v;
}

size_t VectorIndex::size() const {
  const auto& h = *impl_->hnsw;
  return h.cur_element_count - h.num_deleted_;
}

int64_t VectorIndex::watermark() const { return watermark_; }

bool VectorIndex::Contains(int64_t label) const {
  const auto& h = *impl_->hnsw;
  auto it = h.label_lookup_.find(static_cast<hnswlib::labeltype>(label));
  return it != h.label_lookup_.end() && !h.isMarkedDeleted(it->second);
}

std::vector<int64_t> VectorIndex::Labels() const {
  const auto& h = *impl_->hnsw;
  std::vector<int64_t> out;
  out.reserve(h.label_lookup_.size());
  for (const auto& [label, internal] : h.label_lookup_)
    if (!h.isMarkedDeleted(internal)) out.push_back(static_cast<int64_t>(label));
  std::sort(out.begin(), out.end());
  return out;
}

Status VectorIndex::Reserve(size_t n) {
  auto& h = *impl_->hnsw;
  if (n <= h.max_elements_) return Status::Ok();
  try {
    h.resizeIndex(std::max(n, h.max_elements_ * 2));
  } catch (const std::exception& e) {
    return Error(StatusCode::kResourceExhausted, "vector index: growing to {} vectors: {}", n, e.what());
  }
  return Status::Ok();
}

Status VectorIndex::Add(int64_t label, std::span<const float> v) {
  return AddBatch(std::span(&label, 1), v, 1);
}

Status VectorIndex::AddBatch(std::span<const int64_t> labels, std::span<const float> rows, size_t threads) {
  const size_t d = static_cast<size_t>(dim_);
  if (rows.size() != labels.size() * d)
    return Error(StatusCode::kInvalidArgument, "vector index: {} values for {} vectors of dimension {}", rows.size(),
                 labels.size(), dim_);
  for (int64_t l : labels)
    if (l <= 0) return Error(StatusCode::kInvalidArgument, "vector index: label {} is not positive", l);
  auto& h = *impl_->hnsw;
  QM_RETURN_IF_ERROR(Reserve(h.cur_element_count + labels.size()));
  threads = std::max<size_t>(1, std::min(threads, labels.size()));
  std::atomic<size_t> next{0};
  std::string error;
  std::mutex error_mu;
  auto work = [&] {
    for (size_t i = next++; i < labels.size(); i = next++) {
      try {
        h.addPoint(rows.data() + i * d, static_cast<hnswlib::labeltype>(labels[i]));
      } catch (const std::exception& e) {
        std::lock_guard lock(error_mu);
        error = e.what();
      }
    }
  };
  if (threads == 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (size_t t = 0; t < threads; ++t) pool.emplace_back(work);
    for (auto& t : pool) t.join();
  }
  if (!error.empty()) return Error(StatusCode::kInternal, "vector index: add: {}", error);
  for (int64_t l : labels) watermark_ = std::max(watermark_, l);
  dirty_ = dirty_ || !labels.empty();
  return Status::Ok();
}

void VectorIndex::Remove(int64_t label) {
  if (!Contains(label)) return;
  impl_->hnsw->markDelete(static_cast<hnswlib::labeltype>(label));
  dirty_ = true;
}

Result<std::vector<std::pair<int64_t, float>>> VectorIndex::Search(std::span<const float> q, size_t k) const {
  if (q.size() != static_cast<size_t>(dim_))
    return Error(StatusCode::kInvalidArgument, "vector index: query has {} dimensions, the index {}", q.size(), dim_);
  std::vector<std::pair<int64_t, float>> out;
  if (k == 0 || size() == 0) return out;
  auto& h = *impl_->hnsw;
  h.setEf(std::max(params_.ef_search, k));
  try {
    auto pq = h.searchKnn(q.data(), std::min(k, size()));
    out.resize(pq.size());
    for (size_t i = pq.size(); i-- > 0; pq.pop()) out[i] = {static_cast<int64_t>(pq.top().second), 1.0f - pq.top().first};
  } catch (const std::exception& e) {
    return Error(StatusCode::kInternal, "vector index: search: {}", e.what());
  }
  return out;
}

Status VectorIndex::Save(const std::string& path) {
  const std::string tmp = path + ".tmp";
  try {
    impl_->hnsw->saveIndex(tmp);
  } catch (const std::exception& e) {
    return Error(StatusCode::kIo, "{}: save: {}", tmp, e.what());
  }
  QM_RETURN_IF_ERROR(CheckHnswFile(tmp, dim_).WithContext("vector index: written file"));  // e.g. disk full
  QM_RETURN_IF_ERROR(SyncFile(tmp));
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Error(StatusCode::kIo, "{}: rename: {}", path, ec.message());
  QM_RETURN_IF_ERROR(SyncFile(std::filesystem::path(path).parent_path().string()));
  dirty_ = false;
  return Status::Ok();
}

}  // namespace qwenmux::rag
