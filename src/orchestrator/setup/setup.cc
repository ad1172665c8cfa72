#include "orchestrator/setup/setup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/ascii.h"
#include "model/config.h"
#include "orchestrator/manager/memory_estimate.h"
#include "orchestrator/store/model_store.h"

namespace qwenmux::orchestrator {

namespace internal {
// adapters.cc: the config's `adapters:` and the --adapter flags into out->adapters.
Status AddAdapters(const ServeInputs& in, const std::string& cfg_name, ServeSetup* out);
}  // namespace internal

namespace {

KeepAlive ToKeepAlive(Duration d) { return d.forever ? kKeepForever : KeepAlive(d.ms); }

// One model to set up, from whichever source.
struct Pending {
  std::string where;                 // "qwenmux.yaml:14: models[1] (qwen3-balanced)" / "--model x.gguf"
  std::string name;
  std::vector<std::string> aliases;
  std::string path;
  const CatalogEntry* catalog = nullptr;
  std::string explicit_tier;         // from the name or an alias
  std::optional<ModelRole> role;     // from the config; else from the file
  uint32_t context = 0, parallel = 1;
  Duration keep_alive = Duration::Millis(5 * 60 * 1000);
  bool pinned = false, preload = false;
  std::optional<runtime::DeviceChoice> device;  // the config's `device:`
  std::optional<bool> thinking;      // the config's `thinking:`
  bool from_flag = false;            // --model FILE.gguf: ModelFlagOptions' context and parallelism
};

std::string TierOf(const std::string& name, const std::vector<std::string>& aliases) {
  if (TierRank(name) >= 0) return AsciiLower(name);
  for (const std::string& a : aliases)
    if (TierRank(a) >= 0) return AsciiLower(a);
  return "";
}

const char* CatalogTierTarget(const CatalogEntry* e) {
  if (!e) return nullptr;
  for (const Tier& t : DefaultTiers())
    if (e->name == t.target) return t.name;
  return nullptr;
}

std::string FormatParams(uint64_t p) {
  if (p >= 1'000'000'000) return fmt::format("{:.1f}B", static_cast<double>(p) / 1e9);
  return fmt::format("{}M", (p + 500'000) / 1'000'000);
}

std::string FileStem(std::string_view path) {
  std::string base = std::filesystem::path(std::string(path)).filename().string();
  if (AsciiLower(base).ends_with(".gguf")) base.resize(base.size() - 5);
  return base;
}

}  // namespace

uint64_t PhysicalMemoryBytes() {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page = sysconf(_SC_PAGE_SIZE);
  uint64_t ram = pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
  std::ifstream in("/sys/fs/cgroup/memory.max");
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    std::optional<uint64_t> limit = ParseCgroupBytes(ss.str());
    if (limit && *limit > 0 && (ram == 0 || *limit < ram)) ram = *limit;
  }
  return ram;
}

Result<MemoryBudget> ResolveMemoryBudget(MemoryConfig memory, std::string_view flag, uint64_t total_ram) {
  if (!flag.empty()) {
    Result<MemoryAmount> a = ParseMemoryAmount(flag);
    if (!a.ok()) return a.status().WithContext("--memory-budget");
    memory.budget = *a;
    QM_RETURN_IF_ERROR(memory.Validate().WithContext("--memory-budget"));
  }
  MemoryBudget b;
  b.total_ram = total_ram ? total_ram : PhysicalMemoryBytes();
  b.bytes = memory.Resolve(b.total_ram);
  if (b.bytes == 0)
    return Error(StatusCode::kInvalidArgument,
                 "memory budget: {} of {} RAM with {} reserved leaves nothing for models",
                 memory.budget.ToString(), FormatSize(b.total_ram), FormatSize(memory.reserve));
  b.description = fmt::format("{} ({}{} of {} RAM, {} reserved)", FormatSize(b.bytes), memory.budget.ToString(),
                              flag.empty() ? "" : " from --memory-budget", FormatSize(b.total_ram),
                              FormatSize(memory.reserve));
  return b;
}

ModelRole RoleFromPooling(model::PoolingType pooling) {
  switch (pooling) {
    case model::PoolingType::kNone: return ModelRole::kChat;
    case model::PoolingType::kRank: return ModelRole::kReranker;
    default: return ModelRole::kEmbedding;  // mean, cls, last
  }
}

Result<std::pair<std::string, std::string>> ParseModelFlag(std::string_view value) {
  std::string v(value);
  std::string file = v, alias;
  size_t eq = v.rfind('=');
  if (eq != std::string::npos) {
    file = v.substr(0, eq);
    alias = v.substr(eq + 1);
    if (alias.empty()) return Error(StatusCode::kInvalidArgument, "--model {}: empty name after '='", value);
  }
  if (file.empty()) return Error(StatusCode::kInvalidArgument, "--model {}: want FILE.gguf[=NAME]", value);
  if (alias.empty()) alias = FileStem(file);
  for (char c : alias) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':'))
      return Error(StatusCode::kInvalidArgument,
                   "--model {}: name \"{}\" may use letters, digits, '-', '_', '.', ':' only", value, alias);
  }
  return std::make_pair(file, alias);
}

