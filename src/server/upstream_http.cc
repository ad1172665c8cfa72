#include "server/upstream_http.h"

#include <curl/curl.h>

#include <mutex>

#include <fmt/format.h>

namespace qwenmux::server {

namespace {

using Clock = std::chrono::steady_clock;

struct State {
  const UpstreamCall* call = nullptr;
  CURL* h = nullptr;
  UpstreamReply* reply = nullptr;
  bool started = false;
  bool too_large = false, timed_out = false, aborted = false;
  Clock::time_point last_byte = Clock::now();

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
  if (Clock::now() - s.last_byte > s.call->idle_timeout) {
    s.timed_out = true;
    return 1;
  }
  return 0;
}

}  // namespace

UpstreamReply PerformUpstream(const UpstreamCall& call) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  UpstreamReply reply;
  CURL* h = curl_easy_init();
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
  } else if (s.timed_out || rc == CURLE_OPERATION_TIMEDOUT) {
    reply.outcome = UpstreamReply::Outcome::kTimeout;
  } else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST) {
    reply.outcome = UpstreamReply::Outcome::kConnectFailed;
  } else {
    reply.outcome = UpstreamReply::Outcome::kError;
  }
  if (rc != CURLE_OK) reply.error = *errbuf ? errbuf : curl_easy_strerror(rc);
  curl_slist_free_all(headers);
  curl_easy_cleanup(h);
  return reply;
}

}  // namespace qwenmux::server
