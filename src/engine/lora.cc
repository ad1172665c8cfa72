#include "engine/lora.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "base/mapped_file.h"
#include "gguf/safetensors.h"
#include "kernels/matmul.h"

namespace qwenmux::engine {

namespace {

using runtime::kLoraTargets;
using runtime::LoraTarget;

// Parses "<prefix>N.<rest>" into N and rest; false when the shape does not match.
bool SplitLayer(std::string_view name, std::string_view prefix, int32_t* layer, std::string_view* rest) {
  if (!name.starts_with(prefix)) return false;
  name.remove_prefix(prefix.size());
  const size_t dot = name.find('.');
  if (dot == 0 || dot == std::string_view::npos) return false;
  const auto [p, ec] = std::from_chars(name.data(), name.data() + dot, *layer);
  if (ec != std::errc() || p != name.data() + dot || *layer < 0) return false;
  *rest = name.substr(dot + 1);
  return true;
}

// Finds or adds the pair of (layer, target).
LoraTensors::Pair& PairOf(LoraTensors& t, int32_t layer, LoraTarget target) {
  for (auto& p : t.pairs)
    if (p.layer == layer && p.target == target) return p;
  t.pairs.push_back({layer, target, {}});
  return t.pairs.back();
}

// Every pair has both halves and A's rank equals B's.
Status CheckPairs(const LoraTensors& t, std::string_view a_name, std::string_view b_name) {
  if (t.pairs.empty()) return Error(StatusCode::kInvalidArgument, "lora: {}: no LoRA tensors", t.source);
  for (const auto& p : t.pairs) {
    const auto where = [&] { return fmt::format("lora: {}: layer {} {}", t.source, p.layer, runtime::LoraTargetGgufName(p.target)); };
    if (p.p.a.empty() || p.p.b.empty()) {
      return Error(StatusCode::kInvalidArgument, "{}: {} without {}", where(), p.p.a.empty() ? b_name : a_name,
                   p.p.a.empty() ? a_name : b_name);
    }
    if (p.p.rank <= 0) return Error(StatusCode::kInvalidArgument, "{}: rank 0", where());
  }
  return Status::Ok();
}

// Records one half of a pair; `rank` and the half's (in or out) size come from its shape.
Status SetHalf(LoraTensors& t, const std::string& name, int32_t layer, LoraTarget target, bool is_a, int64_t rank,
               int64_t other, std::span<const float> data, std::string_view a_name, std::string_view b_name) {
  LoraTensors::Pair& pr = PairOf(t, layer, target);
  std::span<const float>& dst = is_a ? pr.p.a : pr.p.b;
  if (!dst.empty()) return Error(StatusCode::kInvalidArgument, "lora: {}: tensor {} appears twice", t.source, name);
  if (rank <= 0 || rank > 65536 || other <= 0) {
    return Error(StatusCode::kInvalidArgument, "lora: {}: tensor {}: rank {} / size {} out of range", t.source, name, rank, other);
  }
  const std::span<const float> partner = is_a ? pr.p.b : pr.p.a;
  if (!partner.empty() && pr.p.rank != rank) {
    return Error(StatusCode::kInvalidArgument, "lora: {}: tensor {}: rank mismatch: {} has rank {}, {} has rank {}",
                 t.source, name, is_a ? a_name : b_name, rank, is_a ? b_name : a_name, pr.p.rank);
  }
  pr.p.rank = static_cast<int32_t>(rank);
  (is_a ? pr.p.in : pr.p.out) = other;
  dst = data;
  return Status::Ok();
}

}  // namespace

Result<LoraTensors> ReadLoraGguf(const std::string& path) {
  QM_ASSIGN_OR_RETURN(gguf::File opened, gguf::File::Open(path));
  auto file = std::make_shared<const gguf::File>(std::move(opened));
  const gguf::File& f = *file;
  LoraTensors t;
  t.source = path;
  t.storage.file = file;
  auto need = [&](std::string_view key, std::string_view want) -> Status {
    QM_ASSIGN_OR_RETURN(std::optional<std::string> v, f.GetOptional<std::string>(key));
    if (v != want) {
      return Error(StatusCode::kInvalidArgument, "lora: {}: {} is {}, not \"{}\": not a LoRA adapter file", path, key,
                   v ? "\"" + *v + "\"" : "missing", want);
    }
    return Status::Ok();
  };
  QM_RETURN_IF_ERROR(need("general.type", "adapter"));
  QM_RETURN_IF_ERROR(need("adapter.type", "lora"));
  QM_ASSIGN_OR_RETURN(t.architecture, f.Get<std::string>("general.architecture"));
  if (f.Find("adapter.lora.alpha") != nullptr) {
    QM_ASSIGN_OR_RETURN(const double alpha, f.GetFloat("adapter.lora.alpha"));
    t.alpha = static_cast<float>(alpha);
  }
  for (const gguf::TensorInfo& ti : f.tensors()) {
    int32_t layer = 0;
    std::string_view rest;
    int target = -1;
    bool is_a = false;
    if (SplitLayer(ti.name, "blk.", &layer, &rest)) {
      for (int k = 0; k < kLoraTargets; ++k) {
        const std::string base = std::string(runtime::LoraTargetGgufName(static_cast<LoraTarget>(k))) + ".weight.lora_";
        if (rest == base + "a" || rest == base + "b") {
          target = k;
          is_a = rest.back() == 'a';
        }
      }
    }
    if (target < 0) {
      return Error(StatusCode::kUnsupported,
                   "lora: {}: unknown tensor {} (expected blk.N.<attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|"
                   "ffn_down>.weight.lora_a / .lora_b)", path, ti.name);
    }
    if (ti.n_dims != 2) {
      return Error(StatusCode::kInvalidArgument, "lora: {}: tensor {} has {} dimensions, not 2", path, ti.name, ti.n_dims);
    }
    if (ti.type != gguf::TensorType::kF32 && ti.type != gguf::TensorType::kF16 && ti.type != gguf::TensorType::kBF16 &&
        ti.type != gguf::TensorType::kQ8_0) {
      return Error(StatusCode::kUnsupported, "lora: {}: tensor {} has type {} (f32, f16, bf16 or q8_0)", path, ti.name,
                   gguf::TensorTypeName(ti.type));
    }
    // lora_a: ne = [in, r] (rows = r); lora_b: ne = [r, out] (rows = out).
    kernels::WeightView w;
    w.type = ti.type;
    w.data = f.TensorData(ti).data();
    w.cols = static_cast<int64_t>(ti.ne[0]);
    w.rows = static_cast<int64_t>(ti.ne[1]);
    w.row_bytes = static_cast<size_t>(*gguf::RowBytes(ti.type, ti.ne[0]));  // the reader checked the shape
    const int64_t rank = is_a ? w.rows : w.cols;
    const int64_t other = is_a ? w.cols : w.rows;
    if (rank <= 0 || rank > 65536 || other > (int64_t{1} << 24)) {
      return Error(StatusCode::kInvalidArgument, "lora: {}: tensor {}: shape {} out of range", path, ti.name, ti.ShapeString());
    }
    std::span<const float> data;
    const std::span<const uint8_t> bytes = f.TensorData(ti);
    if (ti.type == gguf::TensorType::kF32 && reinterpret_cast<uintptr_t>(bytes.data()) % alignof(float) == 0) {
      data = {reinterpret_cast<const float*>(bytes.data()), static_cast<size_t>(w.rows * w.cols)};  // in the map
    } else {
      std::vector<float> v(static_cast<size_t>(w.rows * w.cols));
      for (int64_t r = 0; r < w.rows; ++r) kernels::DequantizeRowTo(w, r, v.data() + r * w.cols);
      data = t.storage.Own(std::move(v));
    }
    QM_RETURN_IF_ERROR(SetHalf(t, ti.name, layer, static_cast<LoraTarget>(target), is_a, rank, other, data,
                               "lora_a", "lora_b"));
  }
  QM_RETURN_IF_ERROR(CheckPairs(t, "lora_a", "lora_b"));
  return t;
}

Result<LoraTensors> ReadLoraPeft(const std::string& dir) {
  const std::string config_path = dir + "/adapter_config.json";
  const std::string weights_path = dir + "/adapter_model.safetensors";
  QM_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
  const nlohmann::json cfg = nlohmann::json::parse(text, nullptr, false);
  auto bad = [&](std::string_view what) {
    return Status(StatusCode::kInvalidArgument, fmt::format("lora: {}: {}", config_path, what));
  };
  if (cfg.is_discarded() || !cfg.is_object()) return bad("not a JSON object");
  if (cfg.contains("peft_type") && cfg["peft_type"] != "LORA") return bad(fmt::format("peft_type {} is not LORA", cfg["peft_type"].dump()));
  for (const char* k : {"use_dora", "use_rslora", "fan_in_fan_out"}) {
    if (cfg.contains(k) && cfg[k].is_boolean() && cfg[k].get<bool>()) {
      return Status(StatusCode::kUnsupported, fmt::format("lora: {}: {} is not supported", config_path, k));
    }
  }
  if (cfg.contains("alpha_pattern") && cfg["alpha_pattern"].is_object() && !cfg["alpha_pattern"].empty()) {
    return Status(StatusCode::kUnsupported, fmt::format("lora: {}: alpha_pattern is not supported", config_path));
  }
  if (!cfg.contains("r") || !cfg["r"].is_number_integer() || cfg["r"].get<int64_t>() <= 0) return bad("r missing or not a positive integer");
  if (!cfg.contains("lora_alpha") || !cfg["lora_alpha"].is_number()) return bad("lora_alpha missing or not a number");
  const int64_t r = cfg["r"].get<int64_t>();
  const bool rank_pattern = cfg.contains("rank_pattern") && cfg["rank_pattern"].is_object() && !cfg["rank_pattern"].empty();
  if (cfg.contains("target_modules") && cfg["target_modules"].is_array()) {
    for (const auto& m : cfg["target_modules"]) {
      bool known = false;
      for (int k = 0; k < kLoraTargets; ++k) {
        const std::string_view peft = runtime::LoraTargetPeftName(static_cast<LoraTarget>(k));
        known |= m.is_string() && m.get<std::string>() == peft.substr(peft.find('.') + 1);
      }
      if (!known) {
        return Status(StatusCode::kUnsupported,
                      fmt::format("lora: {}: target module {} is not supported (q_proj, k_proj, v_proj, o_proj, "
                                  "gate_proj, up_proj, down_proj)", config_path, m.dump()));
      }
    }
  }
  LoraTensors t;
  t.source = dir;
  t.alpha = cfg["lora_alpha"].get<float>();
  QM_ASSIGN_OR_RETURN(gguf::SafetensorsFile st, gguf::SafetensorsFile::Open(weights_path));
  for (const gguf::SafetensorsTensor& ti : st.tensors()) {
    std::string_view name = ti.name;
    if (name.starts_with("base_model.model.")) name.remove_prefix(std::string_view("base_model.model.").size());
    int32_t layer = 0;
    std::string_view rest;
    int target = -1;
    bool is_a = false;
    if (SplitLayer(name, "model.layers.", &layer, &rest)) {
      for (int k = 0; k < kLoraTargets; ++k) {
        const std::string base(runtime::LoraTargetPeftName(static_cast<LoraTarget>(k)));
        if (rest == base + ".lora_A.weight" || rest == base + ".lora_B.weight") {
          target = k;
          is_a = rest == base + ".lora_A.weight";
        }
      }
    }
    if (target < 0) {
      return Error(StatusCode::kUnsupported,
                   "lora: {}: unknown tensor {} (expected base_model.model.model.layers.N.<self_attn.q_proj|...|"
                   "mlp.down_proj>.lora_A.weight / .lora_B.weight)", weights_path, ti.name);
    }
    if (ti.shape.size() != 2) {
      return Error(StatusCode::kInvalidArgument, "lora: {}: tensor {} has {} dimensions, not 2", weights_path, ti.name,
                   ti.shape.size());
    }
    // lora_A: [r, in]; lora_B: [out, r] (torch layout, what LoraPair holds).
    const int64_t rank = static_cast<int64_t>(is_a ? ti.shape[0] : ti.shape[1]);
    const int64_t other = static_cast<int64_t>(is_a ? ti.shape[1] : ti.shape[0]);
    if (!rank_pattern && rank != r) {
      return Error(StatusCode::kInvalidArgument, "lora: {}: tensor {}: rank mismatch: shape [{}, {}] has rank {}, the config's r is {}",
                   weights_path, ti.name, ti.shape[0], ti.shape[1], rank, r);
    }
    if (other > (int64_t{1} << 24)) {
      return Error(StatusCode::kInvalidArgument, "lora: {}: tensor {}: size {} out of range", weights_path, ti.name, other);
    }
    QM_RETURN_IF_ERROR(SetHalf(t, ti.name, layer, static_cast<LoraTarget>(target), is_a, rank, other, t.storage.Own(st.ToF32(ti)),
                               "lora_A", "lora_B"));
  }
  QM_RETURN_IF_ERROR(CheckPairs(t, "lora_A", "lora_B"));
  return t;
}

Result<LoraTensors> ReadLora(const std::string& path_or_dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(path_or_dir, ec)) return ReadLoraPeft(path_or_dir);
  return ReadLoraGguf(path_or_dir);
}

