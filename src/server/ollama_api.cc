// Ollama-compatible routes: /api/chat, /api/generate (NDJSON streaming, default on),
// /api/embed (and the older /api/embeddings), /api/tags, /api/ps, /api/show, /api/version. Errors: {"error": "..."}; overload
// is 503 with Retry-After (the OpenAI side answers 429).
#include <chrono>
#include <ctime>
#include <filesystem>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "server/generation.h"
#include "server/upstream.h"

namespace qwenmux::server {

namespace {

using orchestrator::GenerationResult;
using orchestrator::TokenEvent;

void SendError(Responder& r, const Status& s) {
  ApiError e = ErrorFromStatus(s);
  if (e.status == 429) e.status = 503;
  HeaderList h;
  if (e.retry_after > 0) h.push_back({"Retry-After", std::to_string(e.retry_after)});
  r.NoteError(e.message);
  r.Send(e.status, "application/json", Dump(Json{{"error", e.message}}), h);
}

std::string Rfc3339(std::chrono::system_clock::time_point t) {
  const auto secs = std::chrono::time_point_cast<std::chrono::seconds>(t);
  const auto frac = std::chrono::duration_cast<std::chrono::nanoseconds>(t - secs).count();
  const std::time_t tt = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:09d}Z", tm, frac);
}

int64_t Nanos(double seconds) { return static_cast<int64_t>(seconds * 1e9); }

// options{} -> sampler and length; returns num_predict when given (>= 1).
std::optional<int64_t> ReadOptions(Fields& top, const ServiceLimits& limits, GenerationJob* job) {
  const Json* o = top.Get("options");
  if (!o) return std::nullopt;
  if (!o->is_object()) {
    top.Fail("options", "expected an object");
    return std::nullopt;
  }
  Fields f(*o, "options.");
  auto& s = job->options.sampler;
  if (auto v = f.Number("temperature", 0, 100)) s.temperature = static_cast<float>(*v);
  if (auto v = f.Number("top_p", 0, 1)) s.top_p = *v <= 0 ? 1e-6f : static_cast<float>(*v);
  if (auto v = f.Int("top_k", -1, 1000000)) s.top_k = static_cast<int32_t>(*v);
  if (auto v = f.Number("min_p", 0, 1)) s.min_p = static_cast<float>(*v);
  if (auto v = f.Number("repeat_penalty", 0.01, 10)) s.repetition_penalty = static_cast<float>(*v);
  if (auto v = f.Number("presence_penalty", -2, 2)) s.presence_penalty = static_cast<float>(*v);
  if (auto v = f.Number("frequency_penalty", -2, 2)) s.frequency_penalty = static_cast<float>(*v);
  // Ollama: -1 = the whole context (every token so far), 0 = off.
  if (auto v = f.Int("repeat_last_n", -1, 1 << 20)) s.penalty_last_n = *v < 0 ? INT32_MAX : static_cast<int32_t>(*v);
  if (auto v = f.Int("seed", INT64_MIN, INT64_MAX)) s.seed = static_cast<uint64_t>(*v);
  if (auto v = f.Strings("stop", static_cast<size_t>(limits.max_stop))) job->options.stop = *v;
  // The request's context within the model's (generation.h, GenerationJob::num_ctx).
  if (auto v = f.Int("num_ctx", 1, INT32_MAX)) job->num_ctx = *v;
  if (auto v = f.Number("lora_scale", -kMaxLoraScale, kMaxLoraScale)) job->lora_scale = static_cast<float>(*v);
  std::optional<int64_t> n = f.Int("num_predict", -2, INT32_MAX);
  if (n && *n == 0) f.Fail("num_predict", "must not be 0 (-1: until the context is full)");
  if (!f.ok()) {
    top.Adopt(f);
    return std::nullopt;
  }
  if (n && *n < 0) {
    return std::optional<int64_t>(std::min<int64_t>(limits.max_tokens, job->route.model ? job->route.model->n_ctx : limits.max_tokens));
  }
  return n;
}

struct OllamaGen {
  std::shared_ptr<Responder> r;
  GenerationJob job;
  bool stream = true, chat = true;
  bool started = false;
  ChatDeltaSplitter splitter{true};
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();

