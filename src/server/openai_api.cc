// OpenAI-compatible routes: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models,
// /v1/rerank (Jina/Cohere shape). Errors: {"error": {"message", "type", "param", "code"}}.
#include <algorithm>
#include <filesystem>
#include <mutex>

#include <fmt/format.h>

#include "server/generation.h"
#include "server/prompt.h"
#include "server/rag_api.h"
#include "server/upstream.h"

namespace qwenmux::server {

namespace {

using orchestrator::GenerationResult;
using orchestrator::TokenEvent;

void SendError(Responder& r, const ApiError& e) { SendApiError(r, e); }

void SendStatus(Responder& r, const Status& s, const std::string& param = "") {
  ApiError e = ErrorFromStatus(s);
  e.param = param;
  SendError(r, e);
}

// logit_bias: {"TOKEN_ID": bias in [-100, 100]}; -100 bans the token. The ids are checked
// against the vocabulary once the tokenizer is known (CheckLogitBias).
void ReadLogitBias(Fields& f, std::vector<std::pair<int32_t, float>>* out) {
  const Json* lb = f.Get("logit_bias");
  if (!lb) return;
  if (!lb->is_object()) return f.Fail("logit_bias", "expected an object mapping token ids to numbers from -100 to 100");
  for (const auto& [key, value] : lb->items()) {
    const bool digits = !key.empty() && key.size() <= 9 && key.find_first_not_of("0123456789") == std::string::npos;
    if (!digits) return f.Fail("logit_bias", fmt::format("key \"{}\" is not a token id (a non-negative integer)", key));
    if (!value.is_number()) {
      return f.Fail("logit_bias", fmt::format("\"{}\": expected a number from -100 to 100, got {}", key, value.dump()));
    }
    const double bias = value.get<double>();
    if (!(bias >= -100 && bias <= 100)) {
      return f.Fail("logit_bias", fmt::format("\"{}\": {} is out of range [-100, 100]", key, bias));
    }
    out->push_back({static_cast<int32_t>(std::stol(key)), static_cast<float>(bias)});
  }
}

Status CheckLogitBias(const GenerationJob& job) {
  const int32_t n_vocab = job.tok->vocab_size();
  for (const auto& [id, bias] : job.logit_bias) {
    if (id >= n_vocab) {
      return Error(StatusCode::kInvalidArgument, "logit_bias: \"{}\": token id outside the vocabulary of {} tokens of model {}",
                   id, n_vocab, job.route.model->name);
    }
  }
  return Status::Ok();
}

// Sampling and length fields common to chat and completions. Returns max_tokens if given.
std::optional<int64_t> ReadSampling(Fields& f, const ServiceLimits& limits, GenerationJob* job) {
  auto& s = job->options.sampler;
  if (auto v = f.Number("temperature", 0, 2)) s.temperature = static_cast<float>(*v);
  if (auto v = f.Number("top_p", 0, 1)) s.top_p = *v <= 0 ? 1e-6f : static_cast<float>(*v);
  if (auto v = f.Int("top_k", -1, 1000000)) s.top_k = static_cast<int32_t>(*v);
  if (auto v = f.Number("min_p", 0, 1)) s.min_p = static_cast<float>(*v);
  if (auto v = f.Number("presence_penalty", -2, 2)) s.presence_penalty = static_cast<float>(*v);
  if (auto v = f.Number("frequency_penalty", -2, 2)) s.frequency_penalty = static_cast<float>(*v);
  if (auto v = f.Number("repetition_penalty", 0.01, 10)) s.repetition_penalty = static_cast<float>(*v);
  if (auto v = f.Int("seed", INT64_MIN, INT64_MAX)) s.seed = static_cast<uint64_t>(*v);
  if (auto v = f.Strings("stop", static_cast<size_t>(limits.max_stop))) job->options.stop = *v;
  if (auto v = f.Number("lora_scale", -kMaxLoraScale, kMaxLoraScale)) job->lora_scale = static_cast<float>(*v);
  ReadLogitBias(f, &job->logit_bias);
  if (auto n = f.Int("n", 1, INT32_MAX); n && *n > limits.max_n) {
    f.Fail("n", fmt::format("at most {} choice(s) per request", limits.max_n));
  }
  std::optional<int64_t> max_tokens = f.Int("max_completion_tokens", 1, INT32_MAX);
  if (!max_tokens) max_tokens = f.Int("max_tokens", 1, INT32_MAX);
  if (auto lp = f.Get("logprobs")) {
    if (lp->is_boolean()) {
      job->logprobs = lp->get<bool>();
    } else if (lp->is_number_integer()) {  // /v1/completions: logprobs = number of alternatives
      job->logprobs = true;
      if (auto v = f.Int("logprobs", 0, 20)) job->top_logprobs = static_cast<int32_t>(*v);
    } else {
      f.Fail("logprobs", "expected a boolean");
    }
  }
  if (auto v = f.Int("top_logprobs", 0, 20)) {
    job->top_logprobs = static_cast<int32_t>(*v);
    if (*v > 0 && !job->logprobs) f.Fail("top_logprobs", "needs logprobs: true");
  }
  return max_tokens;
}

// stream_options.include_usage (default false: no usage chunk).
bool ReadIncludeUsage(Fields& f) {
  const Json* so = f.Get("stream_options");
  if (!so) return false;
  if (!so->is_object()) {
    f.Fail("stream_options", "expected an object");
    return false;
  }
  Fields sf(*so, "stream_options.");
  const bool on = sf.Bool("include_usage").value_or(false);
  f.Adopt(sf);
  return on;
}

Json LogprobEntry(const tokenizer::Tokenizer& tok, int32_t id, float lp) {
  const std::string text = TokenText(tok, id);
  Json bytes = Json::array();
  for (unsigned char c : text) bytes.push_back(c);
  return Json{{"token", text}, {"logprob", lp}, {"bytes", bytes}};
}

Json LogprobsJson(const tokenizer::Tokenizer& tok, const TokenEvent& ev) {
  Json e = LogprobEntry(tok, ev.token, ev.logprob);
  Json top = Json::array();
  for (const auto& t : ev.top) top.push_back(LogprobEntry(tok, t.token, t.logprob));
  e["top_logprobs"] = top;
  return e;
}

Json ToolCallsJson(const std::vector<chat::ChatToolCall>& calls, size_t first_index) {
  Json arr = Json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    const auto& c = calls[i];
    arr.push_back(Json{{"index", first_index + i},
                       {"id", NewId("call_")},
                       {"type", "function"},
                       {"function", {{"name", c.name},
                                     {"arguments", c.arguments.is_string() ? c.arguments.get<std::string>()
                                                                           : Dump(c.arguments)}}}});
  }
  return arr;
}

Json Usage(const GenerationResult& g) {
  return Json{{"prompt_tokens", g.prompt_tokens},
              {"completion_tokens", g.completion_tokens},
              {"total_tokens", g.prompt_tokens + g.completion_tokens}};
}

// One generation's state, shared by its callbacks (which run on the scheduler's worker, one at
// a time) - no locking needed.
struct GenState {
  std::shared_ptr<Responder> r;
  GenerationJob job;
  bool stream = false, include_usage = false, chat = true;  // usage chunk only when asked (as OpenAI)
  std::string id, object;
  int64_t created = 0;
  bool started = false;
  size_t tool_calls_sent = 0;
  ChatDeltaSplitter splitter{true};
  Json logprobs = Json::array();

