#include "runtime/lora.h"

#include <algorithm>
#include <atomic>

#include "kernels/vec_ops.h"
#include "runtime/backend.h"

namespace qwenmux::runtime {

namespace {

constexpr std::string_view kGgufNames[kLoraTargets] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                       "ffn_gate", "ffn_up", "ffn_down"};
constexpr std::string_view kPeftNames[kLoraTargets] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                       "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                       "mlp.down_proj"};

template <class V>
void Grow(V& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

kernels::WeightView F32View(std::span<const float> data, int64_t rows, int64_t cols) {
  kernels::WeightView w;
  w.type = gguf::TensorType::kF32;
  w.data = reinterpret_cast<const uint8_t*>(data.data());
  w.rows = rows;
  w.cols = cols;
  w.row_bytes = static_cast<size_t>(cols) * sizeof(float);
  return w;
}

}  // namespace

std::string_view LoraTargetGgufName(LoraTarget t) { return kGgufNames[static_cast<int>(t)]; }
std::string_view LoraTargetPeftName(LoraTarget t) { return kPeftNames[static_cast<int>(t)]; }

kernels::WeightView LoraPair::A() const { return F32View(a, rank, in); }
kernels::WeightView LoraPair::B() const { return F32View(b, out, rank); }

uint64_t NewLoraSerial() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

uint64_t LoraAdapter::bytes() const {
  uint64_t n = 0;
  for (const auto& l : layers)
    for (const auto& p : l)
      if (p) n += (p->a.size() + p->b.size()) * sizeof(float);
  return n;
}

int32_t LoraAdapter::max_rank() const {
  int32_t r = 0;
  for (const auto& l : layers)
    for (const auto& p : l)
      if (p) r = std::max(r, p->rank);
  return r;
}

int32_t LoraAdapter::n_pairs() const {
  int32_t n = 0;
  for (const auto& l : layers)
    for (const auto& p : l) n += p.has_value();
  return n;
}

void LoraSegments::Build(std::span<const BatchEntry> batch) {
  segments.clear();
  for (size_t t = 0; t < batch.size(); ++t) {
    const LoraAdapter* a = batch[t].lora;
    if (a == nullptr) continue;
    auto it = std::find_if(segments.begin(), segments.end(), [a](const Segment& s) { return s.adapter == a; });
    if (it == segments.end()) {
      segments.push_back({a, {}, {}, false});
      it = segments.end() - 1;
    }
    it->rows.push_back(static_cast<int64_t>(t));
    it->scales.push_back(batch[t].lora_scale);
  }
  for (Segment& s : segments) s.contiguous = s.rows.back() - s.rows.front() + 1 == static_cast<int64_t>(s.rows.size());
}

void ApplyLora(const LoraSegments& seg, int32_t layer, LoraTarget target, const float* x, int64_t ldx, float* y,
               int64_t ldy, LoraScratch* scratch, ThreadPool* pool) {
  for (const LoraSegments::Segment& s : seg.segments) {
    const LoraPair* p = s.adapter->Find(layer, target);
    if (p == nullptr) continue;
    const int64_t m = static_cast<int64_t>(s.rows.size()), r = p->rank;
    // Gather the segment's input rows unless they are contiguous already.
    const float* in = x + s.rows.front() * ldx;
    int64_t ld_in = ldx;
    if (!s.contiguous) {
      Grow(scratch->in, static_cast<size_t>(m * p->in));
      for (int64_t i = 0; i < m; ++i) std::copy_n(x + s.rows[i] * ldx, p->in, scratch->in.data() + i * p->in);
      in = scratch->in.data();
      ld_in = p->in;
    }
    Grow(scratch->mid, static_cast<size_t>(m * r));
    Grow(scratch->out, static_cast<size_t>(m * p->out));
    kernels::MatMul(p->A(), in, ld_in, scratch->mid.data(), r, m, pool);  // [m, r] = x·Aᵀ
    for (int64_t i = 0; i < m; ++i) kernels::Scale(s.scales[i] * p->factor, scratch->mid.data() + i * r, r);
    kernels::MatMul(p->B(), scratch->mid.data(), r, scratch->out.data(), p->out, m, pool);  // [m, out]
    for (int64_t i = 0; i < m; ++i) {
      float* yr = y + s.rows[i] * ldy;
      const float* d = scratch->out.data() + i * p->out;
      for (int64_t j = 0; j < p->out; ++j) yr[j] += d[j];
    }
  }
}

}  // namespace qwenmux::runtime