  Json Base(bool done) const {
    return Json{{"model", job.route.name()}, {"created_at", Rfc3339(std::chrono::system_clock::now())},
                {"done", done}};
  }
  void Line(const Json& j) {
    if (!started) {
      started = true;
      r->StartStream(200, "application/x-ndjson", RouteHeaders(job.route));
    }
    r->Write(Dump(j) + "\n");
  }
};

Json OllamaToolCalls(const std::vector<chat::ChatToolCall>& calls) {
  Json arr = Json::array();
  for (const auto& c : calls) {
    Json args = c.arguments;
    if (args.is_string()) {
      try {
        args = Json::parse(args.get<std::string>());
      } catch (const Json::parse_error&) {
      }
    }
    arr.push_back(Json{{"function", {{"name", c.name}, {"arguments", args}}}});
  }
  return arr;
}

bool OnToken(OllamaGen& g, const TokenEvent& ev) {
  if (!g.stream) {
    g.splitter.Push(ev.text);
    return true;
  }
  Json j = g.Base(false);
  if (g.chat) {
    const auto d = g.splitter.Push(ev.text);
    if (d.content.empty() && d.reasoning.empty() && d.tool_calls.empty()) return !g.r->cancelled();
    Json msg{{"role", "assistant"}, {"content", d.content}};
    if (!d.reasoning.empty()) msg["thinking"] = d.reasoning;
    if (!d.tool_calls.empty()) msg["tool_calls"] = OllamaToolCalls(d.tool_calls);
    j["message"] = msg;
  } else {
    const auto d = g.splitter.Push(ev.text);
    if (d.content.empty() && d.reasoning.empty()) return !g.r->cancelled();
    j["response"] = d.content;
    if (!d.reasoning.empty()) j["thinking"] = d.reasoning;
  }
  g.Line(j);
  return !g.r->cancelled();
}

void OnDone(OllamaGen& g, Result<GenerationResult> res) {
  if (res.ok() && res->finish_reason == "cancelled") res = CancelledError(*res, *g.r);
  if (!res.ok()) {
    if (g.started) {
      g.r->NoteError(res.status().message());
      g.r->Write(Dump(Json{{"error", res.status().message()}}) + "\n");
      g.r->End();
    } else {
      SendError(*g.r, res.status());
    }
    return;
  }
  const GenerationResult& out = *res;
  Json j = g.Base(true);
  j["model"] = out.model.empty() ? g.job.route.name() : out.model;
  g.r->NoteUsage(j["model"].get<std::string>(), out.prompt_tokens, out.completion_tokens);
  j["done_reason"] = out.finish_reason == "length" ? "length" : "stop";
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - g.t0).count();
  j["total_duration"] = Nanos(total);
  j["load_duration"] = Nanos(out.queue_seconds);
  j["prompt_eval_count"] = out.prompt_tokens;
  j["prompt_eval_duration"] = Nanos(std::max(0.0, out.ttft_seconds - out.queue_seconds));
  j["eval_count"] = out.completion_tokens;
  j["eval_duration"] = Nanos(std::max(0.0, out.total_seconds - out.ttft_seconds));
  j["qwenmux"] = RouteJson(g.job.route, out.model, out.degraded);
  if (g.job.num_ctx > 0) {  // what options.num_ctx became (clamped to the model's context)
    j["qwenmux"]["num_ctx"] = Json{{"requested", g.job.num_ctx}, {"applied", RequestContext(g.job)},
                                   {"clamped", g.job.num_ctx > RequestContext(g.job)}};
  }
  const chat::ParsedChatOutput p = g.splitter.Final();
  if (g.stream) {
    const auto rest = g.splitter.Flush();
    if (g.chat) {
      Json msg{{"role", "assistant"}, {"content", rest.content}};
      if (!rest.reasoning.empty()) msg["thinking"] = rest.reasoning;
      j["message"] = msg;
    } else {
      j["response"] = rest.content;
      if (!rest.reasoning.empty()) j["thinking"] = rest.reasoning;
    }
    g.Line(j);
    g.r->End();
    return;
  }
  if (g.chat) {
    Json msg{{"role", "assistant"}, {"content", p.message.content}};
    if (p.message.reasoning_content && !p.message.reasoning_content->empty()) msg["thinking"] = *p.message.reasoning_content;
    if (!p.message.tool_calls.empty()) msg["tool_calls"] = OllamaToolCalls(p.message.tool_calls);
    j["message"] = msg;
  } else {
    j["response"] = p.message.content;
    if (p.message.reasoning_content && !p.message.reasoning_content->empty()) j["thinking"] = *p.message.reasoning_content;
  }
  HeaderList h = RouteHeaders(g.job.route);
  g.r->Send(200, "application/json", Dump(j), h);
}

