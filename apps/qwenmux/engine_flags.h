// Flags shared by the subcommands that load a model (threads, context, batch, device).
#pragma once

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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

// --lora FILE[:SCALE]: a LoRA adapter (GGUF file or PEFT directory) applied to every token, at a
// user scale on its alpha / r (default 1).
struct LoraFlag {
  std::string path;  // empty: none
  float scale = 1.0f;
};

// Splits "FILE[:SCALE]": the part after the last ':' is the scale when it parses as a number.
inline Result<LoraFlag> ParseLoraFlag(const std::string& s) {
  LoraFlag f;
  f.path = s;
  const size_t colon = s.rfind(':');
  if (colon != std::string::npos && colon + 1 < s.size()) {
    const std::string tail = s.substr(colon + 1);
    char* end = nullptr;
    const float v = std::strtof(tail.c_str(), &end);
    if (end != nullptr && *end == '\0') {
      if (!std::isfinite(v)) return Error(StatusCode::kInvalidArgument, "--lora {}: scale {} is not finite", s, tail);
      f.path = s.substr(0, colon);
      f.scale = v;
    }
  }
  if (f.path.empty()) return Error(StatusCode::kInvalidArgument, "--lora {}: no adapter path", s);
  return f;
}

inline void AddLoraFlag(CLI::App* cmd, LoraFlag* f) {
  cmd->add_option_function<std::string>(
      "--lora",
      [f](const std::string& s) {
        auto r = ParseLoraFlag(s);
        if (!r.ok()) throw CLI::ValidationError("--lora", r.status().message());
        *f = *r;
      },
      "LoRA adapter FILE[:SCALE] (GGUF adapter or PEFT directory; SCALE multiplies alpha/r, default 1)");
}

// Loads the --lora adapter into `m` (nothing when not given) and returns its id (-1: none).
// Logs the adapter's load time and size on stderr unless `quiet`; *load_seconds gets the time.
inline Result<int32_t> LoadLoraFlag(engine::Model& m, const LoraFlag& f, bool quiet = false,
                                    double* load_seconds = nullptr) {
  if (f.path.empty()) return -1;
  const auto t0 = std::chrono::steady_clock::now();
  QM_ASSIGN_OR_RETURN(const int32_t id, m.LoadAdapter(f.path));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (load_seconds != nullptr) *load_seconds = s;
  const runtime::LoraAdapter* a = m.adapter(id);
  if (!quiet) {
    fmt::print(stderr, "lora: {} ({} projections, rank {}, {:.1f} MiB, scale {}) loaded in {:.1f} ms\n", f.path,
               a->n_pairs(), a->max_rank(), static_cast<double>(a->bytes()) / (1 << 20), f.scale, s * 1e3);
  }
  return id;
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
