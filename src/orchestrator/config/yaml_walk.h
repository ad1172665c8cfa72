// Shared walking of YAML documents with errors of the form "file:line: key.path: message", for
// qwenmux.yaml and the pipeline definitions. Unknown and repeated keys are errors.
//
// Thread-safety: plain functions and an immutable context.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "base/status.h"

namespace qwenmux::orchestrator::yaml {

// Error helper: "file:line: path: message" (kInvalidArgument).
class Ctx {
 public:
  explicit Ctx(std::string file) : file_(std::move(file)) {}
  Status At(const YAML::Node& n, std::string_view path, std::string_view msg) const { return At(n.Mark(), path, msg); }
  Status At(const YAML::Mark& m, std::string_view path, std::string_view msg) const;

 private:
  std::string file_;
};

// "a map", "a list", "empty" or "a scalar".
std::string_view KindName(const YAML::Node& n);

// Walks a map: every key must be one of the handlers' (the error lists the known ones), none
// repeated; each handler gets the value and its key path ("parent.key").
using Handler = std::function<Status(const YAML::Node& value, const std::string& path)>;
Status ForEachKey(const Ctx& ctx, const YAML::Node& map, const std::string& path,
                  const std::vector<std::pair<const char*, Handler>>& handlers);

// A non-empty scalar string.
Result<std::string> NonEmptyScalar(const Ctx& ctx, const YAML::Node& n, const std::string& path);

}  // namespace qwenmux::orchestrator::yaml
