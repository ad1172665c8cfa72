#include "orchestrator/config/backend_config.h"

#include <cctype>
#include <set>

#include <fmt/format.h>

namespace qwenmux::orchestrator {

const char* BackendDialectName(BackendDialect d) { return d == BackendDialect::kOllama ? "ollama" : "openai"; }

Result<BackendDialect> ParseBackendDialect(std::string_view text) {
  if (text == "openai") return BackendDialect::kOpenAi;
  if (text == "ollama") return BackendDialect::kOllama;
  return Error(StatusCode::kInvalidArgument, "backend dialect \"{}\": expected openai or ollama", text);
}

Status CheckBackendName(std::string_view name) {
  if (name.empty()) return Error(StatusCode::kInvalidArgument, "backend name is empty");
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return Error(StatusCode::kInvalidArgument,
                   "backend name \"{}\": names may use letters, digits, '-', '_', '.' (requests say NAME/MODEL)", name);
  }
  return Status::Ok();
}

Result<std::string> NormalizeBackendUrl(std::string_view url) {
  std::string_view rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    rest = url.substr(8);
  } else {
    return Error(StatusCode::kInvalidArgument, "backend URL \"{}\": expected http://HOST[:PORT][/PATH] or https://...",
                 url);
  }
  const size_t slash = rest.find('/');
  const std::string_view host = rest.substr(0, slash);
  if (host.empty() || host.starts_with(':'))
    return Error(StatusCode::kInvalidArgument, "backend URL \"{}\": no host", url);
  for (char c : url) {
    if (c == '?' || c == '#' || c == '@' || std::isspace(static_cast<unsigned char>(c)) ||
        static_cast<unsigned char>(c) < 0x20)
      return Error(StatusCode::kInvalidArgument,
                   "backend URL \"{}\": no query, fragment, user info or spaces (the base URL only)", url);
  }
  if (const size_t colon = host.rfind(':'); colon != std::string_view::npos && host.find(']') == std::string_view::npos) {
    const std::string_view port = host.substr(colon + 1);
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
        std::stoi(std::string(port)) < 1 || std::stoi(std::string(port)) > 65535)
      return Error(StatusCode::kInvalidArgument, "backend URL \"{}\": port \"{}\" is not in [1, 65535]", url, port);
  }
  std::string out(url);
  while (out.ends_with('/')) out.pop_back();
  return out;
}

Result<BackendConfig> ParseBackendFlag(std::string_view flag) {
  const size_t eq = flag.find('=');
  if (eq == std::string_view::npos)
    return Error(StatusCode::kInvalidArgument, "--backend \"{}\": expected NAME=URL[,openai|ollama]", flag);
  BackendConfig b;
  b.name = std::string(flag.substr(0, eq));
  std::string_view url = flag.substr(eq + 1);
  if (const size_t comma = url.rfind(','); comma != std::string_view::npos) {
    Result<BackendDialect> d = ParseBackendDialect(url.substr(comma + 1));
    if (!d.ok()) return d.status().WithContext(fmt::format("--backend \"{}\"", flag));
    b.dialect = *d;
    url = url.substr(0, comma);
  }
  if (Status s = CheckBackendName(b.name); !s.ok()) return s.WithContext(fmt::format("--backend \"{}\"", flag));
  Result<std::string> u = NormalizeBackendUrl(url);
  if (!u.ok()) return u.status().WithContext(fmt::format("--backend \"{}\"", flag));
  b.url = *u;
  return b;
}

Status CheckBackendList(const std::vector<BackendConfig>& backends) {
  std::set<std::string> names;
  for (const BackendConfig& b : backends) {
    if (!names.insert(b.name).second)
      return Error(StatusCode::kInvalidArgument, "backend \"{}\" is defined twice (qwenmux.yaml backends: or --backend)",
                   b.name);
  }
  return Status::Ok();
}

const BackendConfig* BackendOfModel(const std::vector<BackendConfig>& backends, std::string_view ref) {
  const size_t slash = ref.find('/');
  if (slash == std::string_view::npos) return nullptr;
  for (const BackendConfig& b : backends) {
    if (b.name == ref.substr(0, slash)) return &b;
  }
  return nullptr;
}

}  // namespace qwenmux::orchestrator
