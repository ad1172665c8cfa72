// Boost.Beast listener and connections (see http_server.h).
#include "base/ascii.h"
#include "server/http_server.h"

#include <sys/socket.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

namespace qwenmux::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

bool SafeHeaderValue(const std::string& v) {
  return v.find_first_of("\r\n") == std::string::npos;
}

std::string StatusLine(int status) {
  const auto reason = http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)));
  return fmt::format("HTTP/1.1 {} {}\r\n", status, std::string_view(reason.data(), reason.size()));
}

}  // namespace

bool ApiKeyMatches(const std::string& presented, const std::vector<std::string>& keys) {
  unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(presented.data()), presented.size(), a);
  bool match = false;
  for (const std::string& k : keys) {  // every key is compared: no early exit
    SHA256(reinterpret_cast<const unsigned char*>(k.data()), k.size(), b);
    match |= CRYPTO_memcmp(a, b, sizeof(a)) == 0;
  }
  return match;
}

bool SameOriginAllowed(const std::string& origin, const std::string& host_header, const std::vector<std::string>& allowed) {
  if (host_header.empty() || !HostAllowed(host_header, allowed)) return false;
  const std::string o = AsciiLower(origin), h = AsciiLower(host_header);
  return o == "http://" + h || o == "https://" + h;
}

bool HostAllowed(const std::string& host_header, const std::vector<std::string>& allowed) {
  std::string host = AsciiLower(host_header);
  if (host.empty()) return true;  // HTTP/1.0 without Host: no browser sends this
  if (host.front() == '[') {
    const size_t close = host.find(']');
    if (close == std::string::npos) return false;
    host = host.substr(0, close + 1);
  } else if (const size_t colon = host.rfind(':'); colon != std::string::npos) {
    const std::string port = host.substr(colon + 1);
    if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos) return false;
    host = host.substr(0, colon);
  }
  if (host == "localhost" || host == "[::1]" || host.starts_with("127.")) {
    if (host.starts_with("127.")) {
      return host.find_first_not_of("0123456789.") == std::string::npos;
    }
    return true;
  }
  for (const std::string& a : allowed) {
    if (AsciiLower(a) == host) return true;
  }
  return false;
}

class Session;

// One request's way back to its connection. Holds the session alive until the response ends.
class ResponderImpl final : public Responder, public std::enable_shared_from_this<ResponderImpl> {
 public:
  ResponderImpl(std::shared_ptr<Session> session, HttpServer::Impl* impl, bool keep_alive,
                HeaderList cors, std::string path)
      : session_(std::move(session)), impl_(impl), keep_alive_(keep_alive), cors_(std::move(cors)),
        path_(std::move(path)) {}
  ~ResponderImpl() override;

  void Send(int status, std::string content_type, std::string body, HeaderList headers) override;
  void StartStream(int status, std::string content_type, HeaderList headers) override;
  bool Write(std::string chunk) override;
  void End() override;
  bool cancelled() const override { return cancelled_.load(); }
  void OnCancel(std::function<void()> hook) override;

  // The client is gone (or overflowed): nothing more is written. Server-side cancellation
  // (shutdown) still lets the handler finish its response.
  void Cancel(bool client_gone);
  void Detach();  // connection closed

  void NoteUsage(std::string model, int64_t prompt_tokens, int64_t completion_tokens) override;
  void NoteError(std::string message) override;
  // What the request log line needs from the request (before the handler runs).
  void SetLogContext(std::string method, std::chrono::steady_clock::time_point started, std::string body) {
    log_.method = std::move(method);
    log_.body = std::move(body);
    started_at_ = started;
  }

 private:
  std::string Head(int status, const std::string& content_type, const HeaderList& headers,
                   bool chunked, size_t length) const;
  void Post(std::string bytes, bool last);
  void Finish();

  std::shared_ptr<Session> session_;
  HttpServer::Impl* impl_;
  const bool keep_alive_;
  const HeaderList cors_;
  const std::string path_;
  std::mutex mu_;
  bool started_ = false, ended_ = false;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> client_gone_{false};
  std::vector<std::function<void()>> hooks_;
  std::atomic<size_t> queued_{0};
  bool counted_ = true;  // still in HttpServer::in_flight_
  RequestLogEntry log_;  // under mu_; written to HttpServerOptions::request_log by Finish()
  std::chrono::steady_clock::time_point started_at_ = std::chrono::steady_clock::now();
};

