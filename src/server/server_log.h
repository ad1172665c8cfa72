// The server's log after startup: one line per request (method, path, model, status, tokens,
// duration; the request body only with --log-prompts), one per model load, failed load and
// unload (with its reason and time), in plain text or as JSON lines for log collectors
// (--log-format json). --quiet keeps only the startup and shutdown lines.
//
// Text:  http: POST /v1/chat/completions status=200 model=tiny prompt_tokens=12 completion_tokens=8 duration_ms=153.2
//        model: unload tiny reason=keep_alive bytes=52428800
// JSON:  {"time":"2026-12-07T02:30:00.123Z","level":"info","event":"request","method":"POST",...}
//        {"time":...,"level":"info","event":"model","action":"load","model":"tiny","reason":"request",...}
// Startup lines become {"time":...,"level":"info","event":"message","msg":"serve: listening on ..."}.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"
#include "orchestrator/manager/model_manager.h"
#include "server/http_server.h"

namespace qwenmux::server {

enum class LogFormat { kText, kJson };

struct ServerLogOptions {
  LogFormat format = LogFormat::kText;  // --log-format text|json
  bool quiet = false;                   // --quiet: no request or model lines (startup lines only)
  bool log_prompts = false;             // --log-prompts: the request body (first 4 KiB) in request lines
};

// "text" or "json".
Result<LogFormat> ParseLogFormat(std::string_view name);

std::string FormatRequestLine(const RequestLogEntry& e, LogFormat format);
std::string FormatModelLine(const orchestrator::ModelEvent& e, LogFormat format);
// A plain message (startup, shutdown) in `format`: as is for text, a JSON object for JSON.
std::string FormatMessageLine(std::string_view message, LogFormat format);

}  // namespace qwenmux::server
