// Flags shared by the subcommands that load a model (threads, context, batch, device).
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "engine/engine.h"
#include "orchestrator/config/config.h"
#include "runtime/device_select.h"

namespace qwenmux::apps {

// --device cpu|cuda|auto and --device-index N, parsed by runtime::ParseDeviceChoice (the one
// parser; the config file's `device:` uses it too). Default: auto.
inline void AddDeviceFlags(CLI::App* cmd, runtime::DeviceChoice* device, int* index) {
  cmd->add_option_function<std::string>(
         "--device",
         [device](const std::string& s) {
           auto r = runtime::ParseDeviceChoice(s);
           if (!r.ok()) throw CLI::ValidationError("--device", r.status().message());
           *device = *r;
         },
         "Where models run: cpu, cuda, or auto (cuda when a usable GPU is present)")
      ->default_str(std::string(runtime::DeviceChoiceName(*device)));
  cmd->add_option("--device-index", *index, "Which GPU (cuda:N)")->capture_default_str()->check(CLI::NonNegativeNumber);
}

inline void AddLoadFlags(CLI::App* cmd, engine::LoadOptions* o) {
  cmd->add_option("-t,--threads", o->n_threads, "Worker threads (0: all cores)")->capture_default_str();
  cmd->add_option("-c,--ctx", o->n_ctx, "Context size (KV-cache positions per sequence)")
      ->capture_default_str()
      ->check(CLI::Range(int32_t{1}, static_cast<int32_t>(orchestrator::kMaxContextTokens)));
  cmd->add_option("-b,--batch", o->n_batch, "Prompt tokens per forward pass (prefill chunk)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  AddDeviceFlags(cmd, &o->device, &o->device_index);
}

// Resolves o->device for a command that loads models itself (not through the model manager):
// auto becomes cpu or cuda, logged on stderr with the reason; cuda without a usable GPU is an
// error naming why. Afterwards o->device is kCpu or kCuda. With `why`, the reason goes there
// instead of stderr (bench --json puts it in its JSON).
inline Status ResolveLoadDevice(engine::LoadOptions* o, std::string* why = nullptr) {
  QM_ASSIGN_OR_RETURN(runtime::DeviceSelection sel, runtime::SelectDeviceNow(o->device, o->device_index));
  if (why != nullptr) {
    *why = sel.why;
  } else if (o->device != runtime::DeviceChoice::kCpu) {
    fmt::print(stderr, "device: {}\n", sel.why);
  }
  o->device = sel.device == runtime::Device::kCuda ? runtime::DeviceChoice::kCuda : runtime::DeviceChoice::kCpu;
  return Status::Ok();
}

}  // namespace qwenmux::apps