struct HttpServer::Impl {
  explicit Impl(HttpServer* o)
      : owner(o), opts(o->options_), in_flight(&o->in_flight_), connections(&o->connections_), acceptor(ioc),
        pool(std::max(1, o->options_.work_threads)) {}
  ~Impl() { dying.store(true); }

  // Declared before the io_context: destroying it destroys pending handlers (sessions,
  // responders), which still use these.
  HttpServer* owner;
  const HttpServerOptions& opts;
  std::atomic<int32_t>* in_flight;
  std::atomic<int32_t>* connections;
  std::map<std::string, std::map<std::string, Handler>> routes;  // path -> method -> handler
  std::map<std::string, std::map<std::string, Handler>> prefix_routes;  // prefix -> method -> handler
  // The routes for a path: exact, else the longest matching prefix; nullptr if none.
  const std::map<std::string, Handler>* FindRoute(const std::string& path) const {
    if (auto it = routes.find(path); it != routes.end()) return &it->second;
    const std::map<std::string, Handler>* best = nullptr;
    size_t best_len = 0;
    for (const auto& [prefix, methods] : prefix_routes) {
      if (path.size() >= prefix.size() && path.compare(0, prefix.size(), prefix) == 0 && prefix.size() >= best_len) {
        best = &methods;
        best_len = prefix.size();
      }
    }
    return best;
  }
  ErrorFormatter error_formatter;
  std::atomic<bool> draining{false};
  std::atomic<bool> dying{false};
  std::mutex live_mu;
  std::unordered_map<ResponderImpl*, std::weak_ptr<ResponderImpl>> live;
  bool stopped = false;

  net::io_context ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> guard;
  tcp::acceptor acceptor;
  net::thread_pool pool;
  std::vector<std::thread> io_threads;

