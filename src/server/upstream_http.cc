#include "server/upstream_http.h"

#include <curl/curl.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

namespace qwenmux::server {

namespace {

using Clock = std::chrono::steady_clock;

struct State {
  const UpstreamCall* call = nullptr;
  CURL* h = nullptr;
  UpstreamReply* reply = nullptr;
  bool started = false;
  bool too_large = false, timed_out = false, too_long = false, aborted = false;
  Clock::time_point start = Clock::now(), last_byte = start;

  void Start() {
    if (started) return;
    started = true;
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    const char* ct = nullptr;
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
    reply->status = code;
    reply->content_type = ct ? ct : "";
    if (call->on_start) reply->streamed = call->on_start(code, reply->content_type);
  }
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  State& s = *static_cast<State*>(user);
  const size_t bytes = size * n;
  s.last_byte = Clock::now();
  s.Start();
  if (s.call->should_abort && s.call->should_abort()) {
    s.aborted = true;
    return 0;
  }
  if (Clock::now() - s.start > s.call->max_duration) {
    s.too_long = true;
    return 0;
  }
  if (s.reply->streamed) {
    if (!s.call->on_chunk(std::string_view(data, bytes))) {
      s.aborted = true;
      return 0;
    }
    return bytes;
  }
  if (s.reply->body.size() + bytes > s.call->max_buffered) {
    s.too_large = true;
    return 0;
  }
  s.reply->body.append(data, bytes);
  return bytes;
}

size_t OnHeader(char*, size_t size, size_t n, void* user) {
  static_cast<State*>(user)->last_byte = Clock::now();
  return size * n;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  State& s = *static_cast<State*>(user);
  if (s.call->should_abort && s.call->should_abort()) {
    s.aborted = true;
    return 1;
  }
  const auto now = Clock::now();
  if (now - s.last_byte > s.call->idle_timeout) {
    s.timed_out = true;
    return 1;
  }
  if (now - s.start > s.call->max_duration) {
    s.too_long = true;
    return 1;
  }
  return 0;
}

// Easy handles kept between transfers: each keeps its connections to the backends open, so a
// request reuses one (no TCP handshake per request). At most kPoolSize are kept.
constexpr size_t kPoolSize = 64;
std::mutex pool_mu;
std::vector<CURL*>* pool = new std::vector<CURL*>();  // never freed: used until exit

CURL* TakeHandle() {
  {
    std::lock_guard lock(pool_mu);
    if (!pool->empty()) {
      CURL* h = pool->back();
      pool->pop_back();
      curl_easy_reset(h);  // options back to defaults; live connections stay
      return h;
    }
  }
  return curl_easy_init();
}

void GiveBack(CURL* h, bool reusable) {
  if (reusable) {
    std::lock_guard lock(pool_mu);
    if (pool->size() < kPoolSize) return pool->push_back(h);
  }
  curl_easy_cleanup(h);
}

}  // namespace

UpstreamReply PerformUpstream(const UpstreamCall& call) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  UpstreamReply reply;
  CURL* h = TakeHandle();
  if (!h) {
    reply.error = "curl_easy_init failed";
    return reply;
  }
  State s;
  s.call = &call;
  s.h = h;
  s.reply = &reply;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Accept: application/json, text/event-stream, application/x-ndjson");
  std::string auth;
  if (!call.api_key.empty()) {
    auth = "Authorization: Bearer " + call.api_key;
    headers = curl_slist_append(headers, auth.c_str());
  }
  if (call.method == "POST") {
    headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, call.body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(call.body.size()));
  }
  curl_easy_setopt(h, CURLOPT_URL, call.url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);  // the configured URL only
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "qwenmux/0.1");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(call.connect_timeout.count()));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &s);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, OnProgress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &s);
  const CURLcode rc = curl_easy_perform(h);
  if (rc == CURLE_OK) {
    s.Start();  // an empty body
    reply.outcome = UpstreamReply::Outcome::kOk;
  } else if (s.too_large) {
    reply.outcome = UpstreamReply::Outcome::kTooLarge;
  } else if (s.aborted) {
    reply.outcome = UpstreamReply::Outcome::kAborted;
  } else if (s.too_long) {
    reply.outcome = UpstreamReply::Outcome::kTooLong;
  } else if (s.timed_out || rc == CURLE_OPERATION_TIMEDOUT) {
    reply.outcome = UpstreamReply::Outcome::kTimeout;
  } else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST) {
    reply.outcome = UpstreamReply::Outcome::kConnectFailed;
  } else {
    reply.outcome = UpstreamReply::Outcome::kError;
  }
  if (s.too_long) reply.error = fmt::format("the transfer ran past its limit of {} ms", call.max_duration.count());
  else if (rc != CURLE_OK) reply.error = *errbuf ? errbuf : curl_easy_strerror(rc);
  curl_slist_free_all(headers);
  GiveBack(h, rc == CURLE_OK);  // a failed or aborted transfer's connection is not kept
  return reply;
}

std::string Snippet(const std::string& s) {
  std::string out = s.substr(0, 200);
  std::replace_if(out.begin(), out.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  return out.size() < s.size() ? out + "..." : out;
}

std::string ErrorMessageOf(const std::string& body) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error")) {
    const nlohmann::json& e = j["error"];
    if (e.is_string()) return e.get<std::string>();
    if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
  }
  return Snippet(body);
}

std::string DescribeFailure(const UpstreamReply& r) {
  switch (r.outcome) {
    case UpstreamReply::Outcome::kConnectFailed: return fmt::format("cannot connect: {}", r.error);
    case UpstreamReply::Outcome::kTimeout: return fmt::format("timed out: {}", r.error);
    case UpstreamReply::Outcome::kTooLong: return r.error;
    case UpstreamReply::Outcome::kTooLarge: return "the answer is too large";
    case UpstreamReply::Outcome::kAborted: return "aborted";
    case UpstreamReply::Outcome::kError: return r.error;
    case UpstreamReply::Outcome::kOk: break;
  }
  return fmt::format("HTTP {}: {}", r.status, ErrorMessageOf(r.body));
}


}  // namespace qwenmux::server