  Json Chunk(Json choice) const {
    return Json{{"id", id}, {"object", object}, {"created", created}, {"model", job.route.name()},
                {"choices", Json::array({std::move(choice)})}};
  }
  void Event(const Json& j) { r->Write("data: " + Dump(j) + "\n\n"); }
  void Start() {
    if (started) return;
    started = true;
    r->StartStream(200, "text/event-stream", RouteHeaders(job.route));
    // As OpenAI: the first chat delta names the role (clients build the message from it).
    if (chat) {
      Event(Chunk(Json{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr},
                       {"finish_reason", nullptr}}));
    }
  }
};

bool OnToken(GenState& s, const TokenEvent& ev) {
  Json lp = nullptr;
  if (s.job.logprobs) {
    lp = LogprobsJson(*s.job.tok, ev);
    if (!s.stream) s.logprobs.push_back(lp);
  }
  if (!s.stream) {
    if (s.chat) s.splitter.Push(ev.text);
    return true;
  }
  s.Start();
  if (!s.chat) {
    Json choice{{"index", 0}, {"text", std::string(ev.text)}, {"finish_reason", nullptr}};
    choice["logprobs"] = s.job.logprobs ? Json{{"content", Json::array({lp})}} : Json(nullptr);
    s.Event(s.Chunk(std::move(choice)));
    return !s.r->cancelled();
  }
  const auto d = s.splitter.Push(ev.text);
  Json delta = Json::object();
  if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
  if (!d.content.empty()) delta["content"] = d.content;
  if (!d.tool_calls.empty()) {
    delta["tool_calls"] = ToolCallsJson(d.tool_calls, s.tool_calls_sent);
    s.tool_calls_sent += d.tool_calls.size();
  }
  if (delta.empty() && !s.job.logprobs) return !s.r->cancelled();
  Json choice{{"index", 0}, {"delta", std::move(delta)}, {"finish_reason", nullptr}};
  choice["logprobs"] = s.job.logprobs ? Json{{"content", Json::array({lp})}} : Json(nullptr);
  s.Event(s.Chunk(std::move(choice)));
  return !s.r->cancelled();
}

