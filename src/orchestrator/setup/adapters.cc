// LoRA adapters of the served models (setup.h): the config's `adapters:` and serve's --adapter
// flags become the model manager's AdapterSpecs, each checked against its base at startup so that
// a bad file stops the server with an error naming it.
#include <cctype>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "engine/lora.h"
#include "model/config.h"
#include "orchestrator/setup/setup.h"

namespace qwenmux::orchestrator {

Result<AdapterFlag> ParseAdapterFlag(std::string_view value) {
  const auto bad = [&](std::string_view why) {
    return Error(StatusCode::kInvalidArgument, "--adapter {}: {} (want NAME=FILE[@BASE][:SCALE])", value, why);
  };
  const size_t eq = value.find('=');
  if (eq == std::string_view::npos) return bad("no '='");
  AdapterFlag f;
  f.name = std::string(value.substr(0, eq));
  std::string_view rest = value.substr(eq + 1);
  if (f.name.empty()) return bad("empty NAME");
  for (char c : f.name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return bad(fmt::format("name \"{}\" may use letters, digits, '-', '_', '.' only", f.name));
  }
  if (const size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    const std::string_view tail = rest.substr(colon + 1);
    if (Result<float> s = ParseLoraScale(tail); s.ok()) {
      f.scale = *s;
      rest = rest.substr(0, colon);
    } else if (rest.find('@') == std::string_view::npos || colon < rest.rfind('@')) {
      return bad(s.status().message());  // FILE:junk (no base to own the ':')
    }
  }
  if (const size_t at = rest.rfind('@'); at != std::string_view::npos) {
    f.base = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
    if (f.base.empty()) return bad("empty BASE after '@'");
  }
  f.file = std::string(rest);
  if (f.file.empty()) return bad("empty FILE");
  return f;
}

namespace internal {

namespace {

// The candidate index called `name` (its name or an alias), or -1.
int FindCandidate(const ServeSetup& out, const std::string& name) {
  for (size_t i = 0; i < out.candidates.size(); ++i) {
    const RouterCandidate& c = out.candidates[i];
    if (c.name == name) return static_cast<int>(i);
    for (const std::string& a : c.aliases)
      if (a == name) return static_cast<int>(i);
  }
  return -1;
}

// Reads the adapter and binds it to its base's header (the weights are not read): the errors a
// request would otherwise meet on first use, at startup, naming the file.
Status CheckAdapter(const AdapterSpec& spec, const std::string& base_path) {
  Result<gguf::File> base = gguf::File::Open(base_path);
  if (!base.ok()) return base.status();
  Result<model::ModelConfig> mc = model::ReadConfig(*base);
  if (!mc.ok()) return mc.status();
  Result<engine::LoraTensors> t = engine::ReadLora(spec.path);
  if (!t.ok()) return t.status().WithContext(spec.path);
  Result<std::unique_ptr<runtime::LoraAdapter>> a = engine::BindLora(std::move(t).value(), *base, *mc);
  if (!a.ok()) return a.status().WithContext(fmt::format("{} does not fit model {} ({})", spec.path, spec.base, base_path));
  return Status::Ok();
}

}  // namespace

Status AddAdapters(const ServeInputs& in, const std::string& cfg_name, ServeSetup* out) {
  std::vector<std::pair<AdapterSpec, std::string>> all;  // (spec, where)
  for (size_t i = 0; i < in.config.models.size(); ++i) {
    const ModelConfig& m = in.config.models[i];
    for (size_t j = 0; j < m.adapters.size(); ++j) {
      const AdapterConfig& a = m.adapters[j];
      AdapterSpec s{a.name, m.name, a.file, a.scale, a.preload};
      all.emplace_back(std::move(s), fmt::format("{}:{}: models[{}].adapters[{}] ({})", cfg_name, a.line, i, j, a.name));
    }
  }
  for (const std::string& flag : in.extra_adapters) {
    QM_ASSIGN_OR_RETURN(AdapterFlag f, ParseAdapterFlag(flag));
    AdapterSpec s{f.name, f.base, f.file, f.scale.value_or(1.0f), false};
    const std::string where = fmt::format("--adapter {}", flag);
    if (s.base.empty()) {
      std::vector<std::string> chat;
      for (const RouterCandidate& c : out->candidates)
        if (c.role == ModelRole::kChat) chat.push_back(c.name);
      if (chat.size() != 1) {
        return Error(StatusCode::kInvalidArgument, "{}: name the base model with @BASE ({} chat models are served: {})",
                     where, chat.size(), chat.empty() ? "none" : fmt::format("{}", fmt::join(chat, ", ")));
      }
      s.base = chat[0];
    }
    all.emplace_back(std::move(s), where);
  }
  std::set<std::string> full_names;
  for (auto& [spec, where] : all) {
    const int base = FindCandidate(*out, spec.base);
    if (base < 0) return Error(StatusCode::kNotFound, "{}: base model \"{}\" is not served", where, spec.base);
    spec.base = out->candidates[static_cast<size_t>(base)].name;  // an alias names its model
    if (out->candidates[static_cast<size_t>(base)].role != ModelRole::kChat) {
      return Error(StatusCode::kInvalidArgument, "{}: base model \"{}\" is not a chat model", where, spec.base);
    }
    const std::string full = spec.base + ":" + spec.name;
    // "<base>:<name>" must not be a model's name or alias: requests could not tell them apart.
    if (FindCandidate(*out, full) >= 0) {
      return Error(StatusCode::kInvalidArgument, "{}: adapter \"{}\" clashes with a model name or alias", where, full);
    }
    if (!full_names.insert(full).second) {
      return Error(StatusCode::kInvalidArgument, "{}: adapter \"{}\" is declared twice", where, full);
    }
    Status ok = CheckAdapter(spec, out->specs[static_cast<size_t>(base)].path);
    if (!ok.ok()) return ok.WithContext(where);
    out->log.push_back(fmt::format("adapter {}: {} scale={} preload={}", full, spec.path, spec.scale, spec.preload));
    out->adapters.push_back(std::move(spec));
  }
  return Status::Ok();
}

}  // namespace internal

}  // namespace qwenmux::orchestrator