  std::string ErrorBody(const std::string& path, int status, const std::string& message) const {
    if (error_formatter) return error_formatter(path, status, message);
    return fmt::format("{{\"error\":\"{}\"}}", message);
  }
  void DoAccept();
  void Finished(ResponderImpl* r) {
    std::lock_guard<std::mutex> lk(live_mu);
    live.erase(r);
  }
  void LogRequest(RequestLogEntry& e, std::chrono::steady_clock::time_point started) const {
    if (!opts.request_log) return;
    e.duration_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    if (!opts.log_bodies) e.body.clear();
    if (e.body.size() > 4096) e.body.resize(4096);
    opts.request_log(e);
  }
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl* impl, bool reject)
      : stream_(std::move(socket)), timer_(stream_.get_executor()), impl_(impl), reject_(reject) {
    (*impl_->connections).fetch_add(1);
  }
  ~Session() { (*impl_->connections).fetch_sub(1); }

  void Start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      if (self->reject_) {
        self->SendError("", 503, "too many open connections", {{"Retry-After", "1"}});
        return;
      }
      self->ReadHeader();
    });
  }

  // From ResponderImpl (any thread): queue bytes for the socket.
  void Post(std::string bytes, bool last, bool keep_alive, std::shared_ptr<ResponderImpl> r) {
    net::post(stream_.get_executor(), [self = shared_from_this(), bytes = std::move(bytes), last,
                                       keep_alive, r = std::move(r)]() mutable {
      self->Enqueue(std::move(bytes), last, keep_alive, std::move(r));
    });
  }
  // From the responder's destructor without an answer, or an overflow: drop the connection.
  void Abort() {
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->Close(); });
  }

 private:
  void ReadHeader() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(impl_->opts.limits.max_header_bytes));
    parser_->body_limit(impl_->opts.limits.max_body_bytes);
    const auto& l = impl_->opts.limits;
    // Own timer rather than the stream's expiry (which closes the socket): a header that is too
    // slow still gets its 408.
    stream_.expires_never();
    timed_out_ = false;
    timer_.expires_after(requests_ == 0 ? l.header_timeout : l.idle_timeout);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec) return;
      self->timed_out_ = true;
      beast::error_code ignored;
      self->stream_.socket().cancel(ignored);
    });
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              self->timer_.cancel();
                              if (self->timed_out_ && ec == net::error::operation_aborted) ec = beast::error::timeout;
                              self->OnHeader(ec);
                            });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return ReadFailed(ec);
    ++requests_;
    request_started_ = std::chrono::steady_clock::now();
    auto& h = parser_->get();
    const std::string path(h.target().substr(0, h.target().find('?')));
    const HttpServerOptions& o = impl_->opts;
    if (impl_->draining.load()) return SendError(path, 503, "server is shutting down", {{"Retry-After", "5"}});
    // RFC 7230 section 5.4: a request with more than one Host field is invalid (otherwise the
    // rebinding check would read one of them and a proxy or virtual host the other).
    if (h.count(http::field::host) > 1) return SendError(path, 400, "more than one Host header");
    if (o.security.check_host && !HostAllowed(std::string(h[http::field::host]), o.security.allowed_hosts)) {
      return SendError(path, 403, "Host header not allowed (DNS rebinding protection); use --host or allowed hosts");
    }
    cors_.clear();
    const std::string origin(h[http::field::origin]);
    if (!origin.empty()) {
      const auto& allowed = o.security.cors_origins;
      const bool ok = std::find(allowed.begin(), allowed.end(), origin) != allowed.end() ||
                      std::find(allowed.begin(), allowed.end(), "*") != allowed.end() ||
                      SameOriginAllowed(origin, std::string(h[http::field::host]), o.security.allowed_hosts);
      if (!ok) return SendError(path, 403, fmt::format("origin not allowed: {}", origin));
      cors_ = {{"Access-Control-Allow-Origin", origin}, {"Vary", "Origin"}};
      if (h.method() == http::verb::options) {
        std::string req_headers(h["access-control-request-headers"]);
        if (!SafeHeaderValue(req_headers)) req_headers.clear();
        // SendRaw adds cors_ (Allow-Origin, Vary) itself: each header once, or browsers refuse.
        HeaderList extra;
        extra.push_back({"Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"});
        extra.push_back({"Access-Control-Allow-Headers",
                         req_headers.empty() ? "authorization, content-type, x-api-key" : req_headers});
        extra.push_back({"Access-Control-Max-Age", "600"});
        return SendRaw(204, "", "", extra, true);
      }
    }
    const auto& open = o.open_paths;
    if (!o.security.api_keys.empty() && std::find(open.begin(), open.end(), path) == open.end()) {
      std::string key(h[http::field::authorization]);
      if (key.size() >= 7 && AsciiLower(key.substr(0, 7)) == "bearer ") {
        key = key.substr(7);
      } else if (key.empty()) {
        key = std::string(h["x-api-key"]);
      }
      if (key.empty() || !ApiKeyMatches(key, o.security.api_keys)) {
        return SendError(path, 401, "invalid or missing API key (Authorization: Bearer KEY)",
                         {{"WWW-Authenticate", "Bearer"}});
      }
    }
    if (beast::iequals(h[http::field::expect], "100-continue")) {
      auto cont = std::make_shared<std::string>("HTTP/1.1 100 Continue\r\n\r\n");
      net::async_write(stream_, net::buffer(*cont),
                       [self = shared_from_this(), cont](beast::error_code e, size_t) {
                         if (e) return self->Close();
                         self->ReadBody();
                       });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    stream_.expires_after(impl_->opts.limits.body_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
  }

  void ReadFailed(beast::error_code ec) {
    const std::string path = parser_ && parser_->is_header_done()
                                 ? std::string(parser_->get().target().substr(0, parser_->get().target().find('?')))
                                 : std::string();
    if (ec == http::error::body_limit) {
      return SendError(path, 413, fmt::format("request body larger than the limit of {} bytes",
                                              impl_->opts.limits.max_body_bytes));
    }
    if (ec == http::error::header_limit) return SendError(path, 431, "request header too large");
    if (ec == beast::error::timeout) {
      if (requests_ == 0 || (parser_ && parser_->got_some())) return SendError(path, 408, "request timeout");
      return Close();
    }
    if (ec.category() == beast::error_code(http::error::end_of_stream).category() && ec != http::error::end_of_stream &&
        ec != http::error::partial_message) {
      return SendError(path, 400, fmt::format("malformed HTTP request: {}", ec.message()));
    }
    Close();
  }

  void OnBody(beast::error_code ec) {
    if (ec) return ReadFailed(ec);
    stream_.expires_never();
    auto& m = parser_->get();
    auto req = std::make_shared<HttpRequest>();
    req->method = std::string(m.method_string());
    req->target = std::string(m.target());
    const size_t q = req->target.find('?');
    req->path = req->target.substr(0, q);
    if (q != std::string::npos) req->query = req->target.substr(q + 1);
    for (const auto& f : m) req->headers[AsciiLower(std::string(f.name_string()))] = std::string(f.value());
    req->body = std::move(m.body());
    keep_alive_ = m.keep_alive();

    const auto* route = impl_->FindRoute(req->path);
    if (route == nullptr) {
      return SendError(req->path, 404, fmt::format("no route for {} {}", req->method, req->path));
    }
    const auto handler = route->find(req->method);
    if (handler == route->end()) {
      std::string allow;
      for (const auto& [method, _] : *route) allow += (allow.empty() ? "" : ", ") + method;
      return SendError(req->path, 405, fmt::format("method {} not allowed on {} (allowed: {})", req->method,
                                                   req->path, allow),
                       {{"Allow", allow}});
    }
    auto responder = std::make_shared<ResponderImpl>(shared_from_this(), impl_, keep_alive_, cors_, req->path);
    responder->SetLogContext(req->method, request_started_, impl_->opts.log_bodies ? req->body : std::string());
    current_ = responder;
    (*impl_->in_flight).fetch_add(1);
    {
      std::lock_guard<std::mutex> lk(impl_->live_mu);
      impl_->live[responder.get()] = responder;
    }
    if (buffer_.size() == 0) WatchDisconnect();
    net::post(impl_->pool, [h = handler->second, req, responder]() mutable {
      try {
        h(*req, responder);
      } catch (...) {
        responder->Send(500, "application/json", "{\"error\":\"internal error\"}", {});
      }
    });
  }

  // While a handler runs: a readable socket with nothing to read is a closed client.
  void WatchDisconnect() {
    watching_ = true;
    stream_.socket().async_wait(tcp::socket::wait_read, [self = shared_from_this()](beast::error_code ec) {
      if (!self->watching_) return;
      self->watching_ = false;
      if (ec == net::error::operation_aborted) return;
      char c;
      const ssize_t n = ec ? -1 : ::recv(self->stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) return;  // a pipelined request: leave it for after this response
      if (n < 0 && !ec && (errno == EAGAIN || errno == EWOULDBLOCK)) return self->WatchDisconnect();
      if (auto r = self->current_.lock()) r->Cancel(true);
      self->peer_closed_ = true;
    });
  }

  void Enqueue(std::string bytes, bool last, bool keep_alive, std::shared_ptr<ResponderImpl> r) {
    if (closed_) return;
    out_.push_back(std::move(bytes));
    if (last) {
      last_queued_ = true;
      keep_alive_ = keep_alive;
      finished_responder_ = std::move(r);
    }
    if (!writing_) WriteNext();
  }

  void WriteNext() {
    if (out_.empty()) {
      writing_ = false;
      if (last_queued_) ResponseDone();
      return;
    }
    writing_ = true;
    // Coalesce queued chunks into one write.
    std::string batch;
    while (!out_.empty() && batch.size() < (64u << 10)) {
      batch += std::move(out_.front());
      out_.pop_front();
    }
    writing_buf_ = std::move(batch);
    stream_.expires_after(std::chrono::seconds(120));  // a client that stops reading entirely
    net::async_write(stream_, net::buffer(writing_buf_), [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) {
        if (auto r = self->current_.lock()) r->Cancel(true);
        return self->Close();
      }
      self->WriteNext();
    });
  }

  void ResponseDone() {
    last_queued_ = false;
    finished_responder_.reset();
    current_.reset();
    stream_.expires_never();
    if (!keep_alive_ || peer_closed_ || impl_->draining.load()) return Close();
    if (watching_) {
      watching_ = false;
      beast::error_code ignored;
      stream_.socket().cancel(ignored);
    }
    ReadHeader();
  }

  void SendError(const std::string& path, int status, const std::string& message, HeaderList extra = {}) {
    RequestLogEntry e;
    e.method = parser_ && parser_->is_header_done() ? std::string(parser_->get().method_string()) : "-";
    e.path = path.empty() ? "-" : path;
    e.status = status;
    e.error = message;
    impl_->LogRequest(e, request_started_);
    SendRaw(status, "application/json", impl_->ErrorBody(path, status, message), std::move(extra), false);
  }

  // An answer produced by the HTTP layer itself (not a handler); closes unless keep_alive.
  void SendRaw(int status, const std::string& content_type, std::string body, HeaderList extra, bool keep_alive) {
    std::string head = StatusLine(status);
    if (!content_type.empty()) head += fmt::format("Content-Type: {}\r\n", content_type);
    head += fmt::format("Content-Length: {}\r\n", body.size());
    for (const auto& [k, v] : cors_) head += fmt::format("{}: {}\r\n", k, v);
    for (const auto& [k, v] : extra) head += fmt::format("{}: {}\r\n", k, v);
    head += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    Enqueue(head + body, true, keep_alive, nullptr);
  }

 public:
  void Close() {
    if (closed_) return;
    closed_ = true;
    watching_ = false;
    timer_.cancel();
    if (auto r = current_.lock()) r->Cancel(true);
    out_.clear();
    // The finished response's responder holds this session: a write that fails after the last
    // chunk was queued ends here, not in ResponseDone(), so drop it here or the pair leaks.
    last_queued_ = false;
    finished_responder_.reset();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }
  bool closed() const { return closed_; }

 private:
  beast::tcp_stream stream_;
  net::steady_timer timer_;
  bool timed_out_ = false;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  HttpServer::Impl* impl_;
  bool reject_;
  int requests_ = 0;
  bool keep_alive_ = true;
  bool closed_ = false, writing_ = false, last_queued_ = false, watching_ = false, peer_closed_ = false;
  HeaderList cors_;
  std::deque<std::string> out_;
  std::string writing_buf_;
  std::weak_ptr<ResponderImpl> current_;
  std::shared_ptr<ResponderImpl> finished_responder_;
  std::chrono::steady_clock::time_point request_started_ = std::chrono::steady_clock::now();
};

