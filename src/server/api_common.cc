#include "server/api_common.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <random>

#include <fmt/format.h>

#include "orchestrator/config/units.h"

namespace qwenmux::server {

namespace {

const char* TypeName(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "an integer";
    case Json::value_t::number_float: return "a number";
    case Json::value_t::string: return "a string";
    case Json::value_t::array: return "an array";
    case Json::value_t::object: return "an object";
    default: return "an invalid value";
  }
}

}  // namespace

ApiError ErrorFromStatus(const Status& s) {
  ApiError e;
  e.message = s.message();
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kUnsupported: e.status = 400; break;
    case StatusCode::kNotFound: e.status = 404; break;
    case StatusCode::kUnavailable:
      e.status = 429;
      e.retry_after = 2;
      break;
    case StatusCode::kResourceExhausted: e.status = 503; e.retry_after = 10; break;
    case StatusCode::kCancelled: e.status = 503; e.retry_after = 5; break;
    default: e.status = 500; break;
  }
  return e;
}

void SendApiError(Responder& r, const ApiError& e) {
  r.NoteError(e.message);
  const char* type = e.status == 401   ? "authentication_error"
                     : e.status == 404 ? "not_found_error"
                     : e.status == 429 ? "rate_limit_error"
                     : e.status < 500  ? "invalid_request_error"
                                       : "server_error";
  Json j{{"error", {{"message", e.message}, {"type", type},
                    {"param", e.param.empty() ? Json(nullptr) : Json(e.param)}, {"code", e.status}}}};
  HeaderList h;
  if (e.retry_after > 0) h.push_back({"Retry-After", std::to_string(e.retry_after)});
  r.Send(e.status, "application/json", Dump(j), h);
}

Result<Json> ParseBody(const std::string& body) {
  // Nesting depth outside strings (nlohmann's parser is iterative, but the handlers and the
  // chat renderer walk values recursively).
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (const char c : body) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > 64) return Error(StatusCode::kInvalidArgument, "request body: JSON nested deeper than 64 levels");
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  Json j;
  try {
    j = Json::parse(body);
  } catch (const Json::parse_error& e) {
    return Error(StatusCode::kInvalidArgument, "request body is not valid JSON: {}", e.what());
  }
  if (!j.is_object()) {
    return Error(StatusCode::kInvalidArgument, "request body: expected a JSON object, got {}", TypeName(j));
  }
  return j;
}

void Fields::Fail(const char* key, std::string message) {
  if (!error_.ok()) return;
  param_ = prefix_ + key;
  error_ = Status(StatusCode::kInvalidArgument, fmt::format("{}: {}", param_, message));
}

const Json* Fields::Get(const char* key) const {
  auto it = obj_.find(key);
  if (it == obj_.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<double> Fields::Number(const char* key, double lo, double hi) {
  const Json* v = Get(key);
  if (!v) return std::nullopt;
  if (!v->is_number()) {
    Fail(key, fmt::format("expected a number, got {}", TypeName(*v)));
    return std::nullopt;
  }
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    Fail(key, fmt::format("{} is out of range [{}, {}]", d, lo, hi));
    return std::nullopt;
  }
  return d;
}

std::optional<int64_t> Fields::Int(const char* key, int64_t lo, int64_t hi) {
  const Json* v = Get(key);
  if (!v) return std::nullopt;
  int64_t i = 0;
  if (v->is_number_integer()) {
    i = v->get<int64_t>();
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) i = INT64_MAX;
  } else if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
             std::fabs(v->get<double>()) < 9e15) {
    i = static_cast<int64_t>(v->get<double>());
  } else {
    Fail(key, fmt::format("expected an integer, got {}", TypeName(*v)));
    return std::nullopt;
  }
  if (i < lo || i > hi) {
    Fail(key, fmt::format("{} is out of range [{}, {}]", i, lo, hi));
    return std::nullopt;
  }
  return i;
}

std::optional<bool> Fields::Bool(const char* key) {
  const Json* v = Get(key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) {
    Fail(key, fmt::format("expected a boolean, got {}", TypeName(*v)));
    return std::nullopt;
  }
  return v->get<bool>();
}