void Run(Service& service, std::shared_ptr<OllamaGen> g, std::optional<int64_t> max_tokens) {
  if (Status c = CheckLimits(service, max_tokens, &g->job, "options.num_predict"); !c.ok()) return SendError(*g->r, c);
  g->splitter = ChatDeltaSplitter(g->job.thinking);
  Status s = SubmitGeneration(
      service, g->job, g->r, [g](const TokenEvent& ev) { return OnToken(*g, ev); },
      [g](Result<GenerationResult> res) { OnDone(*g, std::move(res)); });
  if (!s.ok()) SendError(*g->r, s);
}

// Common head of /api/chat and /api/generate: model (routed with `in`), stream, keep_alive,
// options.
Status ReadCommon(Service& service, const HttpRequest& req, Fields& f, OllamaGen* g, orchestrator::RequestInput in,
                  std::optional<int64_t>* max_tokens) {
  const std::string model = f.String("model").value_or("");
  g->stream = f.Bool("stream").value_or(true);
  const std::string latency = f.String("latency").value_or(""), latency_header = req.Header("x-qwenmux-latency");
  in.latency_field = latency;
  in.latency_header = latency_header;
  if (const Json* fmt = f.Get("format"); fmt && !(fmt->is_string() && fmt->get<std::string>().empty())) in.json_schema = true;
  auto ka = ParseKeepAlive(f.Get("keep_alive"));
  if (!ka.ok()) return ka.status();
  g->job.keep_alive = *ka;
  if (!f.ok()) return f.status();
  if (!f.ok()) return f.status();
  auto route = service.Resolve(model, in);
  if (!route.ok()) return route.status();
  g->job.route = *route;
  *max_tokens = ReadOptions(f, service.limits(), &g->job);
  return f.status();
}

// Ollama's idiom for loading a model without generating (an empty prompt, or /api/chat with no
// messages), and with keep_alive 0 for unloading it: answers done with done_reason "load" or
// "unload".
void LoadOrUnload(Service& service, const OllamaGen& g, Responder& r) {
  const std::string name = g.job.route.model->name;
  Json j{{"model", name}, {"created_at", Rfc3339(std::chrono::system_clock::now())}};
  if (g.chat) j["message"] = Json{{"role", "assistant"}, {"content", ""}};
  else j["response"] = "";
  if (g.job.keep_alive && g.job.keep_alive->count() == 0) {
    (void)service.manager().Unload(name);
    j["done_reason"] = "unload";
  } else {
    auto lease = service.manager().Acquire(name, g.job.keep_alive);
    if (!lease.ok()) return SendError(r, lease.status());
    j["done_reason"] = "load";
  }
  j["done"] = true;
  r.Send(200, "application/json", Dump(j), RouteHeaders(g.job.route));
}

// Ollama's "format": "json" (any JSON object) or a JSON schema object. After the tokenizer is loaded.
Status ApplyFormat(Service& service, Fields& f, GenerationJob* job) {
  const Json* fmt = f.Get("format");
  if (!fmt || (fmt->is_string() && fmt->get<std::string>().empty())) return Status::Ok();
  if (!job->tok) QM_RETURN_IF_ERROR(LoadTokenizer(service, job));
  if (fmt->is_string() && *fmt == "json") return SetJsonObject(job);
  if (fmt->is_object()) {
    Status s = SetJsonSchema(job, *fmt);
    return s.ok() ? s : s.WithContext("format");
  }
  return Status(StatusCode::kInvalidArgument, "format: expected \"json\" or a JSON schema object");
}

// A request for "NAME/MODEL" of a configured backend goes to it (upstream.h); true if it went.
bool ToBackend(Service& service, const HttpRequest& req, const Json& j, const std::shared_ptr<Responder>& r,
               Upstreams::Fallback fallback = {}) {
  Upstreams* u = service.upstreams();
  if (!u || !j.contains("model") || !j["model"].is_string() || !u->Owns(j["model"].get<std::string>())) return false;
  u->Forward(ClientDialect::kOllama, req.path, j, r, std::move(fallback));
  return true;
}

