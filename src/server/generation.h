// The part of a text-generation request both dialects share: rendering and encoding the chat
// prompt, the context and max_tokens checks, and submitting to the scheduler with the
// connection's cancellation wired to the request.
//
// Thread-safety: functions; the callbacks given to Submit run on the scheduler's worker.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chat/chat.h"
#include "orchestrator/scheduler/scheduler.h"
#include "server/api_common.h"
#include "server/http_server.h"
#include "server/service.h"
#include "structured/structured.h"

namespace qwenmux::server {

struct GenerationJob {
  Route route;
  std::shared_ptr<const tokenizer::Tokenizer> tok;
  std::vector<int32_t> prompt;
  engine::GenerateOptions options;
  std::optional<orchestrator::KeepAlive> keep_alive;
  bool logprobs = false;
  int32_t top_logprobs = 0;
  bool chat = true;       // output is an assistant turn (reasoning / content / tool calls)
  bool thinking = true;   // the assistant turn starts in reasoning
  bool thinking_chosen = false;  // the request set enable_thinking / think itself
  structured::Constraint constraint;  // JSON schema / JSON object / forced tool calls (answer part)
  // Thinking tokens before </think> is forced (< 0: unlimited). A constrained request (schema,
  // JSON, forced tool call) that chose neither thinking nor a budget gets
  // DefaultConstrainedThinking(max_tokens), so its answer is not crowded out by thinking.
  int32_t thinking_budget = -1;
  // Ollama options.num_ctx (0: not given): the request's context, prompt and answer together,
  // within the model's (CheckLimits); above the model's it is clamped and the answer says so.
  int64_t num_ctx = 0;
  // OpenAI logit_bias: (token id, -100..100) added to the logits before sampling (and before the
  // constraint's mask, which wins); -100 bans the token. Ids checked against the vocabulary.
  std::vector<std::pair<int32_t, float>> logit_bias;
  // lora_scale (OpenAI) / options.lora_scale (Ollama): replaces the adapter's configured scale;
  // only for an adapter model ("<base>:<adapter>", SubmitGeneration refuses it otherwise).
  std::optional<float> lora_scale;
};

// Constraints from request fields, compiled against the job's vocabulary (LoadTokenizer first).
// Errors name the field (kInvalidArgument / kUnsupported).
// Constraints are compiled once per distinct schema / tool set and shared by later requests
// (a process-wide structured::ConstraintCache, bounded by bytes); CachedConstraints() is its
// size, ConstraintCacheBytes() the bytes compiled constraints hold now (grammars and mask
// caches, evicted ones still in use included). Compilation (and the start state's masks) runs
// on the calling thread, the HTTP work pool, never on the model's worker.
Status SetJsonSchema(GenerationJob* job, const Json& schema);
Status SetJsonObject(GenerationJob* job);
Status SetToolChoice(GenerationJob* job, const Json& tools, const Json& tool_choice, bool parallel_calls);
size_t CachedConstraints();
uint64_t ConstraintCacheBytes();
uint64_t ConstraintCacheMaxBytes();
void SetConstraintCacheBytes(uint64_t max_bytes);  // serve --constraint-cache (default 256 MiB)
// Runs `hook` on the compiling thread before each compile (tests: event ordering).
void SetConstraintCompileHookForTesting(std::function<void()> hook);

// The thinking budget of a constrained request that chose none: a quarter of max_tokens, at
// most 256 tokens.
int32_t DefaultConstrainedThinking(int32_t max_tokens);

// Loads the route's tokenizer into job->tok.
Status LoadTokenizer(Service& service, GenerationJob* job);
// Renders `request` with the Qwen3 template and encodes it (see prompt.h).
Status EncodeChat(Service& service, const chat::ChatRequest& request, GenerationJob* job);
// Prompt within the context (400 otherwise) and max_tokens: the request's, else the default,
// clipped to what the context leaves; above the server's cap is a 400 naming `max_tokens_field`
// (the dialect's name for it). The context is the model's, or job->num_ctx when that is smaller.
Status CheckLimits(Service& service, std::optional<int64_t> max_tokens, GenerationJob* job,
                   const char* max_tokens_field = "max_tokens");
// The context a request runs in: the model's, or num_ctx when given and smaller.
int32_t RequestContext(const GenerationJob& job);

// The request field `latency` (router hint): "" or a valid value; the error names the field, so
// handlers answer it with param "latency" rather than "model".
Status CheckLatencyField(const std::string& latency);
// HTTP param for a failed Resolve: "model" when no such model, none otherwise (a bad header).
std::string RouteErrorParam(const Status& s);

// A generation that ended "cancelled" while its client still listens (server shutdown, or the
// model's worker stopping): an error (kCancelled: 503 + Retry-After; in a stream, an error event
// the official clients raise) rather than an answer that looks finished. Notes the usage.
Status CancelledError(const orchestrator::GenerationResult& g, Responder& r);

// Headers that show the route decision.
HeaderList RouteHeaders(const Route& route);
Json RouteJson(const Route& route, const std::string& served, bool degraded);

// Backends in routing (upstream.h), for both dialects: when `route` came from `auto` or a tier
// (not an explicit name, an adapter or a failover), the backend model "NAME/MODEL" of the same
// tier that is faster than the route's local model (Upstreams::Prefer), else "". A pick is
// written to the routing log (reason "backend"; `kind`: "chat" or "completion").
std::string PreferBackend(Service& service, const Route& route, const std::string& kind);

// Submits; the responder's cancellation cancels the request. on_token returning false also
// cancels. Error (nothing submitted) when the scheduler refuses.
Status SubmitGeneration(Service& service, GenerationJob& job, std::shared_ptr<Responder> responder,
                        std::function<bool(const orchestrator::TokenEvent&)> on_token,
                        std::function<void(Result<orchestrator::GenerationResult>)> on_done);

// Wraps the handler of a model request so that a 400 it answers itself (on its own thread,
// while it runs) counts as qwenmux_requests_failed_total{model, reason="invalid_request"}, when
// the body's `model` names a served model (name or alias: "auto", "" and unknown names are not
// counted, so clients cannot create series). 400s sent later from the scheduler's callbacks are
// counted by the scheduler itself.
Handler CountInvalidRequests(Service& service, Handler handler);
// The served model a request's `model` field names (name or alias), else nullptr.
const ServedModel* NamedModel(const Service& service, const std::string& requested);

// Token text for logprobs (raw bytes of the token, invalid UTF-8 replaced when dumped).
std::string TokenText(const tokenizer::Tokenizer& tok, int32_t id);

}  // namespace qwenmux::server