void OnDone(GenState& s, Result<GenerationResult> res) {
  if (res.ok() && res->finish_reason == "cancelled") res = CancelledError(*res, *s.r);
  if (!res.ok()) {
    if (s.started) {
      ApiError e = ErrorFromStatus(res.status());
      s.r->NoteError(e.message);
      s.Event(Json{{"error", {{"message", e.message}, {"type", "server_error"}, {"code", e.status}}}});
      s.r->Write("data: [DONE]\n\n");
      s.r->End();
    } else {
      SendStatus(*s.r, res.status());
    }
    return;
  }
  const GenerationResult& g = *res;
  s.r->NoteUsage(g.model.empty() ? s.job.route.name() : g.model, g.prompt_tokens, g.completion_tokens);
  std::string finish = g.finish_reason == "length" ? "length" : "stop";
  chat::ParsedChatOutput parsed;
  if (s.chat) {
    parsed = s.splitter.Final();
    if (!parsed.message.tool_calls.empty()) finish = "tool_calls";
  }
  Json route = RouteJson(s.job.route, g.model, g.degraded);
  if (s.stream) {
    s.Start();
    Json choice{{"index", 0}, {"finish_reason", finish}, {"logprobs", nullptr}};
    if (s.chat) {
      choice["delta"] = Json::object();
      const auto rest = s.splitter.Flush();
      if (!rest.reasoning.empty()) choice["delta"]["reasoning_content"] = rest.reasoning;
      if (!rest.content.empty()) choice["delta"]["content"] = rest.content;
      // Tool calls still pending in the partial parse (closed by the end of the stream).
      if (parsed.message.tool_calls.size() > s.tool_calls_sent) {
        std::vector<chat::ChatToolCall> rest(parsed.message.tool_calls.begin() + s.tool_calls_sent,
                                             parsed.message.tool_calls.end());
        choice["delta"]["tool_calls"] = ToolCallsJson(rest, s.tool_calls_sent);
      }
    } else {
      choice["text"] = "";
    }
    Json chunk = s.Chunk(std::move(choice));
    chunk["qwenmux"] = route;
    s.Event(chunk);
    if (s.include_usage) {
      Json usage{{"id", s.id}, {"object", s.object}, {"created", s.created}, {"model", s.job.route.name()},
                 {"choices", Json::array()}, {"usage", Usage(g)}};
      s.Event(usage);
    }
    s.r->Write("data: [DONE]\n\n");
    s.r->End();
    return;
  }
  Json choice{{"index", 0}, {"finish_reason", finish}};
  if (s.chat) {
    Json msg{{"role", "assistant"}, {"content", parsed.message.content}};
    if (parsed.message.reasoning_content && !parsed.message.reasoning_content->empty()) {
      msg["reasoning_content"] = *parsed.message.reasoning_content;
    }
    if (!parsed.message.tool_calls.empty()) {
      msg["tool_calls"] = ToolCallsJson(parsed.message.tool_calls, 0);
      if (parsed.message.content.empty()) msg["content"] = nullptr;
    }
    choice["message"] = msg;
  } else {
    choice["text"] = g.text;
  }
  choice["logprobs"] = s.job.logprobs ? Json{{"content", s.logprobs}} : Json(nullptr);
  Json body{{"id", s.id},         {"object", s.object}, {"created", s.created},
            {"model", g.model.empty() ? s.job.route.name() : g.model},
            {"choices", Json::array({choice})}, {"usage", Usage(g)}, {"qwenmux", route}};
  HeaderList h = RouteHeaders(s.job.route);
  if (g.degraded) h[1].second = "fallback";
  s.r->Send(200, "application/json", Dump(body), h);
}

void Generate(Service& service, std::shared_ptr<GenState> st, std::optional<int64_t> max_tokens) {
  if (Status b = CheckLogitBias(st->job); !b.ok()) return SendStatus(*st->r, b, "logit_bias");
  if (Status c = CheckLimits(service, max_tokens, &st->job); !c.ok()) {
    return SendStatus(*st->r, c, c.code() == StatusCode::kOutOfRange ? "messages" : "max_tokens");
  }
  st->splitter = ChatDeltaSplitter(st->job.thinking);
  Status s = SubmitGeneration(
      service, st->job, st->r, [st](const TokenEvent& ev) { return OnToken(*st, ev); },
      [st](Result<GenerationResult> res) { OnDone(*st, std::move(res)); });
  if (!s.ok()) SendStatus(*st->r, s);
}