// The body of /api/chat or /api/generate after parsing; `failover`: set when a backend could not
// serve (the request is then served locally, degraded).
using BodyHandler = void (*)(Service&, const HttpRequest&, const Json&, std::shared_ptr<Responder>, const std::string*);

// Backends in routing (upstream.h): a backend failure served here by a local model of `model`
// (the backend's tier when "", or the request's own "auto"/tier), marked degraded.
Upstreams::Fallback LocalFallback(Service& service, const HttpRequest& req, const Json& body,
                                  const std::shared_ptr<Responder>& r, std::string model, BodyHandler handler) {
  return [&service, req, body, r, model, handler](const std::string& tier, const std::string& why) {
    Json local = body;
    local["model"] = model.empty() ? tier : model;
    handler(service, req, local, r, &why);
  };
}

// After the route is known: a failover marks it; `auto` or a tier may go to a faster backend
// model of its tier (PreferBackend). True when the request went to a backend.
bool RouteToBackend(Service& service, const HttpRequest& req, const Json& body, const std::shared_ptr<Responder>& r,
                    Route* route, const std::string* failover, BodyHandler handler, const std::string& kind) {
  if (failover) {
    route->reason = "failover";
    route->explanation = fmt::format("{}; served by local model {}", *failover, route->name());
    return false;
  }
  const std::string pick = PreferBackend(service, *route, kind);
  if (pick.empty()) return false;
  Json to = body;
  to["model"] = pick;
  service.upstreams()->Forward(ClientDialect::kOllama, req.path, std::move(to), r,
                               LocalFallback(service, req, body, r, route->requested, handler));
  return true;
}

void ChatBody(Service& service, const HttpRequest& req, const Json& body, std::shared_ptr<Responder> r,
              const std::string* failover);
void GenerateBody(Service& service, const HttpRequest& req, const Json& body, std::shared_ptr<Responder> r,
                  const std::string* failover);

void Chat(Service& service, const HttpRequest& req, std::shared_ptr<Responder> r) {
  auto body = ParseBody(req.body);
  if (!body.ok()) return SendError(*r, body.status());
  ChatBody(service, req, *body, std::move(r), nullptr);
}

void ChatBody(Service& service, const HttpRequest& req, const Json& body, std::shared_ptr<Responder> r,
              const std::string* failover) {
  if (!failover && ToBackend(service, req, body, r, LocalFallback(service, req, body, r, "", &ChatBody))) return;
  Json j = body;
  Fields f(j);
  auto g = std::make_shared<OllamaGen>();
  g->r = r;
  const std::optional<bool> think = f.Bool("think");
  if (!f.ok()) return SendError(*r, f.status());
  // Ollama spells an assistant's reasoning "thinking".
  if (j.contains("messages") && j["messages"].is_array()) {
    for (Json& m : j["messages"]) {
      if (m.is_object() && m.contains("thinking") && !m.contains("reasoning_content")) {
        m["reasoning_content"] = m["thinking"];
      }
      if (m.is_object() && m.contains("images")) {
        return SendError(*r, Status(StatusCode::kUnsupported, "messages: images are not supported"));
      }
    }
  }
  j.erase("think");  // Ollama's flag, not a template kwarg
  if (!j.contains("messages") || (j["messages"].is_array() && j["messages"].empty())) {
    // Ollama: no messages loads the model (keep_alive 0: unloads it).
    std::optional<int64_t> unused;
    if (Status s = ReadCommon(service, req, f, g.get(), orchestrator::RequestInput{}, &unused); !s.ok()) {
      return SendError(*r, s);
    }
    return LoadOrUnload(service, *g, *r);
  }
  auto chat_req = chat::ParseChatRequestJson(j);
  if (!chat_req.ok()) return SendError(*r, chat_req.status());
  if (think) chat_req->options.enable_thinking = *think;
  std::optional<int64_t> max_tokens;
  Fields f2(j);
  if (Status s = ReadCommon(service, req, f2, g.get(), orchestrator::InputFromChat(*chat_req), &max_tokens); !s.ok()) {
    return SendError(*r, s);
  }
  if (RouteToBackend(service, req, body, r, &g->job.route, failover, &ChatBody, "chat")) return;
  if (Status e = EncodeChat(service, *chat_req, &g->job); !e.ok()) return SendError(*r, e);
  if (Status e = ApplyFormat(service, f2, &g->job); !e.ok()) return SendError(*r, e);
  Run(service, g, max_tokens);
}