// ---- ResponderImpl ----

ResponderImpl::~ResponderImpl() {
  if (!ended_) {
    // The handler dropped its responder without finishing: the connection cannot be reused.
    if (!impl_->dying.load()) session_->Abort();
    Finish();
  }
}

void ResponderImpl::Finish() {  // under mu_ or from the destructor
  if (counted_) {
    counted_ = false;
    log_.path = path_;
    log_.cancelled = cancelled_.load();
    if (!impl_->dying.load()) impl_->LogRequest(log_, started_at_);
    impl_->in_flight->fetch_sub(1);
    impl_->Finished(this);
  }
}

void ResponderImpl::NoteUsage(std::string model, int64_t prompt_tokens, int64_t completion_tokens) {
  std::lock_guard<std::mutex> lk(mu_);
  log_.model = std::move(model);
  log_.prompt_tokens = prompt_tokens;
  log_.completion_tokens = completion_tokens;
}

void ResponderImpl::NoteError(std::string message) {
  std::lock_guard<std::mutex> lk(mu_);
  log_.error = std::move(message);
}

std::string ResponderImpl::Head(int status, const std::string& content_type, const HeaderList& headers, bool chunked,
                                size_t length) const {
  std::string head = StatusLine(status);
  head += fmt::format("Content-Type: {}\r\n", content_type);
  if (chunked) {
    head += "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n";
  } else {
    head += fmt::format("Content-Length: {}\r\n", length);
  }
  for (const auto& [k, v] : cors_) head += fmt::format("{}: {}\r\n", k, v);
  for (const auto& [k, v] : headers) {
    if (SafeHeaderValue(k) && SafeHeaderValue(v)) head += fmt::format("{}: {}\r\n", k, v);
  }
  head += keep_alive_ ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  return head;
}