RouterState MakeRouterState(std::span<const LoadedModelInfo> snapshot, uint64_t effective_budget,
                            const std::function<int(const std::string&)>& queue_depth) {
  RouterState s;
  uint64_t held = 0;
  for (const LoadedModelInfo& m : snapshot) {
    held += m.bytes;
    if (!m.loading && !m.pinned && m.in_use == 0) s.evictable_bytes += m.bytes;
    s.models.push_back({m.name, true, queue_depth ? queue_depth(m.name) : m.in_use});
  }
  s.free_bytes = effective_budget > held ? effective_budget - held : 0;
  return s;
}

Result<ServeSetup> BuildServeSetup(const ServeInputs& in) {
  ServeSetup out;
  Config config = in.config;
  const std::string cfg_name = config.source.empty() ? "config" : config.source;
  QM_ASSIGN_OR_RETURN(MemoryBudget budget, ResolveMemoryBudget(config.memory, in.memory_budget, in.total_ram));
  out.total_ram = budget.total_ram;
  out.budget_bytes = budget.bytes;
  if (!in.gpu_memory_budget.empty()) QM_RETURN_IF_ERROR(ApplyGpuMemoryBudgetFlag(config, in.gpu_memory_budget));
  out.manager.gpu_budget = config.memory.gpu_budget;
  out.manager.budget_bytes = out.budget_bytes;
  std::string why;
  out.models_dir = !in.models_dir.empty() ? in.models_dir
                   : !config.models_dir.empty() ? config.models_dir
                                                : DefaultModelsDir(&why);
  out.log.push_back("memory budget: " + budget.description);
  out.log.push_back(fmt::format("models dir: {}{}", out.models_dir, why.empty() ? "" : " (" + why + ")"));

  std::optional<ModelStore> store;
  auto open_store = [&]() -> Status {
    if (store) return Status::Ok();
    Result<ModelStore> s = ModelStore::Open(out.models_dir);
    if (!s.ok()) return s.status().WithContext("model store");
    store.emplace(std::move(*s));
    return Status::Ok();
  };

  std::vector<Pending> pending;
  for (size_t i = 0; i < config.models.size(); ++i) {
    const ModelConfig& m = config.models[i];
    Pending p;
    p.where = fmt::format("{}:{}: models[{}] ({})", cfg_name, m.line, i, m.name);
    p.name = m.name;
    p.aliases = m.aliases;
    p.role = m.role;
    p.context = m.context;
    p.parallel = m.parallel;
    p.keep_alive = m.keep_alive;
    p.pinned = m.pinned;
    p.preload = m.preload;
    p.device = m.device;
    p.thinking = m.thinking;
    if (!m.catalog.empty()) {
      Result<const CatalogEntry*> e = FindInCatalog(m.catalog);
      if (!e.ok()) return e.status().WithContext(p.where);
      p.catalog = *e;
      if (TierRank(m.catalog) >= 0) p.explicit_tier = AsciiLower(m.catalog);
      QM_RETURN_IF_ERROR(open_store());
      Result<StoredModel> sm = store->Find(p.catalog->name);
      if (!sm.ok()) {
        if (sm.status().code() != StatusCode::kNotFound) return sm.status().WithContext(p.where);
        return Error(StatusCode::kNotFound, "{}: {} is not downloaded (models dir {}); run `qwenmux pull {}`",
                     p.where, p.catalog->name, out.models_dir, p.catalog->name);
      }
      p.path = store->BlobPath(sm->sha256);
    } else {
      p.path = m.file;
    }
    pending.push_back(std::move(p));
  }
  for (const std::string& flag : in.extra_models) {
    QM_ASSIGN_OR_RETURN(auto fa, ParseModelFlag(flag));
    Pending p;
    p.where = fmt::format("--model {}", flag);
    p.path = fa.first;
    p.name = fa.second;
    p.keep_alive = Duration::Millis(5 * 60 * 1000);
    p.from_flag = true;
    pending.push_back(std::move(p));
  }
  if (config.models.empty() && in.extra_models.empty()) {
    // No models configured: every model in the store.
    QM_RETURN_IF_ERROR(open_store());
    QM_ASSIGN_OR_RETURN(std::vector<StoredModel> all, store->List());
    size_t skipped = 0;
    for (const StoredModel& sm : all) {
      Pending p;
      p.where = fmt::format("store model {}", sm.name);
      p.name = sm.name;
      p.aliases = sm.aliases;
      p.path = store->BlobPath(sm.sha256);
      // One bad entry (not GGUF, or not a model this build can load) must not stop the server
      // from serving the others: skip it with a warning.
      Status usable = CheckGgufFile(p.path);
      if (usable.ok()) {
        Result<gguf::File> f = gguf::File::Open(p.path);
        Result<model::ModelConfig> mc = f.ok() ? model::ReadConfig(*f) : Result<model::ModelConfig>(f.status());
        if (!mc.ok()) usable = mc.status();
      }
      if (!usable.ok()) {
        out.log.push_back(fmt::format("warning: {}: skipped: {} (remove it with `qwenmux rm {}`)", p.where,
                                      usable.ToString(), sm.name));
        ++skipped;
        continue;
      }
      Result<const CatalogEntry*> e = FindInCatalog(sm.name);
      if (e.ok()) p.catalog = *e;
      if (!sm.role.empty()) {
        if (Result<ModelRole> r = ParseModelRole(sm.role); r.ok()) p.role = *r;
      }
      pending.push_back(std::move(p));
    }
    if (pending.empty() && in.allow_no_models) {
      out.log.push_back(fmt::format("no models configured or pulled (models dir {})", out.models_dir));
    } else if (pending.empty()) {
      return Error(StatusCode::kNotFound,
                   "no models: configure `models:` in qwenmux.yaml, give --model FILE.gguf, or pull one "
                   "(`qwenmux pull qwen3-fast`) into {}{}", out.models_dir,
                   skipped ? fmt::format(" ({} unusable store entries were skipped)", skipped) : "");
    }
  }

  // Names and aliases unique across every source.
  std::set<std::string> names;
  for (const Pending& p : pending) {
    std::vector<std::string> all = p.aliases;
    all.insert(all.begin(), p.name);
    for (const std::string& n : all)
      if (!names.insert(n).second)
        return Error(StatusCode::kInvalidArgument, "{}: name or alias \"{}\" is already used", p.where, n);
  }
  // Tiers: explicit ones first; a catalog tier target only if no model claims that tier by name.
  std::set<std::string> claimed;
  for (Pending& p : pending) {
    if (p.explicit_tier.empty()) p.explicit_tier = TierOf(p.name, p.aliases);
    if (!p.explicit_tier.empty()) claimed.insert(p.explicit_tier);
  }
  for (Pending& p : pending) {
    const char* t = p.explicit_tier.empty() ? CatalogTierTarget(p.catalog) : nullptr;
    if (t && !claimed.count(t)) {
      p.explicit_tier = t;
      claimed.insert(t);
    }
  }

  for (const Pending& p : pending) {
    Result<gguf::File> file = gguf::File::Open(p.path);
    if (!file.ok()) return file.status().WithContext(p.where);
    Result<model::ModelConfig> mc = model::ReadConfig(*file);
    if (!mc.ok()) return mc.status().WithContext(fmt::format("{}: {}", p.where, p.path));
    const ModelRole role = p.role ? *p.role : RoleFromPooling(mc->pooling);

    ModelSpec spec;
    spec.name = p.name;
    spec.path = p.path;
    const uint32_t want_ctx = p.from_flag ? static_cast<uint32_t>(std::max(1, in.flag_models.n_ctx))
                              : p.context ? p.context
                                          : mc->n_ctx_train;
    spec.load.n_ctx = static_cast<int32_t>(mc->n_ctx_train > 0 ? std::min<uint32_t>(want_ctx, mc->n_ctx_train) : want_ctx);
    if (mc->n_ctx_train > 0 && want_ctx > mc->n_ctx_train) {
      out.log.push_back(fmt::format("warning: model {}: context {} ({}) is above its trained context {}: clamped to {}",
                                    p.name, want_ctx, p.from_flag ? "--ctx" : "context: in the config",
                                    mc->n_ctx_train, mc->n_ctx_train));
    }
    spec.load.n_seq = p.from_flag ? std::max(1, in.flag_models.parallel) : static_cast<int32_t>(p.parallel);
    spec.load.n_threads = in.flag_models.threads;
    spec.keep_alive = ToKeepAlive(p.keep_alive);
    spec.pinned = p.pinned;
    spec.preload = p.preload;
    spec.load.device = p.device.value_or(in.device);

    RouterCandidate c;
    c.name = p.name;
    c.aliases = p.aliases;
    c.tier = p.explicit_tier;
    if (!c.tier.empty() && c.tier != c.name &&
        std::find(c.aliases.begin(), c.aliases.end(), c.tier) == c.aliases.end())
      c.aliases.push_back(c.tier);
    if (p.catalog && p.catalog->name != c.name &&
        std::find(c.aliases.begin(), c.aliases.end(), p.catalog->name) == c.aliases.end())
      c.aliases.push_back(p.catalog->name);
    c.role = role;
    for (const gguf::TensorInfo& t : file->tensors()) c.params += t.n_elements();
    c.quantization = p.catalog ? p.catalog->quantization
                               : QuantizationFromFileName(std::filesystem::path(p.path).filename().string());
    if (p.catalog) c.label = fmt::format("{} {}", AsciiUpper(p.catalog->size_tag), p.catalog->quantization);
    MemoryEstimate est = EstimateMemory(*file, *mc, spec.load);
    c.memory_bytes = est.total();
    if (in.speed) {
      std::vector<TensorCost> costs = ModelCosts(file->tensors(), mc->n_expert, mc->n_expert_used);
      SpeedEstimate se = EstimateSpeed(costs, in.speed);
      c.decode_tok_s = se.decode_tok_s;
      c.prefill_tok_s = se.prefill_tok_s;
    }
    // The one start-up line of a model, with the figures that apply: the context and sequences it
    // loads with and the memory the manager reserves for it (what `ps` shows on the CPU; on a GPU,
    // ps shows what the backend allocated).
    out.log.push_back(fmt::format(
        "model {}{}: role={} quant={} params={} ctx={} parallel={} memory={} device={} tier={} keep_alive={} pinned={} "
        "preload={} <- {}",
        c.name, c.aliases.empty() ? "" : " (aliases: " + fmt::format("{}", fmt::join(c.aliases, ", ")) + ")",
        ModelRoleName(role), c.quantization.empty() ? "?" : c.quantization, FormatParams(c.params), spec.load.n_ctx,
        spec.load.n_seq, FormatSize(c.memory_bytes), runtime::DeviceChoiceName(spec.load.device),
        c.tier.empty() ? "-" : c.tier, FormatDuration(p.keep_alive), p.pinned, p.preload, p.path));
    ModelFacts facts;
    facts.arch = mc->arch_name;
    facts.file_bytes = file->file_size();
    struct stat st {};
    if (::stat(p.path.c_str(), &st) == 0) facts.modified_unix = st.st_mtime;
    facts.n_ctx_train = static_cast<int32_t>(mc->n_ctx_train);
    facts.n_embd = static_cast<int32_t>(mc->n_embd);
    facts.thinking = p.thinking;
    out.specs.push_back(std::move(spec));
    out.candidates.push_back(std::move(c));
    out.facts.push_back(std::move(facts));
  }

  // Fallbacks along the tier order: chat models of lower rank, highest rank first, larger first.
  for (size_t i = 0; i < out.specs.size(); ++i) {
    const RouterCandidate& c = out.candidates[i];
    if (c.role != ModelRole::kChat) continue;
    std::vector<const RouterCandidate*> lower;
    for (const RouterCandidate& o : out.candidates)
      if (o.role == ModelRole::kChat && o.rank() < c.rank()) lower.push_back(&o);
    std::stable_sort(lower.begin(), lower.end(), [](const RouterCandidate* a, const RouterCandidate* b) {
      return std::make_pair(a->rank(), a->memory_bytes) > std::make_pair(b->rank(), b->memory_bytes);
    });
    for (const RouterCandidate* o : lower) out.specs[i].fallbacks.push_back(o->name);
    if (!out.specs[i].fallbacks.empty())
      out.log.push_back(fmt::format("model {}: falls back to {}", c.name, fmt::join(out.specs[i].fallbacks, ", ")));
  }

  out.policy.default_model = config.router.default_model;
  out.policy.ttft_target_ms = config.router.ttft_target.forever ? INT64_MAX / 4 : config.router.ttft_target.ms;
  if (!out.policy.default_model.empty()) {
    bool found = AsciiLower(out.policy.default_model) == "auto";
    for (const RouterCandidate& c : out.candidates) {
      if (c.name == out.policy.default_model || c.tier == AsciiLower(out.policy.default_model)) found = true;
      for (const std::string& a : c.aliases)
        if (a == out.policy.default_model) found = true;
    }
    if (!found)
      return Error(StatusCode::kInvalidArgument, "{}: router.default: \"{}\" is not a configured model",
                   cfg_name, out.policy.default_model);
  }
  QM_RETURN_IF_ERROR(internal::AddAdapters(in, cfg_name, &out));
  out.log.push_back(fmt::format("router: default={} ttft_target={} deep_queue={}",
                                out.policy.default_model.empty() ? "auto" : out.policy.default_model,
                                FormatDuration(config.router.ttft_target), out.policy.deep_queue));
  return out;
}

}  // namespace qwenmux::orchestrator
