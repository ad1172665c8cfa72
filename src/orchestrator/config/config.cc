#include "orchestrator/config/config.h"
#include "orchestrator/config/yaml_walk.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace qwenmux::orchestrator {

namespace {

using yaml::Ctx;
using yaml::ForEachKey;
using yaml::Handler;
using yaml::KindName;


std::string Quote(const YAML::Node& n) { return n.IsScalar() ? "\"" + n.Scalar() + "\"" : "value"; }


Result<uint32_t> UintOf(const Ctx& ctx, const YAML::Node& n, const std::string& path,
                        uint32_t lo, uint32_t hi) {
  if (!n.IsScalar()) return ctx.At(n, path, fmt::format("expected a number, got {}", KindName(n)));
  const std::string& s = n.Scalar();
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi)
    return ctx.At(n, path, fmt::format("{} is not a whole number in [{}, {}]", Quote(n), lo, hi));
  return static_cast<uint32_t>(v);
}

Result<bool> BoolOf(const Ctx& ctx, const YAML::Node& n, const std::string& path) {
  if (n.IsScalar()) {
    const std::string& s = n.Scalar();
    if (s == "true" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "no" || s == "off") return false;
  }
  return ctx.At(n, path, fmt::format("{} is not true or false", Quote(n)));
}

Result<Duration> DurationOf(const Ctx& ctx, const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) return ctx.At(n, path, fmt::format("expected a duration, got {}", KindName(n)));
  Result<Duration> d = ParseDuration(n.Scalar());
  if (!d.ok()) return ctx.At(n, path, d.status().message());
  return *d;
}

// A model name or alias: no spaces or slashes (they appear in URLs and file names).
Status CheckName(const Ctx& ctx, const YAML::Node& n, const std::string& path, const std::string& s) {
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':'))
      return ctx.At(n, path, fmt::format("\"{}\": names may use letters, digits, '-', '_', '.', ':'", s));
  }
  return Status::Ok();
}

Status ParseAdapter(const Ctx& ctx, const YAML::Node& node, const std::string& path, AdapterConfig* a) {
  a->line = node.Mark().line + 1;
  QM_RETURN_IF_ERROR(ForEachKey(ctx, node, path, {
      {"name", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(a->name, yaml::NonEmptyScalar(ctx, v, p));
         if (a->name.find(':') != std::string::npos)
           return ctx.At(v, p, fmt::format("\"{}\": an adapter name has no ':' (requests say <model>:<adapter>)", a->name));
         return CheckName(ctx, v, p, a->name);
       }},
      {"file", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(a->file, yaml::NonEmptyScalar(ctx, v, p));
         return Status::Ok();
       }},
      {"scale", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(std::string s, yaml::NonEmptyScalar(ctx, v, p));
         Result<float> f = ParseLoraScale(s);
         if (!f.ok()) return ctx.At(v, p, f.status().message());
         a->scale = *f;
         return Status::Ok();
       }},
      {"preload", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(a->preload, BoolOf(ctx, v, p));
         return Status::Ok();
       }},
  }));
  if (a->name.empty()) return ctx.At(node, path + ".name", "required");
  if (a->file.empty()) return ctx.At(node, path + ".file", "required (a GGUF adapter or a PEFT directory)");
  return Status::Ok();
}