void ResponderImpl::Post(std::string bytes, bool last) {
  queued_.fetch_add(bytes.size());
  session_->Post(std::move(bytes), last, keep_alive_, last ? shared_from_this() : nullptr);
}

void ResponderImpl::Send(int status, std::string content_type, std::string body, HeaderList headers) {
  std::lock_guard<std::mutex> lk(mu_);
  if (started_ || ended_) return;
  started_ = ended_ = true;
  log_.status = status;
  Post(Head(status, content_type, headers, false, body.size()) + body, true);
  Finish();
}

void ResponderImpl::StartStream(int status, std::string content_type, HeaderList headers) {
  std::lock_guard<std::mutex> lk(mu_);
  if (started_ || ended_) return;
  started_ = true;
  log_.status = status;
  Post(Head(status, content_type, headers, true, 0), false);
}

bool ResponderImpl::Write(std::string chunk) {
  std::lock_guard<std::mutex> lk(mu_);
  if (!started_ || ended_ || client_gone_.load()) return false;
  if (chunk.empty()) return true;  // an empty chunk would end the stream
  if (queued_.load() > impl_->opts.limits.max_stream_buffer) {
    // The client reads slower than we produce for too long: give up on it alone.
    ended_ = true;
    session_->Abort();
    Finish();
    return false;
  }
  Post(fmt::format("{:x}\r\n", chunk.size()) + chunk + "\r\n", false);
  return true;
}

