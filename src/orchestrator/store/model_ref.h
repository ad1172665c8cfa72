// A model argument on the command line (`qwenmux run MODEL`, inspect, bench, refcheck, tokenize,
// quantize, ask's -m...): a path, or a name the store knows (what `pull` and `tag` create:
// "qwen3:0.6b-q8_0", "qwen3-fast", "hf:REPO/FILE"). Every command that takes a model file goes
// through ResolveModelRef, so all accept the same spellings.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace qwenmux::orchestrator {

// An existing file or directory at `ref` is returned as is (a path wins over a name). Otherwise
// `ref` is looked up by name or alias in the store at `models_dir` ("" = DefaultModelsDir()) and
// its blob path is returned. Neither: kNotFound naming the argument, the store looked in, and
// `qwenmux pull` when the name is in the catalog.
Result<std::string> ResolveModelRef(std::string_view ref, const std::string& models_dir = "");

}  // namespace qwenmux::orchestrator