Status ParseModel(const Ctx& ctx, const YAML::Node& node, const std::string& path, ModelConfig* m) {
  m->line = node.Mark().line + 1;
  QM_RETURN_IF_ERROR(ForEachKey(ctx, node, path, {
      {"name", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(m->name, yaml::NonEmptyScalar(ctx, v, p));
         return CheckName(ctx, v, p, m->name);
       }},
      {"catalog", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(m->catalog, yaml::NonEmptyScalar(ctx, v, p));
         Result<const CatalogEntry*> e = FindInCatalog(m->catalog);
         if (!e.ok()) return ctx.At(v, p, e.status().message());
         m->role = (*e)->role;  // a later `role:` must agree (checked below)
         return Status::Ok();
       }},
      {"file", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(m->file, yaml::NonEmptyScalar(ctx, v, p));
         return Status::Ok();
       }},
      {"role", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(std::string s, yaml::NonEmptyScalar(ctx, v, p));
         Result<ModelRole> r = ParseModelRole(s);
         if (!r.ok()) return ctx.At(v, p, r.status().message());
         if (!m->catalog.empty() && *r != m->role)
           return ctx.At(v, p, fmt::format("\"{}\" contradicts the catalog model's role {}", s,
                                           ModelRoleName(m->role)));
         m->role = *r;
         return Status::Ok();
       }},
      {"aliases", [&](const YAML::Node& v, const std::string& p) -> Status {
         if (!v.IsSequence()) return ctx.At(v, p, fmt::format("expected a list, got {}", KindName(v)));
         for (size_t i = 0; i < v.size(); ++i) {
           std::string ip = fmt::format("{}[{}]", p, i);
           QM_ASSIGN_OR_RETURN(std::string a, yaml::NonEmptyScalar(ctx, v[i], ip));
           QM_RETURN_IF_ERROR(CheckName(ctx, v[i], ip, a));
           m->aliases.push_back(std::move(a));
         }
         return Status::Ok();
       }},
      {"context", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(m->context, UintOf(ctx, v, p, 1, kMaxContextTokens));
         return Status::Ok();
       }},
      {"parallel", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(m->parallel, UintOf(ctx, v, p, 1, kMaxParallel));
         return Status::Ok();
       }},
      {"keep_alive", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(m->keep_alive, DurationOf(ctx, v, p));
         return Status::Ok();
       }},
      {"pinned", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(m->pinned, BoolOf(ctx, v, p));
         return Status::Ok();
       }},
      {"preload", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(m->preload, BoolOf(ctx, v, p));
         return Status::Ok();
       }},
      {"thinking", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(bool t, BoolOf(ctx, v, p));
         m->thinking = t;
         return Status::Ok();
       }},
      {"device", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(std::string s, yaml::NonEmptyScalar(ctx, v, p));
         Result<runtime::DeviceChoice> d = runtime::ParseDeviceChoice(s);
         if (!d.ok()) return ctx.At(v, p, d.status().message());
         m->device = *d;
         return Status::Ok();
       }},
      {"adapters", [&](const YAML::Node& v, const std::string& p) -> Status {
         if (!v.IsSequence()) return ctx.At(v, p, fmt::format("expected a list, got {}", KindName(v)));
         for (size_t i = 0; i < v.size(); ++i) {
           AdapterConfig a;
           const std::string ip = fmt::format("{}[{}]", p, i);
           QM_RETURN_IF_ERROR(ParseAdapter(ctx, v[i], ip, &a));
           for (const AdapterConfig& b : m->adapters) {
             if (b.name == a.name) return ctx.At(v[i], ip + ".name", fmt::format("\"{}\" is used twice", a.name));
           }
           m->adapters.push_back(std::move(a));
         }
         return Status::Ok();
       }},
  }));
  if (m->catalog.empty() == m->file.empty())
    return ctx.At(node, path, "give exactly one of `catalog:` (e.g. qwen3:8b-q8_0) or `file:` (a .gguf path)");
  if (m->name.empty()) {
    if (m->catalog.empty()) return ctx.At(node, path + ".name", "required for a model given by `file:`");
    m->name = m->catalog;
  }
  return Status::Ok();
}

Status ParseMemory(const Ctx& ctx, const YAML::Node& node, const std::string& path, MemoryConfig* m) {
  return ForEachKey(ctx, node, path, {
      {"budget", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(std::string s, yaml::NonEmptyScalar(ctx, v, p));
         Result<MemoryAmount> a = ParseMemoryAmount(s);
         if (!a.ok()) return ctx.At(v, p, a.status().message());
         m->budget = *a;
         if (Status st = m->Validate(); !st.ok()) return ctx.At(v, p, st.message());
         return Status::Ok();
       }},
      {"reserve", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(std::string s, yaml::NonEmptyScalar(ctx, v, p));
         Result<uint64_t> b = ParseSize(s);
         if (!b.ok()) return ctx.At(v, p, b.status().message());
         m->reserve = *b;
         return Status::Ok();
       }},
      {"gpu_budget", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(std::string s, yaml::NonEmptyScalar(ctx, v, p));
         Result<MemoryAmount> a = ParseMemoryAmount(s);
         if (!a.ok()) return ctx.At(v, p, a.status().message());
         m->gpu_budget = *a;
         return Status::Ok();
       }},
  });
}