// response_format, tool_choice (forced calls) and thinking_budget -> the job's constraint. Needs
// the tokenizer (the constraint is compiled against the vocabulary). *param names the field.
Status ApplyStructured(const Json& j, GenerationJob* job, std::string* param) {
  Fields f(j);
  if (const Json* rf = f.Get("response_format")) {
    *param = "response_format";
    if (!rf->is_object() || !rf->contains("type") || !(*rf)["type"].is_string()) {
      return Status(StatusCode::kInvalidArgument, "response_format: expected an object with a string \"type\"");
    }
    const std::string type = (*rf)["type"].get<std::string>();
    if (type == "json_object") {
      QM_RETURN_IF_ERROR(SetJsonObject(job));
    } else if (type == "json_schema") {
      const auto js = rf->find("json_schema");
      if (js == rf->end() || !js->is_object() || !js->contains("schema") || !(*js)["schema"].is_object()) {
        return Status(StatusCode::kInvalidArgument, "response_format.json_schema.schema: expected an object");
      }
      Status s = SetJsonSchema(job, (*js)["schema"]);
      if (!s.ok()) return s.WithContext("response_format.json_schema.schema");
    } else if (type != "text") {
      return Error(StatusCode::kInvalidArgument, "response_format.type: \"{}\" is not one of text, json_object, json_schema",
                   type);
    }
  }
  if (const Json* tc = f.Get("tool_choice")) {
    *param = "tool_choice";
    if (tc->is_string() && *tc != "none" && *tc != "auto" && *tc != "required") {
      return Status(StatusCode::kInvalidArgument, "tool_choice: expected \"none\", \"auto\", \"required\" or a function");
    }
    const bool forced = (tc->is_string() && *tc == "required") || tc->is_object();
    if (forced) {
      const Json* tools = f.Get("tools");
      if (!tools || !tools->is_array() || tools->empty()) {
        return Status(StatusCode::kInvalidArgument, "tool_choice: forcing a tool call needs a non-empty tools list");
      }
      QM_RETURN_IF_ERROR(SetToolChoice(job, *tools, *tc, f.Bool("parallel_tool_calls").value_or(true)));
    } else if (!tc->is_string()) {
      return Status(StatusCode::kInvalidArgument, "tool_choice: expected a string or an object");
    }
  }
  std::optional<int64_t> budget = f.Int("thinking_budget", 0, INT32_MAX);
  if (const Json* k = f.Get("chat_template_kwargs"); k && k->is_object()) {
    Fields kf(*k, "chat_template_kwargs.");
    if (auto b = kf.Int("thinking_budget", 0, INT32_MAX)) budget = b;
    f.Adopt(kf);
  }
  if (!f.ok()) {
    *param = f.param();
    return f.status();
  }
  if (budget) job->thinking_budget = static_cast<int32_t>(*budget);
  return Status::Ok();
}

// A request for "NAME/MODEL" of a configured backend goes to it (upstream.h); true if it went.
bool ToBackend(Service& service, const HttpRequest& req, const Json& j, const std::shared_ptr<Responder>& r,
               Upstreams::Fallback fallback = {}) {
  Upstreams* u = service.upstreams();
  if (!u || !j.contains("model") || !j["model"].is_string() || !u->Owns(j["model"].get<std::string>())) return false;
  u->Forward(ClientDialect::kOpenAi, req.path, j, r, std::move(fallback));
  return true;
}

void ChatCompletionBody(Service& service, const HttpRequest& req, const Json& j, std::shared_ptr<Responder> r,
                        const std::string* failover);

// Backends in routing (upstream.h): a backend failure served here by a local model of `model`
// (the backend's tier, or the request's own "auto"/tier), marked degraded.
Upstreams::Fallback LocalFallback(Service& service, const HttpRequest& req, const Json& j,
                                  const std::shared_ptr<Responder>& r, std::string model) {
  return [&service, req, j, r, model](const std::string& tier, const std::string& why) {
    Json local = j;
    local["model"] = model.empty() ? tier : model;
    ChatCompletionBody(service, req, local, r, &why);
  };
}

void ChatCompletions(Service& service, const HttpRequest& req, std::shared_ptr<Responder> r) {
  auto body = ParseBody(req.body);
  if (!body.ok()) return SendStatus(*r, body.status());
  ChatCompletionBody(service, req, *body, std::move(r), nullptr);
}