void Generate(Service& service, const HttpRequest& req, std::shared_ptr<Responder> r) {
  auto body = ParseBody(req.body);
  if (!body.ok()) return SendError(*r, body.status());
  GenerateBody(service, req, *body, std::move(r), nullptr);
}

void GenerateBody(Service& service, const HttpRequest& req, const Json& body, std::shared_ptr<Responder> r,
                  const std::string* failover) {
  if (!failover && ToBackend(service, req, body, r, LocalFallback(service, req, body, r, "", &GenerateBody))) return;
  Fields f(body);
  auto g = std::make_shared<OllamaGen>();
  g->r = r;
  g->chat = false;
  const std::optional<bool> think = f.Bool("think");
  std::optional<int64_t> max_tokens;
  const std::string prompt = f.String("prompt").value_or("");
  orchestrator::RequestInput in;
  in.texts.push_back(prompt);
  in.enable_thinking = think;
  if (Status s = ReadCommon(service, req, f, g.get(), in, &max_tokens); !s.ok()) return SendError(*r, s);
  const std::string system = f.String("system").value_or("");
  const bool raw = f.Bool("raw").value_or(false);
  if (f.Get("suffix")) f.Fail("suffix", "not supported");
  if (f.Get("images")) f.Fail("images", "not supported");
  if (!f.ok()) return SendError(*r, f.status());
  if (prompt.empty()) return LoadOrUnload(service, *g, *r);  // Ollama: an empty prompt loads the model
  if (RouteToBackend(service, req, body, r, &g->job.route, failover, &GenerateBody, "completion")) return;
  if (raw) {
    if (Status e = LoadTokenizer(service, &g->job); !e.ok()) return SendError(*r, e);
    g->job.prompt = g->job.tok->Encode(prompt);
    g->job.thinking = false;
  } else {
    chat::ChatRequest cr;
    if (!system.empty()) cr.messages.push_back(chat::ChatMessage{chat::ChatRole::kSystem, system, {}, {}, {}, {}});
    cr.messages.push_back(chat::ChatMessage{chat::ChatRole::kUser, prompt, {}, {}, {}, {}});
    if (think) cr.options.enable_thinking = *think;
    if (Status e = EncodeChat(service, cr, &g->job); !e.ok()) return SendError(*r, e);
  }
  if (Status e = ApplyFormat(service, f, &g->job); !e.ok()) return SendError(*r, e);
  Run(service, g, max_tokens);
}

