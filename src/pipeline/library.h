// Named pipelines: definition files (*.yaml, *.yml) in pipeline directories (examples/pipelines,
// or a directory given to `qwenmux serve --pipelines-dir` / `qwenmux pipeline run`). A name
// matches a file whose `name:` key or file stem equals it, '-' and '_' counting as the same
// ("document_processing" finds document-processing.yaml), so a pipeline named in qwenmux.yaml's
// `pipelines:` section (stage -> model overrides) finds its definition.
//
// Thread-safety: pure functions (they read the directories on each call).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "pipeline/definition.h"

namespace qwenmux::pipeline {

struct PipelineFileInfo {
  std::string name;         // the definition's name
  std::string path;
  std::string description;
  std::string error;        // the parse error of a broken file (name is then the file stem)
};

// Every definition file in `dirs` (not recursive), sorted by name.
std::vector<PipelineFileInfo> ListPipelines(const std::vector<std::string>& dirs);

// The definition called `name`. kInvalidArgument for a name that is not a plain name (letters,
// digits, '-', '_', '.'; no path), kNotFound listing the available ones, or the file's parse
// error.
Result<PipelineDef> FindPipeline(std::string_view name, const std::vector<std::string>& dirs);

}  // namespace qwenmux::pipeline