// `failover`: set when a backend could not serve (the request is served locally, degraded).
void ChatCompletionBody(Service& service, const HttpRequest& req, const Json& j, std::shared_ptr<Responder> r,
                        const std::string* failover) {
  if (!failover && ToBackend(service, req, j, r, LocalFallback(service, req, j, r, ""))) return;
  if (j.contains("rag") && !j["rag"].is_null()) return RagChatCompletion(service, j, std::move(r));  // rag_api.cc
  Fields f(j);
  auto st = std::make_shared<GenState>();
  st->r = r;
  st->object = "chat.completion";
  st->id = NewId("chatcmpl-");
  st->created = UnixNow();
  const std::string model = f.String("model").value_or("");
  st->stream = f.Bool("stream").value_or(false);
  st->include_usage = ReadIncludeUsage(f);
  const std::optional<int64_t> max_tokens = ReadSampling(f, service.limits(), &st->job);
  if (!f.ok()) return SendStatus(*r, f.status(), f.param());
  auto chat_req = chat::ParseChatRequestJson(j);
  if (!chat_req.ok()) return SendStatus(*r, chat_req.status(), "messages");
  if (const Json* tc = f.Get("tool_choice"); tc && tc->is_string() && *tc == "none") {
    chat_req->options.tools = Json::array();
  }
  if (st->stream) st->object = "chat.completion.chunk";
  const std::string latency = f.String("latency").value_or(""), latency_header = req.Header("x-qwenmux-latency");
  if (!f.ok()) return SendStatus(*r, f.status(), f.param());
  orchestrator::RequestInput in = orchestrator::InputFromChat(*chat_req);
  in.latency_field = latency;
  in.latency_header = latency_header;
  if (const Json* rf = f.Get("response_format"); rf && rf->is_object() && rf->value("type", "") != "text") in.json_schema = true;
  if (Status l = CheckLatencyField(latency); !l.ok()) return SendStatus(*r, l, "latency");
  auto route = service.Resolve(model, in);
  if (!route.ok()) return SendStatus(*r, route.status(), RouteErrorParam(route.status()));
  if (failover) {
    route->reason = "failover";
    route->explanation = fmt::format("{}; served by local model {}", *failover, route->name());
  } else if (const std::string pick = PreferBackend(service, *route, "chat"); !pick.empty()) {
    // `auto` or a tier: a faster backend model of the same tier takes it.
    Json to = j;
    to["model"] = pick;
    service.upstreams()->Forward(ClientDialect::kOpenAi, req.path, std::move(to), r, LocalFallback(service, req, j, r, model));
    return;
  }
  st->job.route = *route;
  if (Status e = EncodeChat(service, *chat_req, &st->job); !e.ok()) return SendStatus(*r, e);
  std::string param;
  if (Status e = ApplyStructured(j, &st->job, &param); !e.ok()) return SendStatus(*r, e, param);
  Generate(service, st, max_tokens);
}

void Completions(Service& service, const HttpRequest& req, std::shared_ptr<Responder> r) {
  auto body = ParseBody(req.body);
  if (!body.ok()) return SendStatus(*r, body.status());
  if (ToBackend(service, req, *body, r)) return;
  const Json& j = *body;
  Fields f(j);
  auto st = std::make_shared<GenState>();
  st->r = r;
  st->chat = false;
  st->object = "text_completion";
  st->id = NewId("cmpl-");
  st->created = UnixNow();
  const std::string model = f.String("model").value_or("");
  st->stream = f.Bool("stream").value_or(false);
  st->include_usage = ReadIncludeUsage(f);
  const std::optional<int64_t> max_tokens = ReadSampling(f, service.limits(), &st->job);
  if (f.Get("suffix")) f.Fail("suffix", "not supported");
  if (f.Bool("echo").value_or(false)) f.Fail("echo", "not supported");
  if (!f.ok()) return SendStatus(*r, f.status(), f.param());
  const Json* prompt = f.Get("prompt");
  if (!prompt) return SendStatus(*r, Status(StatusCode::kInvalidArgument, "prompt: missing"), "prompt");
  const std::string latency = f.String("latency").value_or(""), latency_header = req.Header("x-qwenmux-latency");
  if (!f.ok()) return SendStatus(*r, f.status(), f.param());
  orchestrator::RequestInput in;
  if (prompt->is_string()) in.texts.push_back(prompt->get_ref<const std::string&>());
  in.latency_field = latency;
  in.latency_header = latency_header;
  if (Status l = CheckLatencyField(latency); !l.ok()) return SendStatus(*r, l, "latency");
  auto route = service.Resolve(model, in);
  if (!route.ok()) return SendStatus(*r, route.status(), RouteErrorParam(route.status()));
  st->job.route = *route;
  st->job.chat = false;
  if (Status e = LoadTokenizer(service, &st->job); !e.ok()) return SendStatus(*r, e);
  const Json* p = prompt;
  if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
  if (p->is_string()) {
    st->job.prompt = st->job.tok->Encode(p->get<std::string>());
  } else if (p->is_array() && std::all_of(p->begin(), p->end(), [](const Json& t) { return t.is_number_integer(); })) {
    for (const Json& t : *p) {
      const int64_t id = t.get<int64_t>();
      if (id < 0 || id >= st->job.tok->vocab_size()) {
        return SendStatus(*r, Error(StatusCode::kInvalidArgument, "prompt: token id {} is outside the vocabulary", id),
                          "prompt");
      }
      st->job.prompt.push_back(static_cast<int32_t>(id));
    }
  } else {
    return SendStatus(*r, Status(StatusCode::kInvalidArgument,
                                 "prompt: expected a string, an array of one string, or an array of token ids"),
                      "prompt");
  }
  std::string param;
  if (Status e = ApplyStructured(j, &st->job, &param); !e.ok()) return SendStatus(*r, e, param);
  Generate(service, st, max_tokens);
}