void Embed(Service& service, const HttpRequest& req, std::shared_ptr<Responder> r) {
  auto body = ParseBody(req.body);
  if (!body.ok()) return SendError(*r, body.status());
  if (ToBackend(service, req, *body, r)) return;
  Fields f(*body);
  const std::string model = f.String("model").value_or("");
  const bool truncate = f.Bool("truncate").value_or(true);
  const std::optional<int64_t> dims = f.Int("dimensions", 1, 1 << 20);
  auto ka = ParseKeepAlive(f.Get("keep_alive"));
  if (!ka.ok()) return SendError(*r, ka.status());
  if (!f.ok()) return SendError(*r, f.status());
  const Json* input = f.Get("input");
  if (!input) return SendError(*r, Status(StatusCode::kInvalidArgument, "input: missing"));
  std::vector<std::string> texts;
  if (input->is_string()) {
    texts.push_back(input->get<std::string>());
  } else if (input->is_array() && !input->empty()) {
    for (const Json& e : *input) {
      if (!e.is_string()) return SendError(*r, Status(StatusCode::kInvalidArgument, "input: expected strings"));
      texts.push_back(e.get<std::string>());
    }
  } else {
    return SendError(*r, Status(StatusCode::kInvalidArgument, "input: expected a string or a non-empty array of strings"));
  }
  if (texts.size() > static_cast<size_t>(service.limits().max_inputs)) {
    return SendError(*r, Error(StatusCode::kInvalidArgument, "input: at most {} inputs", service.limits().max_inputs));
  }
  auto route = service.Resolve(model, orchestrator::ModelRole::kEmbedding);
  if (!route.ok()) return SendError(*r, route.status());
  if (dims && *dims > route->model->n_embd) {
    return SendError(*r, Error(StatusCode::kInvalidArgument, "dimensions: {} is above the model's {}", *dims,
                               route->model->n_embd));
  }
  auto tok = service.Tokenizer(*route->model);
  if (!tok.ok()) return SendError(*r, tok.status());
  orchestrator::EmbedRequest er;
  er.model = route->model->name;
  er.dims = static_cast<int32_t>(dims.value_or(0));
  er.keep_alive = *ka;
  int64_t n_tokens = 0;
  for (const std::string& t : texts) {
    std::vector<int32_t> ids = (*tok)->Encode(t);
    const size_t max_len = static_cast<size_t>(route->model->n_ctx - 1);
    if (ids.size() > max_len) {
      if (!truncate) {
        return SendError(*r, Error(StatusCode::kOutOfRange, "input: {} tokens, more than the context of {}", ids.size(),
                                   route->model->n_ctx));
      }
      ids.resize(max_len);
    }
    n_tokens += static_cast<int64_t>(ids.size()) + 1;
    er.inputs.push_back(std::move(ids));
  }
  const Route rt = *route;
  const auto t0 = std::chrono::steady_clock::now();
  er.on_done = [r, rt, n_tokens, t0](Result<std::vector<std::vector<float>>> res) {
    if (!res.ok()) return SendError(*r, res.status());
    r->NoteUsage(rt.model->name, n_tokens, -1);
    Json out{{"model", rt.model->name}, {"embeddings", *res},
             {"total_duration", Nanos(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count())},
             {"load_duration", 0}, {"prompt_eval_count", n_tokens}, {"qwenmux", RouteJson(rt, "", false)}};
    r->Send(200, "application/json", Dump(out), RouteHeaders(rt));
  };
  auto h = service.scheduler().Submit(std::move(er));
  if (!h.ok()) return SendError(*r, h.status());
  r->OnCancel([h = *h] { h->Cancel(); });
}

// Ollama's older POST /api/embeddings: {model, prompt} -> {"embedding": [...]}, one text, cut to
// the context (an empty prompt gives an empty embedding, as Ollama).
void LegacyEmbeddings(Service& service, const HttpRequest& req, std::shared_ptr<Responder> r) {
  auto body = ParseBody(req.body);
  if (!body.ok()) return SendError(*r, body.status());
  if (ToBackend(service, req, *body, r)) return;
  Fields f(*body);
  const std::string model = f.String("model").value_or("");
  const std::optional<std::string> prompt = f.String("prompt");
  auto ka = ParseKeepAlive(f.Get("keep_alive"));
  if (!ka.ok()) return SendError(*r, ka.status());
  if (f.ok() && !prompt) f.Fail("prompt", "missing (the text to embed)");
  if (!f.ok()) return SendError(*r, f.status());
  auto route = service.Resolve(model, orchestrator::ModelRole::kEmbedding);
  if (!route.ok()) return SendError(*r, route.status());
  if (prompt->empty()) return r->Send(200, "application/json", Dump(Json{{"embedding", Json::array()}}), RouteHeaders(*route));
  auto tok = service.Tokenizer(*route->model);
  if (!tok.ok()) return SendError(*r, tok.status());
  std::vector<int32_t> ids = (*tok)->Encode(*prompt);
  ids.resize(std::min(ids.size(), static_cast<size_t>(route->model->n_ctx - 1)));
  const int64_t n_tokens = static_cast<int64_t>(ids.size()) + 1;
  orchestrator::EmbedRequest er;
  er.model = route->model->name;
  er.keep_alive = *ka;
  er.inputs.push_back(std::move(ids));
  const Route rt = *route;
  er.on_done = [r, rt, n_tokens](Result<std::vector<std::vector<float>>> res) {
    if (!res.ok()) return SendError(*r, res.status());
    r->NoteUsage(rt.model->name, n_tokens, -1);
    r->Send(200, "application/json", Dump(Json{{"embedding", res->at(0)}}), RouteHeaders(rt));
  };
  auto h = service.scheduler().Submit(std::move(er));
  if (!h.ok()) return SendError(*r, h.status());
  r->OnCancel([h = *h] { h->Cancel(); });
}

