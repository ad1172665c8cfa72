#include "quant/synth_model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <string_view>
#include <vector>

#include <cstring>
#include <future>

#include "base/fp16.h"
#include "base/thread_pool.h"
#include "gguf/gguf.h"
#include "quant/blocks.h"
#include "quant/quant.h"

namespace qwenmux::quant {

namespace {

using gguf::Value;

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t RowState(uint64_t seed, uint64_t tensor_index, uint64_t row) {
  uint64_t s = seed;
  uint64_t h = SplitMix64(s);
  s = h ^ (tensor_index * 0xD1B54A32D192ED03ull);
  h = SplitMix64(s);
  s = h ^ (row * 0x8CB92BA72F3D8DD7ull);
  return SplitMix64(s);
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// How tensor values are drawn: value = offset + scale·N(0,1).
struct Distribution {
  float offset = 0, scale = 1;
};

Distribution DistributionFor(const gguf::TensorInfo& t) {
  if (EndsWith(t.name, "_norm.weight")) return {1.0f, 0.05f};
  return {0.0f, static_cast<float>(1.0 / std::sqrt(static_cast<double>(t.ne[0])))};
}

Status CheckShape(const model::ModelShape& shape, const SynthOptions& o) {
  if (o.n_layer > shape.n_layer) {
    return Error(StatusCode::kInvalidArgument, "synth: {} has {} layers, {} asked for", shape.name, shape.n_layer,
                 o.n_layer);
  }
  return Status::Ok();
}

void AddHyperParameters(const model::ModelShape& s, uint32_t n_layer, FileType ftype, gguf::Writer& w) {
  const std::string a = std::string(s.arch_name()) + ".";
  w.AddKeyValue("general.architecture", Value(std::string(s.arch_name())));
  w.AddKeyValue("general.type", Value(std::string("model")));
  w.AddKeyValue("general.name", Value(std::string(s.display_name)));
  w.AddKeyValue(a + "block_count", Value(n_layer));
  w.AddKeyValue(a + "context_length", Value(s.n_ctx_train));
  w.AddKeyValue(a + "embedding_length", Value(s.n_embd));
  w.AddKeyValue(a + "feed_forward_length", Value(s.n_ff));
  w.AddKeyValue(a + "attention.head_count", Value(s.n_head));
  w.AddKeyValue(a + "attention.head_count_kv", Value(s.n_head_kv));
  w.AddKeyValue(a + "rope.freq_base", Value(s.rope_freq_base));
  w.AddKeyValue(a + "attention.layer_norm_rms_epsilon", Value(s.rms_eps));
  w.AddKeyValue(a + "attention.key_length", Value(s.head_dim));
  w.AddKeyValue(a + "attention.value_length", Value(s.head_dim));
  if (s.is_moe()) {
    w.AddKeyValue(a + "expert_count", Value(s.n_expert));
    w.AddKeyValue(a + "expert_used_count", Value(s.n_expert_used));
    w.AddKeyValue(a + "expert_feed_forward_length", Value(s.n_ff_exp));
  }
  if (s.pooling() != model::PoolingType::kNone) {
    w.AddKeyValue(a + "pooling_type", Value(static_cast<uint32_t>(s.pooling())));
  }
  w.AddKeyValue("general.file_type", Value(static_cast<uint32_t>(ftype)));
  w.AddKeyValue("general.quantization_version", Value(kQuantizationVersion));
}

Status AddTokenizer(const model::ModelShape& s, const std::string& vocab_path, gguf::Writer& w) {
  auto vocab = gguf::File::Open(vocab_path);
  if (!vocab.ok()) return vocab.status().WithContext("synth: vocab file");
  auto tokens = vocab->GetArray("tokenizer.ggml.tokens", gguf::ValueType::kString);
  if (!tokens.ok()) return tokens.status().WithContext("synth: vocab file " + vocab_path);
  if ((*tokens)->items.size() != s.n_vocab) {
    return Error(StatusCode::kInvalidArgument, "synth: vocab file {} has {} tokens, {} has {} embedding rows",
                 vocab_path, (*tokens)->items.size(), s.name, s.n_vocab);
  }
  for (const gguf::KeyValue& kv : vocab->metadata()) {
    if (kv.key.rfind("tokenizer.", 0) == 0) w.AddKeyValue(kv.key, kv.value);
  }
  if (s.kind == model::ModelKind::kEmbedding) {
    // The reference converter's Qwen3-Embedding files end every input with <|endoftext|>:
    // eos = 151643 and add_eos_token = true (qwen3-reference.md §6.1).
    auto eot = vocab->GetOptional<uint32_t>("tokenizer.ggml.padding_token_id");
    if (eot.ok() && eot->has_value()) w.SetKeyValue("tokenizer.ggml.eos_token_id", Value(**eot));
    w.SetKeyValue("tokenizer.ggml.add_eos_token", Value(true));
  }
  if (s.kind == model::ModelKind::kReranker) {
    gguf::Array labels;
    labels.type = gguf::ValueType::kString;
    labels.items = {Value(std::string("yes")), Value(std::string("no"))};
    w.AddKeyValue(std::string(s.arch_name()) + ".classifier.output_labels", Value(std::move(labels)));
  }
  return Status::Ok();
}

}  // namespace

namespace {

// Standard normal quantiles at (k + 0.5) / kTable, k = 0..kTable-1, by bisection on erfc (built
// once). A value is drawn by linear interpolation between neighbours with 24 random bits: an
// inverse-CDF normal truncated at ±3.5σ, about 10x cheaper than Box-Muller's log/sin/cos.
constexpr int kTableBits = 12;
constexpr int kTable = 1 << kTableBits;

struct NormalTable {
  float q[kTable + 1];
  NormalTable() {
    for (int k = 0; k < kTable; ++k) {
      const double p = (k + 0.5) / kTable;
      double lo = -10, hi = 10;
      for (int it = 0; it < 100; ++it) {
        const double mid = 0.5 * (lo + hi);
        (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
      }
      q[k] = static_cast<float>(0.5 * (lo + hi));
    }
    q[kTable] = q[kTable - 1];
  }
};

const NormalTable& Table() {
  static const NormalTable table;
  return table;
}

}  // namespace

void SynthNormalRow(uint64_t seed, uint64_t tensor_index, uint64_t row, float* out, int64_t n) {
  const float* q = Table().q;
  uint64_t state = RowState(seed, tensor_index, row);
  constexpr float kInvFrac = 1.0f / 4096.0f;
  int64_t i = 0;
  for (; i + 1 < n; i += 2) {
    const uint64_t bits = SplitMix64(state);
    for (int h = 0; h < 2; ++h) {
      const uint32_t b = static_cast<uint32_t>(bits >> (h * 32));
      const uint32_t idx = b >> (32 - kTableBits);
      const float frac = static_cast<float>((b >> 8) & 0xFFF) * kInvFrac;
      out[i + h] = q[idx] + frac * (q[idx + 1] - q[idx]);
    }
  }
  if (i < n) {
    const uint32_t b = static_cast<uint32_t>(SplitMix64(state));
    const uint32_t idx = b >> (32 - kTableBits);
    out[i] = q[idx] + static_cast<float>((b >> 8) & 0xFFF) * kInvFrac * (q[idx + 1] - q[idx]);
  }
}

namespace {

// Random valid quantized blocks written directly (no floats, no quantizer): random bytes for the
// quantized values, then each block's scales (and mins) chosen so the dequantized weights have
// mean ~0 and standard deviation `sigma`:
//   Q8_0  y = d·q, q uniform in [-128, 127]         E[q²] = 5461.5       d = ±sigma/√E[q²]
//   Q4_0  y = d·(q-8), q uniform in [0, 15]         E[(q-8)²] = 21.5     d = ±sigma/√21.5
//   (the sign of d is random per block, which cancels the -0.5 mean of the quantized values)
//   Q4_K  y = d·sc·q - dmin·m, q in [0, 15], sc uniform in [32, 63], dmin = 8d,
//         m = round(sc·7.5/8) (centres each sub-block)  d = sigma/√(21.25·E[sc²])
//   Q5_K  the same with q in [0, 31], dmin = 16d, m = round(sc·15.5/16)  d = sigma/√(85.25·E[sc²])
//   Q6_K  y = d·s·(q-32), q in [0, 63], |s| uniform in [16, 31] with a random sign
//                                                   d = sigma/√(341.5·E[s²])
// Every scale is a small f16 (|d| < 1e-2 for sigma < 1), so nothing overflows an f16 KV cache
// or f16 partial sums downstream. Returns false for types without a direct writer.
bool DirectBlocks(gguf::TensorType type) {
  switch (type) {
    case gguf::TensorType::kQ8_0:
    case gguf::TensorType::kQ4_0:
    case gguf::TensorType::kQ4_K:
    case gguf::TensorType::kQ5_K:
    case gguf::TensorType::kQ6_K: return true;
    default: return false;
  }
}

void FillRandom(uint64_t& state, uint8_t* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t v = SplitMix64(state);
    std::memcpy(out + i, &v, 8);
  }
  if (i < n) {
    const uint64_t v = SplitMix64(state);
    std::memcpy(out + i, &v, n - i);
  }
}

// E[x²] for x uniform on the integers [lo, hi].
constexpr double MeanSquare(int lo, int hi) {
  const double n = hi - lo + 1, mean = (lo + hi) / 2.0;
  return mean * mean + (n * n - 1) / 12.0;
}

void SetF16(uint8_t* p, float v) {
  const uint16_t h = Fp32ToFp16(v);
  std::memcpy(p, &h, 2);
}

// Packs 8 six-bit scales and mins as UnpackScaleMinK4 reads them.
void PackScaleMinK4(const uint8_t* sc, const uint8_t* m, uint8_t* q) {
  for (int j = 0; j < 4; ++j) {
    q[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    q[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    q[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
}

// One row of n values of `type` at `out`, drawn from `state`.
void WriteDirectRow(gguf::TensorType type, float sigma, uint64_t state, uint8_t* out, int64_t n) {
  using gguf::TensorType;
  switch (type) {
    case TensorType::kQ8_0: {
      const float d = sigma / static_cast<float>(std::sqrt(MeanSquare(-128, 127)));
      for (int64_t b = 0; b < n / kQK8_0; ++b, out += sizeof(BlockQ8_0)) {
        FillRandom(state, out, sizeof(BlockQ8_0));
        SetF16(out, (out[0] & 1) ? -d : d);
      }
      return;
    }
    case TensorType::kQ4_0: {
      const float d = sigma / static_cast<float>(std::sqrt(MeanSquare(-8, 7)));
      for (int64_t b = 0; b < n / kQK4_0; ++b, out += sizeof(BlockQ4_0)) {
        FillRandom(state, out, sizeof(BlockQ4_0));
        SetF16(out, (out[0] & 1) ? -d : d);
      }
      return;
    }
    case TensorType::kQ4_K:
    case TensorType::kQ5_K: {
      const bool five = type == TensorType::kQ5_K;
      const size_t bytes = five ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
      const double var_q = five ? (32.0 * 32 - 1) / 12 : (16.0 * 16 - 1) / 12;
      const double centre = five ? 15.5 : 7.5, dmin_ratio = five ? 16 : 8;
      const float d = sigma / static_cast<float>(std::sqrt(var_q * MeanSquare(32, 63)));
      for (int64_t b = 0; b < n / kQK_K; ++b, out += bytes) {
        FillRandom(state, out, bytes);
        uint8_t sc[8], m[8];
        for (int j = 0; j < 8; ++j) {
          sc[j] = static_cast<uint8_t>(32 + (out[4 + j] & 31));  // random bits, overwritten below
          m[j] = static_cast<uint8_t>(std::lround(sc[j] * centre / dmin_ratio));
        }
        SetF16(out, d);
        SetF16(out + 2, static_cast<float>(d * dmin_ratio));
        PackScaleMinK4(sc, m, out + 4);
      }
      return;
    }
    case TensorType::kQ6_K: {
      const float d = sigma / static_cast<float>(std::sqrt(MeanSquare(-32, 31) * MeanSquare(16, 31)));
      for (int64_t b = 0; b < n / kQK_K; ++b, out += sizeof(BlockQ6_K)) {
        auto* blk = reinterpret_cast<BlockQ6_K*>(out);
        FillRandom(state, out, sizeof(BlockQ6_K));
        for (int8_t& s : blk->scales) {
          const uint8_t r = static_cast<uint8_t>(s);
          s = static_cast<int8_t>((r & 0x80) ? -(16 + (r & 15)) : 16 + (r & 15));
        }
        SetF16(reinterpret_cast<uint8_t*>(&blk->d), d);
      }
      return;
    }
    default: return;
  }
}

}  // namespace

Status SynthesizeModel(const model::ModelShape& shape, const std::string& out_path, const SynthOptions& o) {
  QM_RETURN_IF_ERROR(CheckShape(shape, o));
  const uint32_t n_layer = o.n_layer == 0 ? shape.n_layer : o.n_layer;
  std::vector<gguf::TensorInfo> layout = model::TensorLayout(shape, n_layer);
  const std::vector<TensorPlan> plan = PlanQuantization(layout, shape.n_expert, o.ftype);

  gguf::Writer w;
  AddHyperParameters(shape, n_layer, o.ftype, w);
  QM_RETURN_IF_ERROR(AddTokenizer(shape, o.vocab_path, w));
  uint64_t total_elements = 0;
  for (size_t i = 0; i < layout.size(); ++i) {
    const auto& t = layout[i];
    auto r = w.AddTensor(t.name, plan[i].to, std::span<const uint64_t>(t.ne, t.n_dims));
    if (!r.ok()) return r.status().WithContext("synth: tensor " + t.name);
    total_elements += t.n_elements();
  }
  QM_RETURN_IF_ERROR(w.Open(out_path));

  ThreadPool pool(o.threads);
  std::vector<std::vector<float>> scratch(pool.size());
  // Two chunk buffers: the pool fills one while the other is written (in order) to the file.
  std::vector<uint8_t> buffers[2];
  int cur = 0;
  std::future<Status> writing;
  auto wait_write = [&]() -> Status { return writing.valid() ? writing.get() : Status::Ok(); };
  SynthProgress progress;
  progress.n_tensors = layout.size();
  progress.elements_total = total_elements;
  constexpr size_t kChunkBytes = size_t{16} << 20;  // output bytes per write
  for (size_t i = 0; i < layout.size(); ++i) {
    const gguf::TensorInfo& t = layout[i];
    const gguf::TensorType type = plan[i].to;
    const int64_t n = static_cast<int64_t>(t.ne[0]);
    const int64_t rows = static_cast<int64_t>(t.rows());
    const size_t row_bytes = RowSize(type, n);
    if (row_bytes == 0) {
      return Error(StatusCode::kInternal, "synth: tensor {}: cannot write {} rows of {}", t.name,
                   gguf::TensorTypeName(type), n);
    }
    const Distribution dist = DistributionFor(t);
    const int64_t chunk_rows = std::max<int64_t>(1, static_cast<int64_t>(kChunkBytes / row_bytes));
    const bool direct = DirectBlocks(type) && dist.offset == 0.0f && !o.quantize_floats;
    progress.tensor = i;
    progress.plan = &plan[i];
    for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
      const int64_t nr = std::min(chunk_rows, rows - r0);
      std::vector<uint8_t>& out = buffers[cur];
      out.resize(static_cast<size_t>(nr) * row_bytes);
      std::mutex mu;
      Status first_error = Status::Ok();
      pool.ParallelFor(static_cast<size_t>(nr), 1, [&](size_t b, size_t e, size_t tid) {
        if (direct) {
          for (size_t r = b; r < e; ++r) {
            WriteDirectRow(type, dist.scale, RowState(o.seed, i, static_cast<uint64_t>(r0) + r), out.data() + r * row_bytes, n);
          }
          return;
        }
        std::vector<float>& row = scratch[tid];
        row.resize(static_cast<size_t>(n));
        for (size_t r = b; r < e; ++r) {
          SynthNormalRow(o.seed, i, static_cast<uint64_t>(r0) + r, row.data(), n);
          for (float& x : row) x = dist.offset + dist.scale * x;
          Status s = QuantizeRow(type, row.data(), out.data() + r * row_bytes, n);
          if (!s.ok()) {
            std::lock_guard<std::mutex> lock(mu);
            if (first_error.ok()) first_error = s;
            return;
          }
        }
      });
      if (!first_error.ok()) {
        (void)wait_write();
        return first_error.WithContext("synth: tensor " + t.name);
      }
      QM_RETURN_IF_ERROR(wait_write());
      writing = std::async(std::launch::async, [&w, i, &out] { return w.WriteTensorChunk(i, out); });
      cur ^= 1;
      progress.elements_done += static_cast<uint64_t>(nr) * static_cast<uint64_t>(n);
      if (o.progress) o.progress(progress);
    }
  }
  QM_RETURN_IF_ERROR(wait_write());
  return w.Finish();
}

}  // namespace qwenmux::quant
