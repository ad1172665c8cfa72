#include "orchestrator/plan/plan.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "base/ascii.h"
#include "model/shapes.h"
#include "orchestrator/config/units.h"
#include "runtime/device_select.h"
#include "quant/quantize_model.h"

namespace qwenmux::orchestrator {

namespace {

model::ModelConfig ConfigFromShape(const model::ModelShape& s) {
  model::ModelConfig c;
  c.arch = s.is_moe() ? model::Arch::kQwen3Moe : model::Arch::kQwen3;
  c.arch_name = s.arch_name();
  c.name = s.display_name;
  c.n_layer = s.n_layer;
  c.n_embd = s.n_embd;
  c.n_ff = s.n_ff;
  c.n_head = s.n_head;
  c.n_head_kv = s.n_head_kv;
  c.head_dim = s.head_dim;
  c.n_ctx_train = s.n_ctx_train;
  c.n_vocab = s.n_vocab;
  c.rms_eps = s.rms_eps;
  c.rope_freq_base = s.rope_freq_base;
  c.n_expert = s.n_expert;
  c.n_expert_used = s.n_expert_used;
  c.n_ff_exp = s.n_ff_exp;
  c.tied_embeddings = s.tied;
  c.pooling = s.pooling();
  return c;
}

std::string FormatParams(uint64_t p) {
  if (p >= 1'000'000'000) return fmt::format("{:.1f}B", static_cast<double>(p) / 1e9);
  return fmt::format("{}M", (p + 500'000) / 1'000'000);
}

struct TierList {
  const char* tier;
  std::vector<const char*> models;  // catalog names, best first
};

const std::vector<TierList>& TierLists() {
  static const std::vector<TierList> kLists = {
      {"qwen3-fast", {"qwen3:1.7b-q4_k_m", "qwen3:0.6b-q8_0", "qwen3:0.6b-q4_k_m"}},
      {"qwen3-balanced",
       {"qwen3:8b-q8_0", "qwen3:8b-q6_k", "qwen3:8b-q5_k_m", "qwen3:8b-q4_k_m", "qwen3:4b-q8_0", "qwen3:4b-q4_k_m"}},
      {"qwen3-quality", {"qwen3:14b-q8_0", "qwen3:14b-q6_k", "qwen3:14b-q5_k_m", "qwen3:14b-q4_k_m"}},
      {"qwen3-max", {"qwen3:30b-a3b-q8_0", "qwen3:30b-a3b-q6_k", "qwen3:30b-a3b-q5_k_m", "qwen3:30b-a3b-q4_k_m"}},
  };
  return kLists;
}

std::string Speed(double v) { return v > 0 ? fmt::format("{:.1f}", v) : "-"; }

// A per-call time: "3.2 us", "450 ns" (under a microsecond: never "0.0 us").
std::string FormatMicros(double us) {
  if (us >= 1.0) return fmt::format("{:.1f} us", us);
  return fmt::format("{:.0f} ns", us * 1e3);
}

// The context a row's model was trained for (0: unknown).
uint32_t RowTrainedContext(const PlanRow& r) {
  if (r.entry->shape) return r.entry->shape->n_ctx_train;
  return r.entry->context_length;
}

}  // namespace

uint64_t Qwen3VocabMetadataBytes() {
  // memory_estimate.cc's MetadataBytes of a Qwen3 GGUF with the full vocab (measured on the
  // shared test models, which carry the real tokenizer; plan_test keeps it honest).
  return 66'600'000;
}

Result<CatalogModelCost> CatalogCost(const CatalogEntry& e) {
  if (!e.shape) return Error(StatusCode::kInternal, "plan: {} has no shape", e.name);
  std::vector<gguf::TensorInfo> tensors = model::TensorLayout(*e.shape);
  CatalogModelCost out;
  Result<quant::FileType> ft = quant::ParseFileType(AsciiLower(e.quantization));
  if (ft.ok()) {
    std::vector<quant::TensorPlan> plan = quant::PlanQuantization(tensors, e.shape->n_expert, *ft);
    if (plan.size() != tensors.size()) return Error(StatusCode::kInternal, "plan: {}: tensor plan size", e.name);
    for (size_t i = 0; i < tensors.size(); ++i) tensors[i].type = plan[i].to;
  } else {
    // Q5_0 (not implemented by the engine): llama.cpp's mix is Q5_0 matrices, Q6_K output head.
    out.engine_supported = false;
    gguf::TensorType t = gguf::TensorType::kQ5_0;
    if (AsciiLower(e.quantization) != "q5_0") return ft.status().WithContext("plan: " + e.name);
    const bool has_output = e.shape->has_output();
    for (gguf::TensorInfo& ti : tensors) {
      if (ti.n_dims < 2) continue;
      const bool head = ti.name == "output.weight" || (ti.name == "token_embd.weight" && !has_output);
      ti.type = head ? gguf::TensorType::kQ6_K : ti.name.find("ffn_gate_inp") != std::string::npos ? gguf::TensorType::kF32 : t;
    }
  }
  for (gguf::TensorInfo& ti : tensors) {
    std::optional<uint64_t> rb = gguf::RowBytes(ti.type, ti.ne[0]);
    if (!rb) return Error(StatusCode::kInternal, "plan: {}: {} has no row size as {}", e.name, ti.name, gguf::TensorTypeName(ti.type));
    ti.n_bytes = *rb * ti.rows();
    out.weight_bytes += ti.n_bytes;
  }
  out.costs = ModelCosts(tensors, e.shape->n_expert, e.shape->n_expert_used);
  return out;
}

Result<MemoryEstimate> EstimateCatalogMemory(const CatalogEntry& e, const engine::LoadOptions& options) {
  QM_ASSIGN_OR_RETURN(CatalogModelCost cost, CatalogCost(e));
  return EstimateMemory(ConfigFromShape(*e.shape), cost.weight_bytes, Qwen3VocabMetadataBytes(), options);
}

Result<Plan> BuildPlan(const PlanOptions& o) {
  if (o.context == 0 || o.context > (1u << 20))
    return Error(StatusCode::kInvalidArgument, "plan: context {} is not in [1, 1048576]", o.context);
  if (o.n_seq < 1) return Error(StatusCode::kInvalidArgument, "plan: sequences must be at least 1");
  Plan plan;
  plan.options = o;
  engine::LoadOptions load;
  load.n_ctx = static_cast<int32_t>(o.context);
  load.n_seq = o.n_seq;
  for (const CatalogEntry& e : Catalog()) {
    PlanRow row;
    row.entry = &e;
    row.params = e.params();
    QM_ASSIGN_OR_RETURN(CatalogModelCost cost, CatalogCost(e));
    row.engine_supported = cost.engine_supported;
    row.memory = EstimateMemory(ConfigFromShape(*e.shape), cost.weight_bytes, Qwen3VocabMetadataBytes(), load);
    row.fits = row.memory.total() <= o.budget_bytes;
    row.device_memory = EstimateDeviceMemory(ConfigFromShape(*e.shape), cost.weight_bytes, load);
    row.fits_gpu = o.gpu.available && row.device_memory.total() <= o.gpu_budget_bytes;
    if (e.role == ModelRole::kChat || e.role == ModelRole::kReranker || e.role == ModelRole::kEmbedding)
      row.speed = EstimateSpeed(cost.costs, o.speed);
    plan.rows.push_back(std::move(row));
  }
  auto find = [&](const char* name) -> const PlanRow* {
    for (const PlanRow& r : plan.rows)
      if (r.entry->name == name) return &r;
    return nullptr;
  };
  const PlanRow* fast = nullptr;
  for (const TierList& tl : TierLists()) {
    TierPick pick;
    pick.tier = tl.tier;
    const uint64_t resident = fast ? fast->memory.total() : 0;
    for (const char* name : tl.models) {
      const PlanRow* r = find(name);
      if (!r || !r->engine_supported) continue;
      if (resident + r->memory.total() <= o.budget_bytes) {
        pick.row = r;
        break;
      }
    }
    const bool is_fast = !fast && std::string_view(tl.tier) == "qwen3-fast";
    if (is_fast) {
      fast = pick.row;
      if (!fast) pick.note = "nothing fits the budget";
    } else if (!pick.row) {
      if (!plan.tiers.empty() && plan.tiers.back().row) {
        pick.row = plan.tiers.back().row;
        const PlanRow* first = find(tl.models.front());
        pick.note = fmt::format("no {} quantization fits beside {}; same as {}",
                                first ? AsciiUpper(first->entry->size_tag) : tl.models.front(),
                                fast ? fast->entry->name : "", plan.tiers.back().tier);
      } else {
        pick.note = "nothing fits the budget";
      }
    }
    if (pick.row && pick.note.empty() && pick.row->entry->name != tl.models.front())
      pick.note = is_fast ? fmt::format("{} does not fit the budget", tl.models.front())
                          : fmt::format("{} does not fit beside the fast tier", tl.models.front());
    plan.tiers.push_back(std::move(pick));
  }
  return plan;
}

nlohmann::json PlanToJson(const Plan& p) {
  nlohmann::json models = nlohmann::json::array();
  for (const PlanRow& r : p.rows) {
    models.push_back({
        {"name", r.entry->name},
        {"role", ModelRoleName(r.entry->role)},
        {"shape", r.entry->shape->name},
        {"quantization", r.entry->quantization},
        {"params", r.params.total},
        {"active_params", r.params.active},
        {"weights_bytes", r.memory.weights},
        {"memory_bytes", r.memory.total()},
        {"memory", {{"weights", r.memory.weights}, {"kv_cache", r.memory.kv_cache}, {"compute", r.memory.compute},
                    {"metadata", r.memory.metadata}}},
        {"fits", r.fits},
        {"device_memory_bytes", r.device_memory.total()},
        {"device_memory", {{"weights", r.device_memory.weights}, {"kv_cache", r.device_memory.kv_cache},
                           {"scratch", r.device_memory.scratch}}},
        {"fits_gpu", r.fits_gpu},
        {"engine_supported", r.engine_supported},
        {"decode_tok_s", r.speed.decode_tok_s > 0 ? nlohmann::json(r.speed.decode_tok_s) : nlohmann::json(nullptr)},
        {"prefill_tok_s", r.speed.prefill_tok_s > 0 ? nlohmann::json(r.speed.prefill_tok_s) : nlohmann::json(nullptr)},
        {"speed_source", r.speed.source},
    });
  }
  nlohmann::json tiers = nlohmann::json::array();
  for (const TierPick& t : p.tiers) {
    tiers.push_back({{"tier", t.tier},
                     {"model", t.row ? nlohmann::json(t.row->entry->name) : nlohmann::json(nullptr)},
                     {"memory_bytes", t.row ? t.row->memory.total() : 0},
                     {"decode_tok_s", t.row && t.row->speed.decode_tok_s > 0 ? nlohmann::json(t.row->speed.decode_tok_s)
                                                                             : nlohmann::json(nullptr)},
                     {"note", t.note}});
  }
  nlohmann::json speed = nullptr;
  if (p.options.speed) {
    speed = p.options.speed->ToJson();
    speed["note"] = p.options.speed_note;
    // The share of the bandwidth, capped at 1 (a type over it carries "suspicious": true).
    for (auto& [name, r] : speed["types"].items())
      if (p.options.speed->read_GBps > 0)
        r["decode_efficiency"] = std::min(1.0, r["decode_GBps"].get<double>() / p.options.speed->read_GBps);
  }
  const runtime::CudaDeviceInfo& g = p.options.gpu;
  nlohmann::json gpu = {{"available", g.available}, {"index", g.index}, {"budget_bytes", p.options.gpu_budget_bytes}};
  if (g.available) {
    gpu["name"] = g.name;
    gpu["total_bytes"] = g.total_bytes;
    gpu["free_bytes"] = g.free_bytes;
  } else {
    gpu["why"] = g.why;
  }
  return {{"context", p.options.context}, {"sequences", p.options.n_seq}, {"total_ram_bytes", p.options.total_ram},
          {"budget_bytes", p.options.budget_bytes}, {"gpu", gpu}, {"speed", speed}, {"models", models}, {"tiers", tiers}};
}

std::string PlanToText(const Plan& p) {
  std::string out;
  const PlanOptions& o = p.options;
  out += fmt::format("RAM {}, memory budget {}, context {} x {} sequence(s)\n", FormatSize(o.total_ram),
                     FormatSize(o.budget_bytes), o.context, o.n_seq);
  // A context above a model's trained context is clamped to it (as the engine does): say so.
  uint32_t clamped_min = UINT32_MAX, clamped_max = 0;
  size_t clamped = 0;
  for (const PlanRow& r : p.rows) {
    const uint32_t trained = RowTrainedContext(r);
    if (trained == 0 || o.context <= trained) continue;
    ++clamped;
    clamped_min = std::min(clamped_min, trained);
    clamped_max = std::max(clamped_max, trained);
  }
  if (clamped > 0) {
    out += fmt::format("warning: context {} is above the trained context of {} model(s) ({}): their figures use the "
                       "trained context (clamped)\n",
                       o.context, clamped,
                       clamped_min == clamped_max ? fmt::format("{}", clamped_min)
                                                  : fmt::format("{} to {}", clamped_min, clamped_max));
  }
  out += fmt::format("GPU {}{}\n", runtime::DescribeCudaDevice(o.gpu),
                     o.gpu.available ? ", GPU budget " + FormatSize(o.gpu_budget_bytes) : "");
  if (o.speed) {
    out += fmt::format("speed: {} ({} threads), read bandwidth {:.1f} GB/s, {} per matmul call; {}\n",
                       o.speed->machine, o.speed->threads, o.speed->read_GBps, FormatMicros(o.speed->call_overhead_us),
                       o.speed_note);
    if (o.speed->LoadHigh()) {
      out += fmt::format("warning: measured while the machine was busy (load {:.1f} on {} cpus): the speeds may read "
                         "low; `qwenmux plan --measure` on an idle machine re-measures\n",
                         o.speed->load_1m, o.speed->cpus);
    }
    if (o.speed->Noisy()) {
      out += fmt::format("warning: the repeats of the measurement disagreed by up to {:.0f}% (something else ran): "
                         "the speeds may read low; `qwenmux plan --measure` on an idle machine re-measures\n",
                         100.0 * o.speed->spread);
    }
    for (const auto& [name, r] : o.speed->types) {
      // A kernel cannot read faster than memory: a share over 100% means the bandwidth was
      // measured low (a busy machine), so it is capped and said.
      const double share = o.speed->read_GBps > 0 ? 100.0 * r.decode_GBps / o.speed->read_GBps : 0.0;
      out += fmt::format("  {:<5} decode {:6.1f} GB/s ({:3.0f}% of bandwidth{}), prefill {:6.1f} GMAC/s\n", name,
                         r.decode_GBps, std::min(share, 100.0),
                         share > 100.0 ? ", suspicious: bandwidth measured low" : "", r.prefill_GMACs);
    }
  } else {
    out += "speed: not measured (run `qwenmux plan --measure`)\n";
  }
  // Column widths from the widest cell, so "30.5B/3.3B" and long names stay aligned.
  auto params_of = [](const PlanRow& r) {
    std::string params = FormatParams(r.params.total);
    if (r.params.active != r.params.total) params += "/" + FormatParams(r.params.active);
    return params;
  };
  size_t wn = 5, wp = 6;
  for (const PlanRow& r : p.rows) {
    wn = std::max(wn, r.entry->name.size());
    wp = std::max(wp, params_of(r).size());
  }
  out += fmt::format("\n{:<{}} {:>{}} {:>10} {:>10} {:>4} {:>10} {:>4} {:>9} {:>10}\n", "model", wn, "params", wp,
                     "weights", "memory", "fits", "gpu memory", "gpu", "decode/s", "prefill/s");
  for (const PlanRow& r : p.rows) {
    const std::string params = params_of(r);
    const bool chat = r.entry->role == ModelRole::kChat;
    out += fmt::format("{:<{}} {:>{}} {:>10} {:>10} {:>4} {:>10} {:>4} {:>9} {:>10}{}\n", r.entry->name, wn, params, wp,
                       FormatSize(r.memory.weights), FormatSize(r.memory.total()), r.fits ? "yes" : "no",
                       FormatSize(r.device_memory.total()), !o.gpu.available ? "-" : r.fits_gpu ? "yes" : "no",
                       chat ? Speed(r.speed.decode_tok_s) : "-", Speed(r.speed.prefill_tok_s),
                       r.engine_supported ? "" : "  (engine: unsupported type)");
  }
  out += "\nsuggested tiers for this machine:\n";
  for (const TierPick& t : p.tiers) {
    if (!t.row) {
      out += fmt::format("  {:<15} -  ({})\n", t.tier, t.note);
      continue;
    }
    out += fmt::format("  {:<15} {:<22} {:>10}  {} tok/s{}\n", t.tier, t.row->entry->name, FormatSize(t.row->memory.total()),
                       Speed(t.row->speed.decode_tok_s), t.note.empty() ? "" : "  (" + t.note + ")");
  }
  return out;
}

}  // namespace qwenmux::orchestrator