Result<std::unique_ptr<runtime::LoraAdapter>> BindLora(LoraTensors t, const gguf::File& base,
                                                       const model::ModelConfig& config) {
  if (!t.architecture.empty() && t.architecture != config.arch_name) {
    return Error(StatusCode::kInvalidArgument, "lora: {}: adapter for architecture {}, the model {} is {}", t.source,
                 t.architecture, base.name(), config.arch_name);
  }
  auto a = std::make_unique<runtime::LoraAdapter>();
  a->name = t.source;
  a->alpha = t.alpha;
  a->storage = std::move(t.storage);  // the pairs' spans stay valid
  a->layers.resize(config.n_layer);
  for (LoraTensors::Pair& p : t.pairs) {
    const std::string base_name = fmt::format("blk.{}.{}.weight", p.layer, runtime::LoraTargetGgufName(p.target));
    if (p.layer >= static_cast<int32_t>(config.n_layer)) {
      return Error(StatusCode::kInvalidArgument, "lora: {}: {}: layer {} but the model has {} layers", t.source, base_name,
                   p.layer, config.n_layer);
    }
    const gguf::TensorInfo* bt = base.FindTensor(base_name);
    if (bt == nullptr) {
      return Error(StatusCode::kInvalidArgument, "lora: {}: the model {} has no tensor {} to adapt", t.source, base.name(),
                   base_name);
    }
    if (bt->n_dims != 2 || static_cast<int64_t>(bt->ne[0]) != p.p.in || static_cast<int64_t>(bt->ne[1]) != p.p.out) {
      return Error(StatusCode::kInvalidArgument,
                   "lora: {}: {}: the adapter's shape (in {}, out {}, rank {}) does not fit the model's tensor {}",
                   t.source, base_name, p.p.in, p.p.out, p.p.rank, bt->ShapeString());
    }
    p.p.factor = t.alpha != 0 ? t.alpha / static_cast<float>(p.p.rank) : 1.0f;
    a->layers[static_cast<size_t>(p.layer)][static_cast<size_t>(p.target)] = std::move(p.p);
  }
  return a;
}