Json Details(const ServedModel& m) {
  return Json{{"parent_model", ""},         {"format", "gguf"},
              {"family", m.arch},           {"families", Json::array({m.arch})},
              {"parameter_size", m.parameter_size}, {"quantization_level", m.quantization}};
}

void Tags(Service& service, const HttpRequest&, std::shared_ptr<Responder> r) {
  Json models = Json::array();
  for (const ServedModel& m : service.models()) {
    models.push_back(Json{{"name", m.name}, {"model", m.name},
                          {"modified_at", Rfc3339(std::chrono::system_clock::from_time_t(m.modified_unix))},
                          {"size", m.file_bytes}, {"digest", ""}, {"details", Details(m)}});
  }
  for (const auto& a : service.adapters()) {  // LoRA adapters: their own entries, naming their base
    Json details = Json::object();
    for (const ServedModel& m : service.models()) {
      if (m.name == a->base) details = Details(m);
    }
    details["parent_model"] = a->base;
    models.push_back(Json{{"name", a->full_name()}, {"model", a->full_name()},
                          {"modified_at", Rfc3339(std::chrono::system_clock::from_time_t(a->modified_unix))},
                          {"size", a->file_bytes}, {"digest", ""}, {"details", std::move(details)},
                          {"adapter", {{"name", a->name}, {"base", a->base}, {"scale", a->scale}}}});
  }
  if (service.upstreams()) {  // other engines' models (upstream.h): "NAME/MODEL", with the backend and its state
    for (const Upstreams::Listed& m : service.upstreams()->Models()) {
      Json e = m.entry.is_object() && m.dialect == orchestrator::BackendDialect::kOllama
                   ? m.entry
                   : Json{{"modified_at", Rfc3339(std::chrono::system_clock::from_time_t(0))}, {"size", 0}, {"digest", ""},
                          {"details", Json::object()}};
      e["name"] = m.full_name();
      e["model"] = m.full_name();
      e["backend"] = {{"name", m.backend}, {"model", m.model}, {"dialect", orchestrator::BackendDialectName(m.dialect)},
                      {"state", m.healthy ? "ready" : "unreachable"}};
      models.push_back(std::move(e));
    }
  }
  r->Send(200, "application/json", Dump(Json{{"models", std::move(models)}}));
}

void Ps(Service& service, const HttpRequest&, std::shared_ptr<Responder> r) {
  Json models = Json::array();
  const auto now = std::chrono::system_clock::now();
  for (const orchestrator::LoadedModelInfo& info : service.manager().Snapshot()) {
    const ServedModel* m = nullptr;
    for (const ServedModel& s : service.models()) {
      if (s.name == info.name) m = &s;
    }
    // Ollama's fields: size = all the model's memory, size_vram = the part on the GPU.
    Json e{{"name", info.name}, {"model", info.name}, {"size", info.bytes + info.vram_bytes}, {"digest", ""},
           {"size_vram", info.vram_bytes},
           {"details", m ? Details(*m) : Json::object()}};
    // In use or kept forever: no expiry yet (Ollama shows a far date for "forever").
    std::optional<double> left;
    if (info.keep_alive_left) left = std::chrono::duration<double>(*info.keep_alive_left).count();
    const bool forever = !left && (info.pinned || info.in_use == 0);
    e["expires_at"] = left ? Rfc3339(now + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                               *info.keep_alive_left))
                           : Rfc3339(now + std::chrono::hours(24 * 365 * 100));
    e["qwenmux"] = Json{{"loading", info.loading}, {"pinned", info.pinned}, {"in_use", info.in_use},
                        {"keep_alive_left_seconds", left ? Json(*left) : Json(nullptr)},
                        {"keep_forever", forever && info.in_use == 0},
                        // The file's name only: server paths stay in the log (issue 20 item 5).
                        {"file", std::filesystem::path(info.path).filename().string()},
                        {"device", runtime::DeviceName(info.device)}, {"ram_bytes", info.bytes},
                        {"placement", info.placement}};
    const Json expires = e["expires_at"];
    models.push_back(std::move(e));
    for (const orchestrator::LoadedAdapterInfo& a : info.adapters) {  // loaded adapters: with their base
      Json details = m ? Details(*m) : Json::object();
      details["parent_model"] = a.base;
      const std::string full = a.base + ":" + a.name;
      models.push_back(Json{{"name", full}, {"model", full}, {"size", a.bytes}, {"digest", ""}, {"size_vram", 0},
                            {"details", std::move(details)}, {"expires_at", expires},
                            {"qwenmux", {{"adapter", true}, {"base", a.base}, {"in_use", a.in_use},
                                         {"ram_bytes", a.bytes},
                                         {"file", std::filesystem::path(a.path).filename().string()}}}});
    }
  }
  Json out{{"models", std::move(models)},
           {"memory", {{"in_use_bytes", service.manager().in_use_bytes()},
                       {"budget_bytes", service.manager().EffectiveBudget()},
                       {"gpu_in_use_bytes", service.manager().gpu_in_use_bytes()},
                       {"gpu_budget_bytes", service.manager().gpu_budget_bytes()},
                       {"gpu", service.manager().gpu().available ? service.manager().gpu().name : ""}}}};
  if (service.upstreams()) out["backends"] = service.upstreams()->PsJson();  // other engines (upstream.h)
  r->Send(200, "application/json", Dump(out));
}