// One entry of `backends:` (backend_config.h).
Status ParseBackend(const Ctx& ctx, const YAML::Node& node, const std::string& path, BackendConfig* b) {
  b->line = node.Mark().line + 1;
  bool has_url = false;
  QM_RETURN_IF_ERROR(ForEachKey(ctx, node, path, {
      {"name", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(b->name, yaml::NonEmptyScalar(ctx, v, p));
         if (Status s = CheckBackendName(b->name); !s.ok()) return ctx.At(v, p, s.message());
         return Status::Ok();
       }},
      {"url", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(std::string u, yaml::NonEmptyScalar(ctx, v, p));
         Result<std::string> n = NormalizeBackendUrl(u);
         if (!n.ok()) return ctx.At(v, p, n.status().message());
         b->url = *n;
         has_url = true;
         return Status::Ok();
       }},
      {"dialect", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(std::string s, yaml::NonEmptyScalar(ctx, v, p));
         Result<BackendDialect> d = ParseBackendDialect(s);
         if (!d.ok()) return ctx.At(v, p, d.status().message());
         b->dialect = *d;
         return Status::Ok();
       }},
      {"api_key_env", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(b->api_key_env, yaml::NonEmptyScalar(ctx, v, p));
         return Status::Ok();
       }},
      {"models", [&](const YAML::Node& v, const std::string& p) -> Status {
         if (v.IsScalar() && v.Scalar() == "all") return Status::Ok();
         if (!v.IsSequence() || v.size() == 0)
           return ctx.At(v, p, "expected `all` or a non-empty list of the backend's model names");
         for (size_t i = 0; i < v.size(); ++i) {
           QM_ASSIGN_OR_RETURN(std::string m, yaml::NonEmptyScalar(ctx, v[i], fmt::format("{}[{}]", p, i)));
           b->models.push_back(std::move(m));
         }
         return Status::Ok();
       }},
      {"timeout", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(b->timeout, DurationOf(ctx, v, p));
         if (b->timeout.forever || b->timeout.ms <= 0) return ctx.At(v, p, "must be a positive duration (e.g. 60s)");
         return Status::Ok();
       }},
      {"tier", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(b->tier, yaml::NonEmptyScalar(ctx, v, p));  // checked against the tiers by serve
         return Status::Ok();
       }},
      {"role", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(b->role, yaml::NonEmptyScalar(ctx, v, p));
         if (b->role != "chat" && b->role != "embedding") return ctx.At(v, p, "expected chat or embedding");
         return Status::Ok();
       }},
      {"max_concurrent", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(std::string n, yaml::NonEmptyScalar(ctx, v, p));
         char* end = nullptr;
         const long x = std::strtol(n.c_str(), &end, 10);
         if (*end != '\0' || x < 0 || x > 100000) return ctx.At(v, p, "expected a whole number >= 0 (0: no limit)");
         b->max_concurrent = static_cast<int>(x);
         return Status::Ok();
       }},
  }));
  if (b->name.empty()) return ctx.At(node, path + ".name", "required");
  if (!has_url) return ctx.At(node, path + ".url", "required (e.g. http://127.0.0.1:11434)");
  return Status::Ok();
}

Status ParseRouter(const Ctx& ctx, const YAML::Node& node, const std::string& path, RouterConfig* r) {
  return ForEachKey(ctx, node, path, {
      {"default", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(r->default_model, yaml::NonEmptyScalar(ctx, v, p));
         return Status::Ok();
       }},
      {"ttft_target", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(r->ttft_target, DurationOf(ctx, v, p));
         return Status::Ok();
       }},
      {"max_queue_wait", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(r->max_queue_wait, DurationOf(ctx, v, p));
         return Status::Ok();
       }},
  });
}

