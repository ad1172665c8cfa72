#include "orchestrator/config/units.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace qwenmux::orchestrator {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Reads a non-negative decimal number (digits with an optional fraction) from the front of s.
bool ReadNumber(std::string_view& s, double* value, bool* had_fraction) {
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  size_t int_end = i;
  *had_fraction = false;
  if (i < s.size() && s[i] == '.') {
    ++i;
    size_t frac_start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == frac_start) return false;
    *had_fraction = true;
  }
  if (int_end == 0) return false;
  std::string num(s.substr(0, i));
  char* end = nullptr;
  *value = std::strtod(num.c_str(), &end);
  if (end != num.c_str() + num.size() || !std::isfinite(*value)) return false;
  s.remove_prefix(i);
  return true;
}

Status BadDuration(std::string_view text) {
  return Error(StatusCode::kInvalidArgument,
               "\"{}\" is not a duration (use e.g. \"30s\", \"5m\", \"1h\", \"0\" or \"-1\" for forever)",
               text);
}

Status BadSize(std::string_view text) {
  return Error(StatusCode::kInvalidArgument,
               "\"{}\" is not a size (use e.g. \"24GiB\", \"24G\", \"512M\" or a byte count)", text);
}

}  // namespace

Result<Duration> ParseDuration(std::string_view text) {
  std::string_view s = Trim(text);
  if (s == "-1") return Duration::Forever();
  if (s == "0") return Duration::Millis(0);
  if (s.empty()) return BadDuration(text);
  // A sequence of <number><unit>, units strictly decreasing (1h30m, not 30m1h).
  constexpr double kMaxMs = 9.0e15;  // ~285 000 years: far below int64 overflow
  double total_ms = 0;
  int last_rank = 100;
  while (!s.empty()) {
    double v = 0;
    bool frac = false;
    if (!ReadNumber(s, &v, &frac)) return BadDuration(text);
    size_t u = 0;
    while (u < s.size() && std::isalpha(static_cast<unsigned char>(s[u]))) ++u;
    std::string_view unit = s.substr(0, u);
    s.remove_prefix(u);
    double scale = 0;
    int rank = 0;
    if (unit == "ms") { scale = 1; rank = 0; }
    else if (unit == "s") { scale = 1e3; rank = 1; }
    else if (unit == "m") { scale = 60e3; rank = 2; }
    else if (unit == "h") { scale = 3600e3; rank = 3; }
    else if (unit == "d") { scale = 86400e3; rank = 4; }
    else return BadDuration(text);  // includes a bare number like "5" (ambiguous)
    if (rank >= last_rank) return BadDuration(text);
    last_rank = rank;
    total_ms += v * scale;
    if (total_ms > kMaxMs) return BadDuration(text);
  }
  return Duration::Millis(static_cast<int64_t>(std::llround(total_ms)));
}

std::string FormatDuration(Duration d) {
  if (d.forever) return "-1";
  if (d.ms == 0) return "0";
  int64_t ms = d.ms;
  std::string out;
  const struct { int64_t scale; const char* unit; } kUnits[] = {
      {86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
  for (const auto& u : kUnits) {
    if (ms >= u.scale) {
      out += fmt::format("{}{}", ms / u.scale, u.unit);
      ms %= u.scale;
    }
  }
  return out;
}

Result<uint64_t> ParseSize(std::string_view text) {
  std::string_view s = Trim(text);
  double v = 0;
  bool frac = false;
  if (!ReadNumber(s, &v, &frac)) return BadSize(text);
  s = Trim(s);
  double scale = 0;
  if (s.empty() || s == "B") scale = 1;
  else {
    char c = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
    std::string_view rest = s.substr(1);
    if (!(rest.empty() || rest == "B" || rest == "iB" || rest == "ib" || rest == "b"))
      return BadSize(text);
    switch (c) {
      case 'K': scale = 1024.0; break;
      case 'M': scale = 1024.0 * 1024; break;
      case 'G': scale = 1024.0 * 1024 * 1024; break;
      case 'T': scale = 1024.0 * 1024 * 1024 * 1024; break;
      default: return BadSize(text);
    }
  }
  if (scale == 1 && frac) return BadSize(text);  // "1.5" bytes
  double bytes = v * scale;
  if (bytes >= 9.2e18) return BadSize(text);
  return static_cast<uint64_t>(std::llround(bytes));
}

std::string FormatSize(uint64_t bytes) {
  const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) { v /= 1024.0; ++u; }
  if (u == 0) return fmt::format("{} B", bytes);
  return fmt::format("{:.1f} {}", v, kUnits[u]);
}

uint64_t MemoryAmount::Resolve(uint64_t total_ram) const {
  if (!is_percent) return bytes;
  return static_cast<uint64_t>(static_cast<double>(total_ram) * (percent / 100.0));
}

std::string MemoryAmount::ToString() const {
  return is_percent ? fmt::format("{:g}%", percent) : FormatSize(bytes);
}

Result<MemoryAmount> ParseMemoryAmount(std::string_view text) {
  std::string_view s = Trim(text);
  if (!s.empty() && s.back() == '%') {
    std::string_view num = Trim(s.substr(0, s.size() - 1));
    double v = 0;
    bool frac = false;
    if (!ReadNumber(num, &v, &frac) || !num.empty() || !(v > 0.0) || v > 100.0)
      return Error(StatusCode::kInvalidArgument,
                   "\"{}\" is not a share of RAM (use a percentage in (0, 100], e.g. \"75%\")", text);
    MemoryAmount m;
    m.is_percent = true;
    m.percent = v;
    return m;
  }
  QM_ASSIGN_OR_RETURN(uint64_t bytes, ParseSize(s));
  MemoryAmount m;
  m.bytes = bytes;
  return m;
}

}  // namespace qwenmux::orchestrator