void Show(Service& service, const HttpRequest& req, std::shared_ptr<Responder> r) {
  auto body = ParseBody(req.body);
  if (!body.ok()) return SendError(*r, body.status());
  Fields f(*body);
  std::string model = f.String("model").value_or("");
  if (model.empty()) model = f.String("name").value_or("");
  if (!f.ok()) return SendError(*r, f.status());
  if (model.empty()) return SendError(*r, Status(StatusCode::kInvalidArgument, "model: missing"));
  auto route = service.Resolve(model, orchestrator::ModelRole::kChat);
  if (!route.ok()) return SendError(*r, route.status());
  const ServedModel& m = *route->model;
  Json caps = m.role == orchestrator::ModelRole::kChat ? Json::array({"completion", "tools", "thinking"})
                                                       : Json::array({"embedding"});
  Json info{{"general.architecture", m.arch}, {"general.parameter_count", m.parameters},
            {m.arch + ".context_length", m.n_ctx_train}, {m.arch + ".embedding_length", m.n_embd}};
  Json out{{"modelfile", fmt::format("FROM {}\n", m.name)}, {"parameters", ""}, {"template", "{{ qwen3 chat template (native) }}"},
           {"details", Details(m)}, {"model_info", info}, {"capabilities", caps},
           {"modified_at", Rfc3339(std::chrono::system_clock::from_time_t(m.modified_unix))}};
  r->Send(200, "application/json", Dump(out));
}

}  // namespace

void RegisterOllamaRoutes(Service& service, HttpServer& http) {
  Service* s = &service;
  // Model requests: a 400 on a served model counts as invalid_request (CountInvalidRequests).
  http.Route("POST", "/api/chat", CountInvalidRequests(*s, [s](const HttpRequest& q, std::shared_ptr<Responder> r) {
    Chat(*s, q, std::move(r));
  }));
  http.Route("POST", "/api/generate", CountInvalidRequests(*s, [s](const HttpRequest& q, std::shared_ptr<Responder> r) {
    Generate(*s, q, std::move(r));
  }));
  http.Route("POST", "/api/embed", CountInvalidRequests(*s, [s](const HttpRequest& q, std::shared_ptr<Responder> r) {
    Embed(*s, q, std::move(r));
  }));
  http.Route("POST", "/api/embeddings", CountInvalidRequests(*s, [s](const HttpRequest& q, std::shared_ptr<Responder> r) {
    LegacyEmbeddings(*s, q, std::move(r));
  }));
  http.Route("GET", "/api/tags", [s](const HttpRequest& q, std::shared_ptr<Responder> r) { Tags(*s, q, std::move(r)); });
  http.Route("GET", "/api/ps", [s](const HttpRequest& q, std::shared_ptr<Responder> r) { Ps(*s, q, std::move(r)); });
  http.Route("POST", "/api/show", [s](const HttpRequest& q, std::shared_ptr<Responder> r) { Show(*s, q, std::move(r)); });
  http.Route("GET", "/api/version", [s](const HttpRequest&, std::shared_ptr<Responder> r) {
    r->Send(200, "application/json", Dump(Json{{"version", s->version()}}));
  });
}

}  // namespace qwenmux::server