void ResponderImpl::End() {
  std::lock_guard<std::mutex> lk(mu_);
  if (!started_ || ended_) return;
  ended_ = true;
  Post("0\r\n\r\n", true);
  Finish();
}

void ResponderImpl::OnCancel(std::function<void()> hook) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!cancelled_.load()) {
      hooks_.push_back(std::move(hook));
      return;
    }
  }
  hook();
}

void ResponderImpl::Cancel(bool client_gone) {
  std::vector<std::function<void()>> hooks;
  if (client_gone) client_gone_.store(true);
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (cancelled_.exchange(true)) return;
    hooks.swap(hooks_);
  }
  for (auto& h : hooks) h();
}

// ---- HttpServer ----

void HttpServer::Impl::DoAccept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
    } else {
      const bool reject = connections->load() >= opts.limits.max_connections;
      std::make_shared<Session>(std::move(socket), this, reject)->Start();
    }
    if (acceptor.is_open()) DoAccept();
  });
}

HttpServer::HttpServer(HttpServerOptions options) : options_(std::move(options)), impl_(std::make_unique<Impl>(this)) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Route(const std::string& method, const std::string& path, Handler handler, bool prefix) {
  (prefix ? impl_->prefix_routes : impl_->routes)[path][method] = std::move(handler);
}

void HttpServer::SetErrorFormatter(ErrorFormatter f) { impl_->error_formatter = std::move(f); }

Status HttpServer::Start() {
  beast::error_code ec;
  const auto address = net::ip::make_address(options_.host, ec);
  if (ec) return Error(StatusCode::kInvalidArgument, "serve: --host {}: not an IP address", options_.host);
  const tcp::endpoint ep(address, options_.port);
  auto& a = impl_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Error(StatusCode::kIo, "serve: cannot listen on {}:{}: {}", options_.host, options_.port, ec.message());
  }
  bound_port_ = a.local_endpoint().port();
  impl_->guard.emplace(impl_->ioc.get_executor());
  impl_->DoAccept();
  for (int i = 0; i < std::max(1, options_.io_threads); ++i) {
    impl_->io_threads.emplace_back([this] { impl_->ioc.run(); });
  }
  return Status::Ok();
}

void HttpServer::StopAccepting() {
  impl_->draining.store(true);
  net::post(impl_->acceptor.get_executor(), [this] {
    beast::error_code ec;
    impl_->acceptor.close(ec);
  });
}

void HttpServer::CancelAll() {
  std::vector<std::shared_ptr<ResponderImpl>> live;
  {
    std::lock_guard<std::mutex> lk(impl_->live_mu);
    for (auto& [_, w] : impl_->live) {
      if (auto r = w.lock()) live.push_back(std::move(r));
    }
  }
  for (auto& r : live) r->Cancel(false);
}

void HttpServer::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  StopAccepting();
  impl_->pool.join();  // handlers finish (they answer through the responders)
  impl_->guard.reset();
  impl_->ioc.stop();
  for (auto& t : impl_->io_threads) t.join();
  impl_->io_threads.clear();
}

}  // namespace qwenmux::server