std::optional<std::string> Fields::String(const char* key) {
  const Json* v = Get(key);
  if (!v) return std::nullopt;
  if (!v->is_string()) {
    Fail(key, fmt::format("expected a string, got {}", TypeName(*v)));
    return std::nullopt;
  }
  return v->get<std::string>();
}

std::optional<std::vector<std::string>> Fields::Strings(const char* key, size_t max) {
  const Json* v = Get(key);
  if (!v) return std::nullopt;
  std::vector<std::string> out;
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    for (const Json& s : *v) {
      if (!s.is_string()) {
        Fail(key, fmt::format("expected strings, got {}", TypeName(s)));
        return std::nullopt;
      }
      out.push_back(s.get<std::string>());
    }
  } else {
    Fail(key, fmt::format("expected a string or an array of strings, got {}", TypeName(*v)));
    return std::nullopt;
  }
  if (out.size() > max) {
    Fail(key, fmt::format("at most {} entries", max));
    return std::nullopt;
  }
  for (const std::string& s : out) {
    if (s.empty()) {
      Fail(key, "empty string");
      return std::nullopt;
    }
  }
  return out;
}

Result<std::optional<orchestrator::KeepAlive>> ParseKeepAlive(const Json* value) {
  using R = std::optional<orchestrator::KeepAlive>;
  if (!value || value->is_null()) return R();
  if (value->is_number()) {
    const double s = value->get<double>();
    if (!std::isfinite(s)) return Error(StatusCode::kInvalidArgument, "keep_alive: not a finite number");
    if (s < 0) return R(orchestrator::kKeepForever);
    return R(orchestrator::KeepAlive(static_cast<int64_t>(std::min(s, 1e9) * 1000)));
  }
  if (!value->is_string()) {
    return Error(StatusCode::kInvalidArgument, "keep_alive: expected a duration string (\"5m\") or seconds");
  }
  auto d = orchestrator::ParseDuration(value->get<std::string>());
  if (!d.ok()) return Error(StatusCode::kInvalidArgument, "keep_alive: {}", d.status().message());
  if (d->forever) return R(orchestrator::kKeepForever);
  return R(orchestrator::KeepAlive(d->ms));
}

namespace {

// What `now` adds to `sent` (and `sent` becomes `now`); nothing when `now` does not extend it.
std::string Extend(std::string& sent, const std::string& now) {
  if (now.size() <= sent.size() || now.compare(0, sent.size(), sent) != 0) return {};
  std::string added = now.substr(sent.size());
  sent = now;
  return added;
}

}  // namespace

ChatDeltaSplitter::Delta ChatDeltaSplitter::Emit(const chat::ParsedChatOutput& p) {
  Delta d;
  d.reasoning = Extend(reasoning_sent_, p.message.reasoning_content.value_or(""));
  d.content = Extend(content_sent_, p.message.content);
  for (size_t i = calls_sent_; i < p.message.tool_calls.size(); ++i) d.tool_calls.push_back(p.message.tool_calls[i]);
  calls_sent_ = std::max(calls_sent_, p.message.tool_calls.size());
  return d;
}

ChatDeltaSplitter::Delta ChatDeltaSplitter::Push(std::string_view text) {
  if (text.empty()) return {};
  text_.append(text);
  chat::ChatOutputOptions o;
  o.thinking = thinking_;
  o.partial = true;
  // The partial parse of a prefix is a prefix of the final parse (chat::ParseChatOutput), so
  // what is sent now is never taken back.
  return Emit(chat::ParseChatOutput(text_, o));
}

chat::ParsedChatOutput ChatDeltaSplitter::Final() const {
  chat::ChatOutputOptions o;
  o.thinking = thinking_;
  return chat::ParseChatOutput(text_, o);
}

ChatDeltaSplitter::Delta ChatDeltaSplitter::Flush() { return Emit(Final()); }

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string Base64(const void* data, size_t n) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    const uint32_t v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < n) {
    uint32_t v = p[i] << 16;
    if (i + 1 < n) v |= p[i + 1] << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string NewId(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t seed = std::random_device{}() ^ static_cast<uint64_t>(
      std::chrono::steady_clock::now().time_since_epoch().count());
  return fmt::format("{}{:016x}{:08x}", prefix, seed, static_cast<uint32_t>(counter.fetch_add(1)));
}

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace qwenmux::server