Result<LoraTensors> SynthLora(const gguf::File& base, const model::ModelConfig& config, int32_t rank, float alpha,
                              uint64_t seed) {
  if (rank <= 0 || rank > 4096) return Error(StatusCode::kInvalidArgument, "lora: rank {} not in 1..4096", rank);
  LoraTensors t;
  t.source = fmt::format("synthetic rank-{} adapter", rank);
  t.architecture = config.arch_name;
  t.alpha = alpha;
  std::mt19937_64 rng(seed);
  for (int32_t l = 0; l < static_cast<int32_t>(config.n_layer); ++l) {
    for (int k = 0; k < kLoraTargets; ++k) {
      const auto target = static_cast<LoraTarget>(k);
      const gguf::TensorInfo* bt = base.FindTensor(fmt::format("blk.{}.{}.weight", l, runtime::LoraTargetGgufName(target)));
      if (bt == nullptr || bt->n_dims != 2) continue;
      LoraTensors::Pair& p = PairOf(t, l, target);
      p.p.rank = rank;
      p.p.in = static_cast<int64_t>(bt->ne[0]);
      p.p.out = static_cast<int64_t>(bt->ne[1]);
      std::uniform_real_distribution<float> ua(-1.0f / std::sqrt(static_cast<float>(p.p.in)), 1.0f / std::sqrt(static_cast<float>(p.p.in)));
      std::uniform_real_distribution<float> ub(-0.02f, 0.02f);
      std::vector<float> a(static_cast<size_t>(rank * p.p.in)), b(static_cast<size_t>(p.p.out * rank));
      for (float& x : a) x = ua(rng);
      for (float& x : b) x = ub(rng);
      p.p.a = t.storage.Own(std::move(a));
      p.p.b = t.storage.Own(std::move(b));
    }
  }
  if (t.pairs.empty()) return Error(StatusCode::kInvalidArgument, "lora: {}: no projection to adapt", base.name());
  return t;
}

