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
  std::chrono::milliseconds max_duration{600000};  // the whole transfer, stream included (slow drip)
  size_t max_buffered = 64u << 20;
  // Called once, when the first body byte arrives (or at the end for an empty body), with the
  // status and Content-Type; true: the body goes to on_chunk as it arrives instead of `body`.
  std::function<bool(long status, const std::string& content_type)> on_start;
  std::function<bool(std::string_view chunk)> on_chunk;  // false: stop (the client went away)
  std::function<bool()> should_abort;                    // polled about once a second and per chunk
};

struct UpstreamReply {
  // kTimeout: no byte for idle_timeout; kTooLong: the transfer ran past max_duration.
  enum class Outcome { kOk, kConnectFailed, kTimeout, kTooLong, kTooLarge, kAborted, kError };
  Outcome outcome = Outcome::kError;
  long status = 0;
  std::string content_type;
  std::string body;            // when not streamed
  bool streamed = false;       // on_start returned true
  std::string error;           // libcurl's message for the failures
};

UpstreamReply PerformUpstream(const UpstreamCall& call);

// The first 200 characters of `s` on one line ("..." when cut).
std::string Snippet(const std::string& s);
// The message of a backend's error answer: OpenAI {"error": {"message"}}, Ollama {"error": "..."},
// or the start of the body.
std::string ErrorMessageOf(const std::string& body);
// What went wrong, in words: "cannot connect: ...", "timed out: ...", "HTTP 500: ...".
std::string DescribeFailure(const UpstreamReply& r);

}  // namespace qwenmux::server
