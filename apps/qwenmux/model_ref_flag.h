// The model argument of every command that loads a model file (run, inspect, bench, refcheck,
// tokenize, quantize, lora synth, ask...): a path or a store name ("qwen3:0.6b-q8_0", an alias
// from `tag`), resolved by the one function orchestrator::ResolveModelRef. --models-dir picks the
// store (default $QWENMUX_HOME/models, else ~/.qwenmux/models).
#pragma once

#include <initializer_list>
#include <string>

#include <CLI/CLI.hpp>

#include "base/status.h"
#include "orchestrator/store/model_ref.h"

namespace qwenmux::apps {

inline void AddModelsDirFlag(CLI::App* cmd, std::string* dir) {
  cmd->add_option("--models-dir", *dir,
                  "Model store directory (default: $QWENMUX_HOME/models, else ~/.qwenmux/models)");
}

// The option or positional `name` for a model (a path or a store name), and --models-dir.
inline CLI::Option* AddModelRef(CLI::App* cmd, const std::string& name, std::string* ref, std::string* models_dir,
                                const std::string& what = "Model") {
  CLI::Option* o = cmd->add_option(name, *ref, what + ": a GGUF file or a store name (qwen3:0.6b-q8_0, see `qwenmux list`)");
  if (cmd->get_option_no_throw("--models-dir") == nullptr) AddModelsDirFlag(cmd, models_dir);
  return o;
}

// Replaces each non-empty *ref by the file it names (ResolveModelRef); the first failure is returned.
inline Status ResolveModelRefs(std::initializer_list<std::string*> refs, const std::string& models_dir) {
  for (std::string* r : refs) {
    if (r->empty()) continue;
    QM_ASSIGN_OR_RETURN(*r, orchestrator::ResolveModelRef(*r, models_dir));
  }
  return Status::Ok();
}

}  // namespace qwenmux::apps
