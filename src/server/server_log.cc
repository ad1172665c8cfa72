#include "server/server_log.h"

#include <chrono>
#include <cmath>
#include <ctime>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace qwenmux::server {

namespace {

using Json = nlohmann::ordered_json;

// UTC, millisecond precision: 2026-12-07T02:30:00.123Z.
std::string NowUtc() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// A value for a text line: bare when it has no space, quote or control byte, else JSON-quoted.
std::string TextValue(const std::string& v) {
  bool plain = !v.empty();
  for (char c : v) plain = plain && static_cast<unsigned char>(c) > 0x20 && c != '"' && c != '=';
  return plain ? v : Dump(Json(v));
}

}  // namespace

Result<LogFormat> ParseLogFormat(std::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return Error(StatusCode::kInvalidArgument, "--log-format {}: expected text or json", name);
}

std::string FormatRequestLine(const RequestLogEntry& e, LogFormat format) {
  const char* level = e.status >= 500 ? "error" : e.status >= 400 || e.status == 0 ? "warn" : "info";
  if (format == LogFormat::kJson) {
    Json j{{"time", NowUtc()}, {"level", level}, {"event", "request"}, {"method", e.method}, {"path", e.path},
           {"status", e.status}};
    if (!e.model.empty()) j["model"] = e.model;
    if (e.prompt_tokens >= 0) j["prompt_tokens"] = e.prompt_tokens;
    if (e.completion_tokens >= 0) j["completion_tokens"] = e.completion_tokens;
    j["duration_ms"] = std::round(e.duration_ms * 10) / 10;
    if (e.cancelled) j["cancelled"] = true;
    if (!e.error.empty()) j["error"] = e.error;
    if (!e.body.empty()) j["body"] = e.body;
    return Dump(j);
  }
  std::string s = fmt::format("http: {} {} status={}", e.method, TextValue(e.path), e.status);
  if (!e.model.empty()) s += " model=" + TextValue(e.model);
  if (e.prompt_tokens >= 0) s += fmt::format(" prompt_tokens={}", e.prompt_tokens);
  if (e.completion_tokens >= 0) s += fmt::format(" completion_tokens={}", e.completion_tokens);
  s += fmt::format(" duration_ms={:.1f}", e.duration_ms);
  if (e.cancelled) s += " cancelled";
  if (!e.error.empty()) s += " error=" + TextValue(e.error);
  if (!e.body.empty()) s += " body=" + TextValue(e.body);
  return s;
}

std::string FormatModelLine(const orchestrator::ModelEvent& e, LogFormat format) {
  const bool failed = e.kind == "load_failed" || e.kind == "adapter_load_failed";
  if (format == LogFormat::kJson) {
    Json j{{"time", NowUtc()}, {"level", failed ? "error" : "info"}, {"event", "model"}, {"action", e.kind},
           {"model", e.name}, {"reason", e.reason}};
    if (e.kind == "load" || e.kind == "adapter_load") j["seconds"] = std::round(e.seconds * 1000) / 1000;
    if (e.bytes > 0) j["bytes"] = e.bytes;
    if (!e.error.empty()) j["error"] = e.error;
    return Dump(j);
  }
  std::string s = fmt::format("model: {} {} reason={}", e.kind, TextValue(e.name), e.reason);
  if (e.kind == "load" || e.kind == "adapter_load") s += fmt::format(" seconds={:.3f}", e.seconds);
  if (e.bytes > 0) s += fmt::format(" bytes={}", e.bytes);
  if (!e.error.empty()) s += " error=" + TextValue(e.error);
  return s;
}

std::string FormatMessageLine(std::string_view message, LogFormat format) {
  if (format == LogFormat::kText) return std::string(message);
  return Dump(Json{{"time", NowUtc()}, {"level", "info"}, {"event", "message"}, {"msg", std::string(message)}});
}

}  // namespace qwenmux::server
