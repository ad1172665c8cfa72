// Upstreams::Run and Proxy (upstream.h): one proxied request, on its own thread.
#include <algorithm>
#include <memory>

#include <fmt/format.h>

#include "server/upstream.h"
#include "server/upstream_http.h"
#include "server/upstream_stream.h"
#include "server/upstream_translate.h"

namespace qwenmux::server {

namespace {

using orchestrator::BackendDialect;
using Outcome = UpstreamReply::Outcome;
using Clock = std::chrono::steady_clock;

// How a request goes to a backend of the other dialect.
enum class Kind {
  kPass,
  kChatToOllama,
  kChatToOpenAi,
  kEmbedToOllama,
  kEmbedToOpenAi,
  kEmbedToOpenAiLegacy,
  kCompleteToOllama,   // /v1/completions -> /api/generate
  kGenerateToOpenAi,   // /api/generate -> /v1/chat/completions, or /v1/completions when raw
  kRerank,             // /v1/rerank to any backend as it is: a qwenmux of either dialect has it
};

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Events of a stream chunk as the client gets it: SSE events ("data:") or NDJSON lines.
int64_t EventsIn(ClientDialect client, std::string_view s) {
  int64_t n = 0;
  if (client == ClientDialect::kOpenAi) {
    for (size_t at = s.find("data:"); at != std::string_view::npos; at = s.find("data:", at + 5)) ++n;
  } else {
    n = std::count(s.begin(), s.end(), '\n');
  }
  return n;
}

void WriteStreamError(ClientDialect client, Responder& r, const std::string& msg) {
  r.NoteError(msg);
  if (client == ClientDialect::kOpenAi) {
    r.Write("data: " + Dump(Json{{"error", {{"message", msg}, {"type", "server_error"}, {"code", 502}}}}) + "\n\n");
  } else {
    r.Write(Dump(Json{{"error", msg}}) + "\n");
  }
}

}  // namespace

Upstreams::Backend* Upstreams::Find(std::string_view name) const {
  for (const auto& b : backends_) {
    if (b->config.name == name) return b.get();
  }
  return nullptr;
}

Status Upstreams::CheckModel(const Backend& b, const std::string& model) const {
  const auto& c = b.config;
  std::vector<std::string> known;
  if (!c.models.empty()) known = c.models;
  else if (b.discovered) for (const auto& m : b.models) known.push_back(m.first);
  if ((c.models.empty() && !b.discovered) || std::find(known.begin(), known.end(), model) != known.end()) return Status::Ok();
  std::string list;
  for (const std::string& k : known) list += (list.empty() ? "" : ", ") + c.name + "/" + k;
  return Error(StatusCode::kNotFound, "model \"{}/{}\" not found on backend {}; it has: {}", c.name, model, c.name,
               list.empty() ? "(none)" : list);
}

void Upstreams::Run(ClientDialect client, std::string path, Json body, std::shared_ptr<Responder> r,
                    const Fallback& fallback) {
  const std::string requested = body.value("model", "");
  const size_t slash = requested.find('/');
  const std::string name = requested.substr(0, slash), model = requested.substr(slash + 1);
  Backend* b = Find(name);
  if (!b) return SendDialectError(client, *r, 404, fmt::format("backend \"{}\" is not configured", name));
  const auto& c = b->config;
  r->NoteUsage(requested, -1, -1);
  std::string failover;
  {  // The model must be one the backend exposes (once its list is known).
    std::lock_guard lock(mu_);
    if (Status known = CheckModel(*b, model); !known.ok()) return SendDialectError(client, *r, 404, known.message());
    // Down (a check or a request failed since it last worked) or saturated: fail over at once.
    const bool down = !b->healthy && (b->discovered || b->backoff.count() > 0);
    const bool full = c.max_concurrent > 0 && b->in_flight >= c.max_concurrent;
    if (fallback && !c.tier.empty() && (down || full)) {
      failover = fmt::format("backend {} is {}", name,
                             down ? std::string("unhealthy") : fmt::format("saturated ({} requests in flight)", b->in_flight));
    } else {
      ++b->requests;
      ++b->in_flight;
    }
  }
  if (!failover.empty()) return fallback(c.tier, failover);
  Proxy(client, path, std::move(body), r, *b, requested, model, fallback);
}

void Upstreams::Proxy(ClientDialect client, const std::string& path, Json body, const std::shared_ptr<Responder>& r,
                      Backend& b, const std::string& requested, const std::string& model, const Fallback& fallback) {
  const auto& c = b.config;
  const std::string& name = c.name;
  const auto t0 = Clock::now();
  const bool same = (client == ClientDialect::kOllama) == (c.dialect == BackendDialect::kOllama);
  // Streamed: OpenAI "stream": true; Ollama streams unless "stream": false (chat and generate).
  const bool ollama_streams = path == "/api/chat" || path == "/api/generate";
  const bool stream = client == ClientDialect::kOpenAi ? body.value("stream", false)
                                                       : ollama_streams && !(body.contains("stream") && body["stream"] == false);
  const bool base64 = body.contains("encoding_format") && body["encoding_format"] == "base64";
  const bool include_usage = body.contains("stream_options") && body["stream_options"].is_object() &&
                             body["stream_options"].value("include_usage", false);
  Kind kind = Kind::kPass;
  std::string target = path;
  Result<Json> sent = Json();
  const bool rerank = path == "/v1/rerank" || path == "/v1/reranking";
  if (same || rerank) {
    if (rerank) kind = Kind::kRerank, target = same ? path : "/v1/rerank";
    body["model"] = model;
    sent = std::move(body);
  } else if (client == ClientDialect::kOpenAi && path == "/v1/completions") {
    kind = Kind::kCompleteToOllama, target = "/api/generate", sent = OpenAiCompletionToOllama(body, model);
  } else if (client == ClientDialect::kOllama && path == "/api/generate") {
    bool chat = true;
    sent = OllamaGenerateToOpenAi(body, model, &chat);
    kind = Kind::kGenerateToOpenAi, target = chat ? "/v1/chat/completions" : "/v1/completions";
  } else if (client == ClientDialect::kOpenAi && path == "/v1/chat/completions") {
    kind = Kind::kChatToOllama, target = "/api/chat", sent = OpenAiChatToOllama(body, model);
  } else if (client == ClientDialect::kOpenAi && path == "/v1/embeddings") {
    kind = Kind::kEmbedToOllama, target = "/api/embed", sent = OpenAiEmbedToOllama(body, model);
  } else if (client == ClientDialect::kOllama && path == "/api/chat") {
    kind = Kind::kChatToOpenAi, target = "/v1/chat/completions", sent = OllamaChatToOpenAiRequest(body, model);
  } else if (client == ClientDialect::kOllama && (path == "/api/embed" || path == "/api/embeddings")) {
    const bool legacy = path == "/api/embeddings";
    kind = legacy ? Kind::kEmbedToOpenAiLegacy : Kind::kEmbedToOpenAi, target = "/v1/embeddings";
    sent = OllamaEmbedToOpenAi(body, model, legacy);
  } else {
    Record(b, -1, -1, true, false);
    return SendDialectError(client, *r, 400,
                            fmt::format("backend {} speaks the {} dialect; {} is not translated to it (ask it in its "
                                        "own dialect)", name, orchestrator::BackendDialectName(c.dialect), path));
  }
  if (!sent.ok()) {
    Record(b, -1, -1, true, false);
    return SendDialectError(client, *r, 400, fmt::format("backend {}: {}", name, sent.status().message()));
  }
  UpstreamCall call;
  call.method = "POST";
  call.url = c.url + target;
  call.body = Dump(*sent);
  call.api_key = b.api_key;
  call.connect_timeout = options_.connect_timeout;
  call.idle_timeout = std::chrono::milliseconds(c.timeout.ms);
  call.max_duration = options_.max_duration;
  call.max_buffered = options_.max_response_bytes;
  call.should_abort = [this, r] { return abort_.load() || r->cancelled(); };

  std::unique_ptr<StreamTranslator> translator;
  if (stream && kind == Kind::kChatToOllama) translator = std::make_unique<OllamaToSse>(requested, include_usage);
  if (stream && kind == Kind::kChatToOpenAi) translator = std::make_unique<SseToOllama>(requested);
  if (stream && kind == Kind::kCompleteToOllama) translator = std::make_unique<OllamaToSse>(requested, include_usage, 1u << 20, true);
  if (stream && kind == Kind::kGenerateToOpenAi) translator = std::make_unique<SseToOllama>(requested, 1u << 20, true);
  Clock::time_point first{};
  int64_t events = 0;
  std::string stream_error;  // a translation failure mid-stream
  if (stream) {
    call.on_start = [&](long status, const std::string& content_type) {
      if (status != 200) return false;
      first = Clock::now();
      std::string type = client == ClientDialect::kOpenAi ? "text/event-stream" : "application/x-ndjson";
      if (!translator && !content_type.empty()) type = content_type;
      r->StartStream(200, type);
      return true;
    };
    call.on_chunk = [&](std::string_view chunk) {
      std::string out;
      if (translator) {
        if (Status s = translator->Feed(chunk, &out); !s.ok()) {
          stream_error = s.message();
          if (!out.empty()) r->Write(std::move(out));
          return false;
        }
      } else {
        out.assign(chunk);
      }
      if (out.empty()) return true;
      events += EventsIn(client, out);
      return r->Write(std::move(out));
    };
  }
  const UpstreamReply reply = PerformUpstream(call);
  const std::string who = fmt::format("backend {} ({})", name, c.url);
  const double ttft = first == Clock::time_point{} ? -1 : Ms(first - t0);
  if (reply.streamed) {  // the status line is sent: an error can only end the stream
    std::string error = stream_error;
    if (error.empty() && reply.outcome != Outcome::kOk && reply.outcome != Outcome::kAborted) error = DescribeFailure(reply);
    if (error.empty() && reply.outcome == Outcome::kOk && translator) {
      std::string out;
      if (Status s = translator->Finish(&out); !s.ok()) error = s.message();
      if (!out.empty()) r->Write(std::move(out));
    }
    const double secs = Ms(Clock::now() - first) / 1000;
    const bool broke = !error.empty() && stream_error.empty();  // the connection, not the content
    Record(b, ttft, events > 2 && secs > 0 ? static_cast<double>(events - 1) / secs : -1, !error.empty(), broke);
    if (!error.empty()) WriteStreamError(client, *r, fmt::format("{}: the stream broke off: {}", who, error));
    r->End();
    return;
  }
  auto fail = [&](int status, const std::string& msg, bool connection) {
    Record(b, -1, -1, true, connection);
    // Nothing reached the client yet: a backend with a tier fails over (not for its own 4xx).
    if (fallback && !c.tier.empty() && (status == 502 || status == 504) && !r->cancelled()) return fallback(c.tier, msg);
    SendDialectError(client, *r, status, msg);
  };
  switch (reply.outcome) {
    case Outcome::kAborted: return fail(503, fmt::format("{}: request cancelled", who), false);
    case Outcome::kTimeout:
      return fail(504, fmt::format("{} did not answer within {} ms: {}", who, c.timeout.ms, reply.error), true);
    case Outcome::kTooLong: return fail(504, fmt::format("{}: {}", who, reply.error), true);
    case Outcome::kConnectFailed: return fail(502, fmt::format("{}: {}", who, DescribeFailure(reply)), true);
    case Outcome::kTooLarge:
    case Outcome::kError: return fail(502, fmt::format("{}: {}", who, DescribeFailure(reply)), false);
    case Outcome::kOk: break;
  }
  if (kind == Kind::kRerank && (reply.status == 404 || reply.status == 405 || reply.status == 501)) {
    return fail(501, fmt::format("{} has no rerank endpoint: POST {} answered HTTP {}: {}", who, target, reply.status,
                                 ErrorMessageOf(reply.body)), false);
  }
  if (reply.status >= 400 && reply.status < 500) {  // the backend refused the request: its status and words
    return fail(static_cast<int>(reply.status), fmt::format("{}: {}", who, ErrorMessageOf(reply.body)), false);
  }
  if (reply.status != 200) {
    return fail(502, fmt::format("{} answered HTTP {}: {}", who, reply.status, ErrorMessageOf(reply.body)), false);
  }
  Json answer = Json::parse(reply.body, nullptr, false);
  if (answer.is_discarded() || !answer.is_object()) {
    return fail(502, fmt::format("{} returned invalid JSON: {}", who, Snippet(reply.body)), false);
  }
  Result<Json> t = answer;
  switch (kind) {
    case Kind::kPass: break;
    case Kind::kChatToOllama: t = OllamaChatToOpenAi(answer, requested); break;
    case Kind::kChatToOpenAi: t = OpenAiChatAnswerToOllama(answer, requested); break;
    case Kind::kEmbedToOllama: t = OllamaEmbedAnswerToOpenAi(answer, requested, base64); break;
    case Kind::kEmbedToOpenAi: t = OpenAiEmbedAnswerToOllama(answer, requested, false); break;
    case Kind::kEmbedToOpenAiLegacy: t = OpenAiEmbedAnswerToOllama(answer, requested, true); break;
    case Kind::kCompleteToOllama: t = OllamaGenerateAnswerToOpenAi(answer, requested); break;
    case Kind::kGenerateToOpenAi: t = OpenAiAnswerToOllamaGenerate(answer, requested); break;
    case Kind::kRerank: break;
  }
  if (!t.ok()) return fail(502, fmt::format("{} returned an unexpected answer: {}", who, t.status().message()), false);
  answer = std::move(*t);
  if ((kind == Kind::kPass || kind == Kind::kRerank) && answer.contains("model")) answer["model"] = requested;
  // Tokens/s of a plain answer: its completion tokens over the whole time.
  int64_t tokens = 0;
  if (answer.contains("usage") && answer["usage"].is_object()) tokens = answer["usage"].value("completion_tokens", int64_t{0});
  else tokens = answer.value("eval_count", int64_t{0});
  const double secs = Ms(Clock::now() - t0) / 1000;
  Record(b, -1, tokens > 0 && secs > 0 ? tokens / secs : -1, false, false);
  r->Send(200, "application/json", Dump(answer));
}

}  // namespace qwenmux::server