// Texts of an embeddings "input": string, array of strings, array of token ids, or array of
// arrays of token ids.
Result<std::vector<std::vector<int32_t>>> EmbeddingInputs(const Json& input, const tokenizer::Tokenizer& tok,
                                                          size_t max_inputs) {
  std::vector<std::vector<int32_t>> out;
  auto ids = [&](const Json& arr) -> Status {
    std::vector<int32_t> v;
    for (const Json& t : arr) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= tok.vocab_size()) {
        return Error(StatusCode::kInvalidArgument, "input: token ids must be integers in [0, {})", tok.vocab_size());
      }
      v.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
    out.push_back(std::move(v));
    return Status::Ok();
  };
  if (input.is_string()) {
    out.push_back(tok.Encode(input.get<std::string>()));
  } else if (input.is_array() && !input.empty()) {
    if (input.size() > max_inputs) return Error(StatusCode::kInvalidArgument, "input: at most {} inputs", max_inputs);
    if (input[0].is_number_integer()) {
      QM_RETURN_IF_ERROR(ids(input));
    } else {
      for (const Json& e : input) {
        if (e.is_string()) {
          out.push_back(tok.Encode(e.get<std::string>()));
        } else if (e.is_array()) {
          QM_RETURN_IF_ERROR(ids(e));
        } else {
          return Error(StatusCode::kInvalidArgument, "input: expected strings or arrays of token ids");
        }
      }
    }
  } else {
    return Error(StatusCode::kInvalidArgument, "input: expected a string or a non-empty array");
  }
  return out;
}

void Embeddings(Service& service, const HttpRequest& req, std::shared_ptr<Responder> r) {
  auto body = ParseBody(req.body);
  if (!body.ok()) return SendStatus(*r, body.status());
  if (ToBackend(service, req, *body, r)) return;
  Fields f(*body);
  const std::string model = f.String("model").value_or("");
  const std::string format = f.String("encoding_format").value_or("float");
  if (format != "float" && format != "base64") f.Fail("encoding_format", "expected \"float\" or \"base64\"");
  const std::optional<int64_t> dims = f.Int("dimensions", 1, 1 << 20);
  if (!f.ok()) return SendStatus(*r, f.status(), f.param());
  const Json* input = f.Get("input");
  if (!input) return SendStatus(*r, Status(StatusCode::kInvalidArgument, "input: missing"), "input");
  auto route = service.Resolve(model, orchestrator::ModelRole::kEmbedding);
  if (!route.ok()) return SendStatus(*r, route.status(), RouteErrorParam(route.status()));
  if (dims && *dims > route->model->n_embd) {
    return SendStatus(*r, Error(StatusCode::kInvalidArgument, "dimensions: {} is above the model's {}", *dims,
                                route->model->n_embd), "dimensions");
  }
  auto tok = service.Tokenizer(*route->model);
  if (!tok.ok()) return SendStatus(*r, tok.status());
  auto inputs = EmbeddingInputs(*input, **tok, static_cast<size_t>(service.limits().max_inputs));
  if (!inputs.ok()) return SendStatus(*r, inputs.status(), "input");
  int64_t n_tokens = 0;
  for (const auto& in : *inputs) {
    n_tokens += static_cast<int64_t>(in.size()) + 1;
    if (static_cast<int64_t>(in.size()) + 1 > route->model->n_ctx) {
      return SendStatus(*r, Error(StatusCode::kOutOfRange, "input: {} tokens, more than the context of {}", in.size(),
                                  route->model->n_ctx), "input");
    }
  }
  orchestrator::EmbedRequest er;
  er.model = route->model->name;
  er.inputs = std::move(*inputs);
  er.dims = static_cast<int32_t>(dims.value_or(0));
  const Route rt = *route;
  er.on_done = [r, rt, format, n_tokens](Result<std::vector<std::vector<float>>> res) {
    if (!res.ok()) return SendStatus(*r, res.status());
    r->NoteUsage(rt.model->name, n_tokens, -1);
    Json data = Json::array();
    for (size_t i = 0; i < res->size(); ++i) {
      const auto& v = (*res)[i];
      Json e{{"object", "embedding"}, {"index", i}};
      e["embedding"] = format == "base64" ? Json(Base64(v.data(), v.size() * sizeof(float))) : Json(v);
      data.push_back(std::move(e));
    }
    Json out{{"object", "list"}, {"data", std::move(data)}, {"model", rt.model->name},
             {"usage", {{"prompt_tokens", n_tokens}, {"total_tokens", n_tokens}}}, {"qwenmux", RouteJson(rt, "", false)}};
    r->Send(200, "application/json", Dump(out), RouteHeaders(rt));
  };
  auto h = service.scheduler().Submit(std::move(er));
  if (!h.ok()) return SendStatus(*r, h.status());
  r->OnCancel([h = *h] { h->Cancel(); });
}