Status WriteLoraGguf(const LoraTensors& t, const std::string& path) {
  std::vector<const LoraTensors::Pair*> pairs;
  for (const auto& p : t.pairs) pairs.push_back(&p);
  std::sort(pairs.begin(), pairs.end(), [](auto* x, auto* y) {
    return std::pair(x->layer, static_cast<int>(x->target)) < std::pair(y->layer, static_cast<int>(y->target));
  });
  gguf::Writer w;
  w.AddKeyValue("general.architecture", gguf::Value(t.architecture.empty() ? std::string("qwen3") : t.architecture));
  w.AddKeyValue("general.type", gguf::Value(std::string("adapter")));
  w.AddKeyValue("adapter.type", gguf::Value(std::string("lora")));
  w.AddKeyValue("adapter.lora.alpha", gguf::Value(t.alpha));
  for (const auto* p : pairs) {
    const std::string base = fmt::format("blk.{}.{}.weight", p->layer, runtime::LoraTargetGgufName(p->target));
    const uint64_t ne_a[2] = {static_cast<uint64_t>(p->p.in), static_cast<uint64_t>(p->p.rank)};
    const uint64_t ne_b[2] = {static_cast<uint64_t>(p->p.rank), static_cast<uint64_t>(p->p.out)};
    QM_RETURN_IF_ERROR(w.AddTensor(base + ".lora_a", gguf::TensorType::kF32, ne_a).status());
    QM_RETURN_IF_ERROR(w.AddTensor(base + ".lora_b", gguf::TensorType::kF32, ne_b).status());
  }
  QM_RETURN_IF_ERROR(w.Open(path));
  size_t i = 0;
  for (const auto* p : pairs) {
    for (const std::span<const float> v : {p->p.a, p->p.b}) {
      QM_RETURN_IF_ERROR(w.WriteTensorData(i++, std::span(reinterpret_cast<const uint8_t*>(v.data()), v.size_bytes())));
    }
  }
  return w.Finish();
}

}  // namespace qwenmux::engine
