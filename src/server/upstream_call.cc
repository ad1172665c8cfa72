// Upstreams::Call (upstream.h): a whole request to a backend model made by qwenmux itself, in
// the OpenAI dialect whatever the backend's, through the same HTTP client (upstream_http.h) and
// translations (upstream_translate.h) as the proxied requests.
#include <chrono>

#include <fmt/format.h>

#include "server/upstream.h"
#include "server/upstream_http.h"
#include "server/upstream_translate.h"

namespace qwenmux::server {

namespace {

using orchestrator::BackendDialect;
using Outcome = UpstreamReply::Outcome;

}  // namespace

Result<Json> Upstreams::Call(CallKind kind, const std::string& requested, Json body) {
  const size_t slash = requested.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == requested.size())
    return Error(StatusCode::kInvalidArgument, "\"{}\" does not name a backend model (NAME/MODEL)", requested);
  const std::string name = requested.substr(0, slash), model = requested.substr(slash + 1);
  Backend* b = Find(name);
  if (!b) return Error(StatusCode::kNotFound, "backend \"{}\" is not configured", name);
  const auto& c = b->config;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Error(StatusCode::kUnavailable, "backend {}: the server is shutting down", name);
    QM_RETURN_IF_ERROR(CheckModel(*b, model));
    ++active_;
    ++b->requests;
    ++b->in_flight;
  }
  struct Done {  // Shutdown waits for every call
    Upstreams* u;
    ~Done() {
      std::lock_guard lock(u->mu_);
      --u->active_;
      u->cv_.notify_all();
    }
  } done{this};

  const bool ollama = c.dialect == BackendDialect::kOllama;
  const bool chat = kind == CallKind::kChat;
  body["stream"] = false;
  body.erase("stream_options");
  Result<Json> sent = body;
  std::string target;
  if (!ollama) {
    sent->operator[]("model") = model;
    target = chat ? "/v1/chat/completions" : "/v1/embeddings";
  } else {
    sent = chat ? OpenAiChatToOllama(body, model) : OpenAiEmbedToOllama(body, model);
    target = chat ? "/api/chat" : "/api/embed";
  }
  const std::string who = fmt::format("backend {} ({})", name, c.url);
  if (!sent.ok()) {
    Record(*b, -1, -1, true, false);
    return Error(StatusCode::kInvalidArgument, "{}: {}", who, sent.status().message());
  }
  UpstreamCall call;
  call.method = "POST";
  call.url = c.url + target;
  call.body = Dump(*sent);
  call.api_key = b->api_key;
  call.connect_timeout = options_.connect_timeout;
  call.idle_timeout = std::chrono::milliseconds(c.timeout.ms);
  call.max_duration = options_.max_duration;
  call.max_buffered = options_.max_response_bytes;
  call.should_abort = [this] { return abort_.load(); };
  const auto t0 = std::chrono::steady_clock::now();
  const UpstreamReply reply = PerformUpstream(call);
  auto fail = [&](StatusCode code, const std::string& msg, bool connection) -> Status {
    Record(*b, -1, -1, true, connection);
    return Status(code, msg);
  };
  switch (reply.outcome) {
    case Outcome::kAborted: return fail(StatusCode::kUnavailable, fmt::format("{}: the server is shutting down", who), false);
    case Outcome::kTimeout:
      return fail(StatusCode::kUnavailable, fmt::format("{} did not answer within {} ms: {}", who, c.timeout.ms, reply.error),
                  true);
    case Outcome::kTooLong: return fail(StatusCode::kUnavailable, fmt::format("{}: {}", who, reply.error), true);
    case Outcome::kConnectFailed:
      return fail(StatusCode::kUnavailable, fmt::format("{}: {}", who, DescribeFailure(reply)), true);
    case Outcome::kTooLarge:
    case Outcome::kError: return fail(StatusCode::kUnavailable, fmt::format("{}: {}", who, DescribeFailure(reply)), false);
    case Outcome::kOk: break;
  }
  if (reply.status >= 400 && reply.status < 500)
    return fail(StatusCode::kInvalidArgument, fmt::format("{}: {}", who, ErrorMessageOf(reply.body)), false);
  if (reply.status != 200)
    return fail(StatusCode::kUnavailable, fmt::format("{} answered HTTP {}: {}", who, reply.status, ErrorMessageOf(reply.body)),
                false);
  const Json answer = Json::parse(reply.body, nullptr, false);
  if (!answer.is_object()) return fail(StatusCode::kUnavailable, fmt::format("{} returned invalid JSON: {}", who, Snippet(reply.body)), false);
  Result<Json> out = answer;
  if (ollama) out = chat ? OllamaChatToOpenAi(answer, requested) : OllamaEmbedAnswerToOpenAi(answer, requested);
  if (!out.ok())
    return fail(StatusCode::kUnavailable, fmt::format("{} returned an unexpected answer: {}", who, out.status().message()), false);
  if (out->contains("model")) (*out)["model"] = requested;
  int64_t tokens = 0;
  if (out->contains("usage") && (*out)["usage"].is_object()) tokens = (*out)["usage"].value("completion_tokens", int64_t{0});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Record(*b, -1, tokens > 0 && secs > 0 ? tokens / secs : -1, false, false);
  return out;
}

rag::BackendAccess BackendAccessOf(Upstreams* u) {
  rag::BackendAccess a;
  if (!u || u->empty()) return a;
  a.owns = [u](std::string_view ref) { return u->Owns(ref); };
  a.call = [u](rag::BackendCallKind kind, const std::string& model, Json body) {
    return u->Call(kind == rag::BackendCallKind::kChat ? Upstreams::CallKind::kChat : Upstreams::CallKind::kEmbeddings,
                   model, std::move(body));
  };
  return a;
}

}  // namespace qwenmux::server
