#include "orchestrator/config/yaml_walk.h"

#include <set>

#include <fmt/format.h>

namespace qwenmux::orchestrator::yaml {

Status Ctx::At(const YAML::Mark& m, std::string_view path, std::string_view msg) const {
  std::string where = m.is_null() ? file_ : fmt::format("{}:{}", file_, m.line + 1);
  if (path.empty()) return Error(StatusCode::kInvalidArgument, "{}: {}", where, msg);
  return Error(StatusCode::kInvalidArgument, "{}: {}: {}", where, path, msg);
}

std::string_view KindName(const YAML::Node& n) {
  if (n.IsMap()) return "a map";
  if (n.IsSequence()) return "a list";
  if (n.IsNull()) return "empty";
  return "a scalar";
}

Status ForEachKey(const Ctx& ctx, const YAML::Node& map, const std::string& path,
                  const std::vector<std::pair<const char*, Handler>>& handlers) {
  if (!map.IsMap()) return ctx.At(map, path, fmt::format("expected a map, got {}", KindName(map)));
  std::set<std::string> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    // Copies: it-> returns a temporary proxy, a reference into it would dangle.
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar()) return ctx.At(key, path, "keys must be plain names");
    const std::string& k = key.Scalar();
    const std::string kp = path.empty() ? k : path + "." + k;
    if (!seen.insert(k).second) return ctx.At(key, kp, "duplicate key");
    const Handler* h = nullptr;
    for (const auto& [name, fn] : handlers) {
      if (k == name) h = &fn;
    }
    if (!h) {
      std::string known;
      for (const auto& [name, fn] : handlers) known += (known.empty() ? "" : ", ") + std::string(name);
      return ctx.At(key, kp, fmt::format("unknown key (known here: {})", known));
    }
    QM_RETURN_IF_ERROR((*h)(value, kp));
  }
  return Status::Ok();
}

Result<std::string> NonEmptyScalar(const Ctx& ctx, const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar() || n.Scalar().empty()) {
    return ctx.At(n, path, fmt::format("expected a non-empty string, got {}", KindName(n)));
  }
  return n.Scalar();
}

}  // namespace qwenmux::orchestrator::yaml