void Rerank(Service& service, const HttpRequest& req, std::shared_ptr<Responder> r) {
  auto body = ParseBody(req.body);
  if (!body.ok()) return SendStatus(*r, body.status());
  if (ToBackend(service, req, *body, r)) return;  // a backend without /v1/rerank: 501 naming it
  Fields f(*body);
  const std::string model = f.String("model").value_or("");
  const std::optional<std::string> query = f.String("query");
  const std::string instruction = f.String("instruction").value_or(std::string(kDefaultRerankInstruction));
  const std::optional<int64_t> top_n = f.Int("top_n", 1, INT32_MAX);
  const bool return_documents = f.Bool("return_documents").value_or(true);
  if (f.ok() && !query) f.Fail("query", "missing");
  const Json* docs = f.Get("documents");
  if (f.ok() && (!docs || !docs->is_array() || docs->empty())) f.Fail("documents", "expected a non-empty array");
  if (!f.ok()) return SendStatus(*r, f.status(), f.param());
  if (docs->size() > static_cast<size_t>(service.limits().max_inputs)) {
    return SendStatus(*r, Error(StatusCode::kInvalidArgument, "documents: at most {}", service.limits().max_inputs),
                      "documents");
  }
  std::vector<std::string> texts;
  for (size_t i = 0; i < docs->size(); ++i) {
    const Json& d = (*docs)[i];
    if (d.is_string()) {
      texts.push_back(d.get<std::string>());
    } else if (d.is_object() && d.contains("text") && d["text"].is_string()) {
      texts.push_back(d["text"].get<std::string>());
    } else {
      return SendStatus(*r, Error(StatusCode::kInvalidArgument, "documents[{}]: expected a string or {{\"text\": ...}}", i),
                        "documents");
    }
  }
  auto route = service.Resolve(model, orchestrator::ModelRole::kReranker);
  if (!route.ok()) return SendStatus(*r, route.status(), RouteErrorParam(route.status()));
  auto tok = service.Tokenizer(*route->model);
  if (!tok.ok()) return SendStatus(*r, tok.status());
  orchestrator::RerankRequest rr;
  rr.model = route->model->name;
  int64_t n_tokens = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    rr.inputs.push_back(RerankPrompt(**tok, instruction, *query, texts[i]));
    n_tokens += static_cast<int64_t>(rr.inputs.back().size());
    if (static_cast<int64_t>(rr.inputs.back().size()) >= route->model->n_ctx) {
      return SendStatus(*r, Error(StatusCode::kOutOfRange, "documents[{}]: query and document are {} tokens, more "
                                  "than the context of {}", i, rr.inputs.back().size(), route->model->n_ctx),
                        "documents");
    }
  }
  const Route rt = *route;
  rr.on_done = [r, rt, texts = std::move(texts), top_n, return_documents, n_tokens](Result<std::vector<float>> res) {
    if (!res.ok()) return SendStatus(*r, res.status());
    r->NoteUsage(rt.model->name, n_tokens, -1);
    std::vector<size_t> order(res->size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return (*res)[a] > (*res)[b]; });
    if (top_n && static_cast<size_t>(*top_n) < order.size()) order.resize(static_cast<size_t>(*top_n));
    Json results = Json::array();
    for (size_t i : order) {
      Json e{{"index", i}, {"relevance_score", (*res)[i]}};
      if (return_documents) e["document"] = Json{{"text", texts[i]}};
      results.push_back(std::move(e));
    }
    Json out{{"id", NewId("rerank-")}, {"model", rt.model->name}, {"results", std::move(results)},
             {"usage", {{"prompt_tokens", n_tokens}, {"total_tokens", n_tokens}}}, {"qwenmux", RouteJson(rt, "", false)}};
    r->Send(200, "application/json", Dump(out), RouteHeaders(rt));
  };
  auto h = service.scheduler().Submit(std::move(rr));
  if (!h.ok()) return SendStatus(*r, h.status());
  r->OnCancel([h = *h] { h->Cancel(); });
}

Json ModelJson(const ServedModel& m) {
  return Json{{"id", m.name}, {"object", "model"}, {"created", m.modified_unix}, {"owned_by", "qwenmux"},
              {"role", orchestrator::ModelRoleName(m.role)}, {"aliases", m.aliases}, {"context_length", m.n_ctx}};
}

