// The HTTP client side of the backends (upstream.h): one blocking request over libcurl, with a
// connect timeout, an idle timeout (no byte from the backend for that long), a size cap on what
// is buffered, an abort check, and optional streaming of the body as it arrives.
//
// Thread-safety: PerformUpstream may run on many threads at once (one easy handle each).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace qwenmux::server {

struct UpstreamCall {
  std::string method = "GET";  // "GET" or "POST" (body: JSON)
  std::string url;
  std::string body;
  std::string api_key;         // "" = no Authorization header
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds idle_timeout{60000};
  size_t max_buffered = 64u << 20;
  // Called once, when the first body byte arrives (or at the end for an empty body), with the
  // status and Content-Type; true: the body goes to on_chunk as it arrives instead of `body`.
  std::function<bool(long status, const std::string& content_type)> on_start;
  std::function<bool(std::string_view chunk)> on_chunk;  // false: stop (the client went away)
  std::function<bool()> should_abort;                    // polled about once a second and per chunk
};

struct UpstreamReply {
  enum class Outcome { kOk, kConnectFailed, kTimeout, kTooLarge, kAborted, kError };
  Outcome outcome = Outcome::kError;
  long status = 0;
  std::string content_type;
  std::string body;            // when not streamed
  bool streamed = false;       // on_start returned true
  std::string error;           // libcurl's message for the failures
};

UpstreamReply PerformUpstream(const UpstreamCall& call);

}  // namespace qwenmux::server
