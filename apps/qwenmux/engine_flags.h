// Flags shared by the subcommands that load a model (threads, context, batch).
#pragma once

#include <CLI/CLI.hpp>

#include "engine/engine.h"
#include "orchestrator/config/config.h"

namespace qwenmux::apps {

inline void AddLoadFlags(CLI::App* cmd, engine::LoadOptions* o) {
  cmd->add_option("-t,--threads", o->n_threads, "Worker threads (0: all cores)")->capture_default_str();
  cmd->add_option("-c,--ctx", o->n_ctx, "Context size (KV-cache positions per sequence)")
      ->capture_default_str()
      ->check(CLI::Range(int32_t{1}, static_cast<int32_t>(orchestrator::kMaxContextTokens)));
  cmd->add_option("-b,--batch", o->n_batch, "Prompt tokens per forward pass (prefill chunk)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
}

}  // namespace qwenmux::apps
