// Durations and byte sizes as written in qwenmux.yaml and on the command line.
//
//   durations: "0" (unload at once), "-1" (forever), "250ms", "30s", "5m", "1h", "1h30m", "2d"
//   sizes:     "1024", "512K"/"512KiB"/"512KB", "24G"/"24GiB"/"24GB", "1.5T"   (binary multiples:
//              K, KB and KiB all mean 1024, as in Ollama/llama.cpp memory flags)
//   budgets:   a size, or a share of physical RAM: "75%"
//
// Thread-safety: pure functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace qwenmux::orchestrator {

// A keep-alive style duration. `forever` is the "-1" value; otherwise `ms` >= 0.
struct Duration {
  int64_t ms = 0;
  bool forever = false;

  static Duration Forever() { return {0, true}; }
  static Duration Millis(int64_t v) { return {v, false}; }
  bool operator==(const Duration&) const = default;
};

// Parses a duration; the error says what was wrong ("\"5x\" is not a duration ...").
Result<Duration> ParseDuration(std::string_view text);
std::string FormatDuration(Duration d);  // "5m", "1h30m", "-1", "0", "250ms"

// Parses a byte size (no percent). Rejects negatives, overflow, unknown suffixes.
Result<uint64_t> ParseSize(std::string_view text);
std::string FormatSize(uint64_t bytes);  // "24.0 GiB", "512 B"

// A memory budget: absolute bytes or a share of physical RAM.
struct MemoryAmount {
  bool is_percent = false;
  uint64_t bytes = 0;    // when !is_percent
  double percent = 0.0;  // (0, 100] when is_percent

  // Bytes for a machine with `total_ram` bytes of RAM.
  uint64_t Resolve(uint64_t total_ram) const;
  std::string ToString() const;
};
Result<MemoryAmount> ParseMemoryAmount(std::string_view text);

}  // namespace qwenmux::orchestrator
