// Helpers shared by the OpenAI and Ollama handlers: JSON request parsing with errors that name
// the field, the mapping of errors to HTTP status codes, keep-alive values, and the streaming
// splitter that turns generated text into reasoning / content / tool-call deltas.
//
// Thread-safety: functions are pure; a ChatDeltaSplitter belongs to one request.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "chat/chat.h"
#include "orchestrator/manager/model_manager.h"
#include "server/http_server.h"

namespace qwenmux::server {

using Json = nlohmann::ordered_json;

// An error with its HTTP status (and Retry-After seconds for overload).
struct ApiError {
  int status = 500;
  std::string message;
  std::string param;       // the offending field, when known
  int retry_after = 0;
};

// Status code -> HTTP status: kInvalidArgument/kOutOfRange/kUnsupported 400, kNotFound 404,
// kUnavailable (queue full) 429 + Retry-After (the Ollama side turns it into 503),
// kResourceExhausted 503 (cannot fit), others 500.
ApiError ErrorFromStatus(const Status& s);

// Sends `e` in the OpenAI error shape {"error": {"message", "type", "param", "code"}} (with
// Retry-After when set).
void SendApiError(Responder& r, const ApiError& e);

// Parses a request body: an object, at most 64 levels deep; the error says where.
Result<Json> ParseBody(const std::string& body);

// Typed optional fields; the first problem is kept in status() naming the field.
class Fields {
 public:
  explicit Fields(const Json& obj, std::string prefix = "") : obj_(obj), prefix_(std::move(prefix)) {}
  std::optional<double> Number(const char* key, double lo, double hi);
  std::optional<int64_t> Int(const char* key, int64_t lo, int64_t hi);
  std::optional<bool> Bool(const char* key);
  std::optional<std::string> String(const char* key);
  // Stop strings: a string or an array of strings (at most max).
  std::optional<std::vector<std::string>> Strings(const char* key, size_t max);
  const Json* Get(const char* key) const;  // nullptr when absent or null
  bool ok() const { return error_.ok(); }
  const Status& status() const { return error_; }
  const std::string& param() const { return param_; }
  void Fail(const char* key, std::string message);
  void Adopt(const Fields& inner) {  // takes the first error of a nested object's reader
    if (error_.ok() && !inner.ok()) {
      error_ = inner.error_;
      param_ = inner.param_;
    }
  }

 private:
  const Json& obj_;
  std::string prefix_;
  Status error_;
  std::string param_;
};

// Ollama-style keep_alive: a duration string ("5m", "-1", "0") or a number of seconds.
Result<std::optional<orchestrator::KeepAlive>> ParseKeepAlive(const Json* value);

// Turns the growing generated text into deltas for streaming clients, using
// chat::ParseChatOutput on the text so far (partial mode), so streaming and final answers split
// reasoning, content and tool calls the same way.
class ChatDeltaSplitter {
 public:
  explicit ChatDeltaSplitter(bool thinking) : thinking_(thinking) {}
  struct Delta {
    std::string reasoning, content;
    std::vector<chat::ChatToolCall> tool_calls;  // newly completed calls
  };
  Delta Push(std::string_view text);
  // The final split of everything (not partial).
  chat::ParsedChatOutput Final() const;
  // What the final split has beyond what Push returned (held-back newlines, a trailing partial
  // tag that turned out to be text, tool calls closed by the end of the stream). After Flush,
  // the concatenated deltas equal Final()'s reasoning, content and tool calls.
  Delta Flush();
  const std::string& text() const { return text_; }

 private:
  Delta Emit(const chat::ParsedChatOutput& p);

  bool thinking_;
  std::string text_;
  std::string reasoning_sent_, content_sent_;  // concatenation of the deltas so far
  size_t calls_sent_ = 0;
};

// JSON text of a value, invalid UTF-8 replaced (never throws).
std::string Dump(const Json& j);
// Standard base64 (embeddings encoding_format=base64).
std::string Base64(const void* data, size_t n);

// A unique-enough id: prefix + 24 hex digits.
std::string NewId(const char* prefix);
int64_t UnixNow();

}  // namespace qwenmux::server