// A model reference in router/pipelines: a configured name or alias; with no `models:` section
// at all, a catalog name or tier (the manager then uses the catalog defaults).
Status CheckModelRef(const Ctx& ctx, const Config& c, const YAML::Node& n, const std::string& path,
                     const std::string& ref) {
  if (c.FindModel(ref) || c.FindAdapter(ref)) return Status::Ok();
  if (c.models.empty() && FindInCatalog(ref).ok()) return Status::Ok();
  std::string known;
  for (const ModelConfig& m : c.models) known += (known.empty() ? "" : ", ") + m.name;
  return ctx.At(n, path, fmt::format("\"{}\" is not a configured model{}", ref,
                                     known.empty() ? " or catalog name" : " (configured: " + known + ")"));
}

Result<Config> ParseRoot(const Ctx& ctx, const YAML::Node& root, std::string_view file_name) {
  Config c;
  c.source = std::string(file_name);
  if (root.IsNull()) return c;  // an empty file: all defaults
  std::vector<std::pair<YAML::Node, std::string>> refs;  // (node, path) checked at the end
  QM_RETURN_IF_ERROR(ForEachKey(ctx, root, "", {
      {"models_dir", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_ASSIGN_OR_RETURN(c.models_dir, yaml::NonEmptyScalar(ctx, v, p));
         return Status::Ok();
       }},
      {"memory", [&](const YAML::Node& v, const std::string& p) -> Status {
         return ParseMemory(ctx, v, p, &c.memory);
       }},
      {"models", [&](const YAML::Node& v, const std::string& p) -> Status {
         if (!v.IsSequence()) return ctx.At(v, p, fmt::format("expected a list, got {}", KindName(v)));
         for (size_t i = 0; i < v.size(); ++i) {
           ModelConfig m;
           QM_RETURN_IF_ERROR(ParseModel(ctx, v[i], fmt::format("{}[{}]", p, i), &m));
           c.models.push_back(std::move(m));
         }
         return Status::Ok();
       }},
      {"router", [&](const YAML::Node& v, const std::string& p) -> Status {
         QM_RETURN_IF_ERROR(ParseRouter(ctx, v, p, &c.router));
         if (v["default"]) refs.emplace_back(v["default"], p + ".default");
         return Status::Ok();
       }},
      {"backends", [&](const YAML::Node& v, const std::string& p) -> Status {
         if (!v.IsSequence()) return ctx.At(v, p, fmt::format("expected a list, got {}", KindName(v)));
         for (size_t i = 0; i < v.size(); ++i) {
           BackendConfig b;
           const std::string ip = fmt::format("{}[{}]", p, i);
           QM_RETURN_IF_ERROR(ParseBackend(ctx, v[i], ip, &b));
           for (const BackendConfig& o : c.backends) {
             if (o.name == b.name) return ctx.At(v[i], ip + ".name", fmt::format("\"{}\" is used twice", b.name));
           }
           c.backends.push_back(std::move(b));
         }
         return Status::Ok();
       }},
      {"pipelines", [&](const YAML::Node& v, const std::string& p) -> Status {
         if (!v.IsMap()) return ctx.At(v, p, fmt::format("expected a map, got {}", KindName(v)));
         for (auto it = v.begin(); it != v.end(); ++it) {
           const YAML::Node key = it->first;  // copies, not references into the iterator's proxy
           const YAML::Node stages = it->second;
           PipelineConfig pc;
           QM_ASSIGN_OR_RETURN(pc.name, yaml::NonEmptyScalar(ctx, key, p));
           std::string pp = p + "." + pc.name;
           pc.line = key.Mark().line + 1;
           for (const PipelineConfig& other : c.pipelines)
             if (other.name == pc.name) return ctx.At(key, pp, "duplicate key");
           if (!stages.IsMap() || stages.size() == 0)
             return ctx.At(stages, pp, "expected a map of stage: model");
           std::set<std::string> seen;
           for (auto st = stages.begin(); st != stages.end(); ++st) {
             const YAML::Node skey = st->first;
             const YAML::Node sval = st->second;
             QM_ASSIGN_OR_RETURN(std::string stage, yaml::NonEmptyScalar(ctx, skey, pp));
             std::string sp = pp + "." + stage;
             if (!seen.insert(stage).second) return ctx.At(skey, sp, "duplicate key");
             QM_ASSIGN_OR_RETURN(std::string model, yaml::NonEmptyScalar(ctx, sval, sp));
             refs.emplace_back(sval, sp);
             pc.stages.emplace_back(std::move(stage), std::move(model));
           }
           c.pipelines.push_back(std::move(pc));
         }
         return Status::Ok();
       }},
  }));
  // Names and aliases are unique across models.
  std::set<std::string> names;
  for (size_t i = 0; i < c.models.size(); ++i) {
    const ModelConfig& m = c.models[i];
    YAML::Mark mark;
    mark.line = m.line - 1;
    std::vector<std::string> all = m.aliases;
    all.insert(all.begin(), m.name);
    for (const std::string& n : all) {
      if (!names.insert(n).second)
        return ctx.At(mark, fmt::format("models[{}]", i),
                      fmt::format("name or alias \"{}\" is used twice", n));
    }
  }
  // "<model>:<adapter>" must not also be a model's name or alias (requests could not tell them apart).
  for (size_t i = 0; i < c.models.size(); ++i) {
    for (const AdapterConfig& a : c.models[i].adapters) {
      const std::string full = c.models[i].name + ":" + a.name;
      if (names.count(full)) {
        YAML::Mark mark;
        mark.line = a.line - 1;
        return ctx.At(mark, fmt::format("models[{}].adapters", i),
                      fmt::format("adapter \"{}\" clashes with the model name or alias \"{}\"", a.name, full));
      }
    }
  }
  for (const auto& [node, path] : refs) {
    QM_RETURN_IF_ERROR(CheckModelRef(ctx, c, node, path, node.Scalar()));
  }
  return c;
}

}  // namespace

