#include "pipeline/library.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace qwenmux::pipeline {

namespace fs = std::filesystem;

namespace {

std::string Normal(std::string_view s) {
  std::string n(s);
  std::replace(n.begin(), n.end(), '_', '-');
  return n;
}

bool PlainName(std::string_view s) {
  if (s.empty() || s.size() > 128 || s.front() == '.') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
  });
}

}  // namespace

std::vector<PipelineFileInfo> ListPipelines(const std::vector<std::string>& dirs) {
  std::vector<PipelineFileInfo> out;
  for (const std::string& dir : dirs) {
    std::error_code ec;
    std::vector<fs::path> files;
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
      const fs::path& p = it->path();
      if ((p.extension() == ".yaml" || p.extension() == ".yml") && it->is_regular_file(ec)) files.push_back(p);
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& p : files) {
      PipelineFileInfo info;
      info.path = p.string();
      auto def = LoadPipeline(info.path);
      if (def.ok()) {
        info.name = def->name;
        info.description = def->description;
      } else {
        info.name = p.stem().string();
        info.error = def.status().message();
      }
      out.push_back(std::move(info));
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

Result<PipelineDef> FindPipeline(std::string_view name, const std::vector<std::string>& dirs) {
  if (!PlainName(name)) {
    return Error(StatusCode::kInvalidArgument, "pipeline \"{}\": a pipeline name is letters, digits, '-', '_' and '.' "
                 "(a definition file is found by name in the pipeline directories)", name);
  }
  const std::string want = Normal(name);
  std::string known;
  for (const PipelineFileInfo& f : ListPipelines(dirs)) {
    if (Normal(f.name) == want || Normal(fs::path(f.path).stem().string()) == want) {
      if (!f.error.empty()) return Error(StatusCode::kInvalidArgument, "{}", f.error);
      return LoadPipeline(f.path);
    }
    known += (known.empty() ? "" : ", ") + f.name;
  }
  if (dirs.empty()) {
    return Error(StatusCode::kNotFound, "pipeline \"{}\" not found: no pipeline directory is configured "
                 "(qwenmux serve --pipelines-dir DIR)", name);
  }
  // Where it looked, absolute (a relative default such as examples/pipelines depends on the
  // working directory), and which of those directories do not exist.
  std::string where;
  for (const std::string& d : dirs) {
    std::error_code ec;
    const fs::path abs = fs::absolute(d, ec);
    where += (where.empty() ? "" : ", ") + (ec ? d : abs.lexically_normal().string());
    if (!fs::is_directory(d, ec)) where += " (no such directory)";
  }
  return Error(StatusCode::kNotFound,
               "pipeline \"{}\" not found in {}; available: {} (give a YAML file's path, or --pipelines-dir DIR)", name,
               where, known.empty() ? "(none)" : known);
}

}  // namespace qwenmux::pipeline