// A LoRA adapter as its own entry: "<base>:<adapter>", naming its base.
Json AdapterJson(const Service& service, const ServedAdapter& a) {
  int32_t n_ctx = 0;
  for (const ServedModel& m : service.models()) {
    if (m.name == a.base) n_ctx = m.n_ctx;
  }
  return Json{{"id", a.full_name()}, {"object", "model"}, {"created", a.modified_unix}, {"owned_by", "qwenmux"},
              {"role", "chat"}, {"aliases", Json::array()}, {"context_length", n_ctx}, {"parent", a.base},
              {"adapter", {{"name", a.name}, {"base", a.base}, {"scale", a.scale},
                           {"file", std::filesystem::path(a.path).filename().string()}}}};
}

// A backend's model (upstream.h): its own entry with qwenmux's name, the backend and its state.
Json BackendModelJson(const Upstreams::Listed& m) {
  Json e{{"id", m.full_name()}, {"object", "model"}, {"created", 0}, {"owned_by", m.backend}};
  if (m.entry.is_object() && m.dialect == orchestrator::BackendDialect::kOpenAi) {
    for (const auto& [k, v] : m.entry.items()) {
      if (k != "id" && k != "object" && k != "owned_by") e[k] = v;
    }
  }
  e["backend"] = {{"name", m.backend}, {"model", m.model}, {"dialect", orchestrator::BackendDialectName(m.dialect)},
                  {"state", m.healthy ? "ready" : "unreachable"}};
  return e;
}

void Models(Service& service, const HttpRequest&, std::shared_ptr<Responder> r) {
  Json data = Json::array();
  for (const ServedModel& m : service.models()) data.push_back(ModelJson(m));
  for (const auto& a : service.adapters()) data.push_back(AdapterJson(service, *a));
  if (service.upstreams()) {
    for (const Upstreams::Listed& m : service.upstreams()->Models()) data.push_back(BackendModelJson(m));
  }
  r->Send(200, "application/json", Dump(Json{{"object", "list"}, {"data", std::move(data)}}));
}

// %XX escapes of a path segment ("qwen3%3A0.6b" -> "qwen3:0.6b"); malformed ones stay as they are.
std::string PercentDecode(std::string_view in) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && hex(in[i + 1]) >= 0 && hex(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

// GET /v1/models/{id} (models.retrieve): a served model by name or alias.
void ModelById(Service& service, const HttpRequest& req, std::shared_ptr<Responder> r) {
  const std::string id = PercentDecode(std::string_view(req.path).substr(std::string_view("/v1/models/").size()));
  for (const ServedModel& m : service.models()) {
    if (m.name == id || std::find(m.aliases.begin(), m.aliases.end(), id) != m.aliases.end()) {
      return r->Send(200, "application/json", Dump(ModelJson(m)));
    }
  }
  for (const auto& a : service.adapters()) {
    if (a->full_name() == id) return r->Send(200, "application/json", Dump(AdapterJson(service, *a)));
  }
  if (service.upstreams()) {
    for (const Upstreams::Listed& m : service.upstreams()->Models()) {
      if (m.full_name() == id) return r->Send(200, "application/json", Dump(BackendModelJson(m)));
    }
  }
  SendStatus(*r, Error(StatusCode::kNotFound, "model \"{}\" not found; available: {}", id, service.ModelList()), "model");
}

}  // namespace

void RegisterOpenAiRoutes(Service& service, HttpServer& http) {
  Service* s = &service;
  // Model requests: a 400 on a served model counts as invalid_request (CountInvalidRequests).
  http.Route("POST", "/v1/chat/completions", CountInvalidRequests(*s, [s](const HttpRequest& q, std::shared_ptr<Responder> r) {
    ChatCompletions(*s, q, std::move(r));
  }));
  http.Route("POST", "/v1/completions", CountInvalidRequests(*s, [s](const HttpRequest& q, std::shared_ptr<Responder> r) {
    Completions(*s, q, std::move(r));
  }));
  http.Route("POST", "/v1/embeddings", CountInvalidRequests(*s, [s](const HttpRequest& q, std::shared_ptr<Responder> r) {
    Embeddings(*s, q, std::move(r));
  }));
  const Handler rerank = CountInvalidRequests(*s, [s](const HttpRequest& q, std::shared_ptr<Responder> r) { Rerank(*s, q, std::move(r)); });
  http.Route("POST", "/v1/rerank", rerank);
  http.Route("POST", "/v1/reranking", rerank);
  http.Route("GET", "/v1/models", [s](const HttpRequest& q, std::shared_ptr<Responder> r) { Models(*s, q, std::move(r)); });
  http.Route("GET", "/v1/models/", [s](const HttpRequest& q, std::shared_ptr<Responder> r) { ModelById(*s, q, std::move(r)); },
             /*prefix=*/true);
}

}  // namespace qwenmux::server
