// The HTTP layer of `qwenmux serve`: an asynchronous Boost.Beast server (a few I/O threads,
// one strand per connection; never a thread per connection) with the limits and security
// checks every route shares, and a Responder through which handlers answer, at once or as a
// stream of chunks.
//
// Request flow: the connection's strand reads the header (header-size limit, slow-header
// timeout), checks Host (DNS rebinding), CORS and the API key, reads the body (size limit:
// 413) and hands the request to the route's Handler on the work pool. The handler answers
// through the Responder from any thread; data is queued and written on the strand, so a slow
// client only fills its own queue. While a handler runs the connection watches its socket: a
// client that goes away flips Responder::cancelled() and runs the cancel hook at once.
//
// Thread-safety: HttpServer's public methods may be called from any thread; Responder is
// thread-safe (every method); handlers run on the work pool, several at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace qwenmux::server {

struct HttpLimits {
  size_t max_body_bytes = 8u << 20;        // 413 above
  size_t max_header_bytes = 16u << 10;     // 431 above
  int32_t max_connections = 1024;          // open connections; 503 + close above
  std::chrono::milliseconds header_timeout{10000};  // whole header (slow-header attacks)
  std::chrono::milliseconds body_timeout{60000};
  std::chrono::milliseconds idle_timeout{60000};    // keep-alive wait for the next request
  size_t max_stream_buffer = 16u << 20;    // queued unsent bytes of one response; above: cancel
};

struct HttpSecurity {
  std::vector<std::string> api_keys;       // empty: no key needed
  std::vector<std::string> cors_origins;   // empty: no CORS headers; "*" allows any origin
  // Host header must name a loopback host (localhost, 127.0.0.1, [::1], with any port) or one
  // of allowed_hosts. Set by serve when bound to a loopback address.
  bool check_host = false;
  std::vector<std::string> allowed_hosts;
};

struct HttpRequest {
  std::string method;   // "GET"
  std::string target;   // "/v1/models?x=1"
  std::string path;     // "/v1/models"
  std::string query;    // "x=1"
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

class Responder {
 public:
  virtual ~Responder() = default;
  // A whole response. Only the first Send/StartStream of a request counts.
  virtual void Send(int status, std::string content_type, std::string body, HeaderList headers = {}) = 0;
  // A chunked response: Write() appends a chunk (flushed as soon as the socket takes it), End()
  // finishes it. Write returns false once the client is gone (or its buffer overflowed).
  virtual void StartStream(int status, std::string content_type, HeaderList headers = {}) = 0;
  virtual bool Write(std::string chunk) = 0;
  virtual void End() = 0;
  // The client disconnected (or the server is stopping and cancelled the request).
  virtual bool cancelled() const = 0;
  // Runs `hook` once when the request is cancelled (at once if it already is). Any thread.
  virtual void OnCancel(std::function<void()> hook) = 0;
  // For the request log line (HttpServerOptions::request_log): the model that served the request
  // and its token counts (-1: not applicable), and the error message of a failed request. Any
  // thread, before the response ends; later calls replace earlier ones.
  virtual void NoteUsage(std::string /*model*/, int64_t /*prompt_tokens*/, int64_t /*completion_tokens*/) {}
  virtual void NoteError(std::string /*message*/) {}
};

// One finished request, for the server log (no request text unless log_bodies is set).
struct RequestLogEntry {
  std::string method, path;
  int status = 0;                // 0: no response was started (the client left first)
  std::string model;             // "" if not known (no model ran, or the request failed early)
  int64_t prompt_tokens = -1, completion_tokens = -1;  // -1: not applicable
  double duration_ms = 0;        // from the whole request read to the last byte queued
  bool cancelled = false;        // the client disconnected (or the server cancelled it)
  std::string error;             // the message of an error answer ("" otherwise)
  std::string body;              // the request body (prompt text), only with log_bodies
};

using Handler = std::function<void(const HttpRequest&, std::shared_ptr<Responder>)>;

// How errors produced by the HTTP layer itself (413, 431, 404, 401...) are written for a path:
// the OpenAI or the Ollama JSON shape. Returns (content type, body).
using ErrorFormatter = std::function<std::string(const std::string& path, int status, const std::string& message)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 11434;                   // 0: any free port (see HttpServer::port())
  int32_t io_threads = 2;
  int32_t work_threads = 2;                // request parsing, prompt rendering, tokenising
  HttpLimits limits;
  HttpSecurity security;
  std::vector<std::string> open_paths = {"/health"};  // no API key needed
  // Called once per request when its response ends (handlers and the HTTP layer's own errors);
  // on an I/O or work thread, so it must be thread-safe and quick. Empty: no request log.
  std::function<void(const RequestLogEntry&)> request_log;
  bool log_bodies = false;                 // RequestLogEntry::body (first 4 KiB); prompts in the log
};

class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Before Start(). method "GET"/"POST"/"DELETE"; a path known with another method answers 405.
  // prefix = true: the route also takes every path that starts with `path` (which should end in
  // "/"), e.g. "/v1/pipelines/jobs/" for "/v1/pipelines/jobs/ID/results"; the handler reads the
  // rest of HttpRequest::path. An exact route wins over a prefix route; of several prefix
  // routes the longest match wins.
  void Route(const std::string& method, const std::string& path, Handler handler, bool prefix = false);
  void SetErrorFormatter(ErrorFormatter f);

  // Binds and starts the I/O and work threads. Errors: address in use, bad host.
  Status Start();
  uint16_t port() const { return bound_port_; }
  const HttpServerOptions& options() const { return options_; }

  // Graceful shutdown, step 1: stop accepting; new requests on open connections get 503.
  void StopAccepting();
  // Requests whose handler has not finished its response yet.
  int32_t InFlight() const { return in_flight_.load(); }
  int32_t OpenConnections() const { return connections_.load(); }
  // Cancels every in-flight request (their Responders report cancelled()).
  void CancelAll();
  // Closes everything and joins the threads.
  void Stop();

  struct Impl;

 private:
  HttpServerOptions options_;
  std::atomic<int32_t> in_flight_{0};
  std::atomic<int32_t> connections_{0};
  uint16_t bound_port_ = 0;
  std::unique_ptr<Impl> impl_;
};

// Constant-time comparison of a presented key with the configured ones (hashes compared with
// CRYPTO_memcmp, so neither content nor length leaks through timing).
bool ApiKeyMatches(const std::string& presented, const std::vector<std::string>& keys);
// Host header check against DNS rebinding: loopback names (any port) or an allowed host.
bool HostAllowed(const std::string& host_header, const std::vector<std::string>& allowed);
// A browser's request from a page this server served (the dashboard at /): Origin is
// "http(s)://" + the Host header, and that host passes HostAllowed (loopback or an allowed host,
// whether or not the host check is on, so a rebound foreign name never counts as same-origin).
// Such requests need no --cors-origin.
bool SameOriginAllowed(const std::string& origin, const std::string& host_header, const std::vector<std::string>& allowed);

}  // namespace qwenmux::server