Status MemoryConfig::Validate() const {
  if (!budget.is_percent && budget.bytes < kMinBudgetBytes)
    return Error(StatusCode::kInvalidArgument,
                 "memory budget {} is below the minimum of {} (a size such as 24GiB, or a share of RAM "
                 "such as 75%)", budget.ToString(), FormatSize(kMinBudgetBytes));
  return Status::Ok();
}

const ModelConfig* Config::FindModel(std::string_view name) const {
  for (const ModelConfig& m : models) {
    if (m.name == name) return &m;
    for (const std::string& a : m.aliases)
      if (a == name) return &m;
  }
  return nullptr;
}

const AdapterConfig* Config::FindAdapter(std::string_view name) const {
  if (FindModel(name)) return nullptr;
  const size_t colon = name.rfind(':');
  if (colon == std::string_view::npos) return nullptr;
  const ModelConfig* m = FindModel(name.substr(0, colon));
  if (!m) return nullptr;
  for (const AdapterConfig& a : m->adapters) {
    if (a.name == name.substr(colon + 1)) return &a;
  }
  return nullptr;
}

Result<float> ParseLoraScale(std::string_view text) {
  float v = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || !std::isfinite(v))
    return Error(StatusCode::kInvalidArgument, "lora scale \"{}\" is not a finite number", text);
  return v;
}

Result<Config> ParseConfig(std::string_view yaml_text, std::string_view file_name) {
  Ctx ctx{std::string(file_name)};
  try {
    YAML::Node root = YAML::Load(std::string(yaml_text));
    return ParseRoot(ctx, root, file_name);
  } catch (const YAML::Exception& e) {
    return ctx.At(e.mark, "", fmt::format("YAML syntax error: {}", e.msg));
  } catch (const std::exception& e) {
    return Error(StatusCode::kInvalidArgument, "{}: {}", file_name, e.what());
  }
}

Result<Config> LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(StatusCode::kNotFound, "config: cannot open {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Error(StatusCode::kIo, "config: cannot read {}", path);
  return ParseConfig(ss.str(), path);
}

Status ApplyGpuMemoryBudgetFlag(Config& config, std::string_view value) {
  Result<MemoryAmount> a = ParseMemoryAmount(value);
  if (!a.ok()) return a.status().WithContext("--gpu-memory-budget");
  config.memory.gpu_budget = *a;
  return Status::Ok();
}

}  // namespace qwenmux::orchestrator
