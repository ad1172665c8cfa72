// Streamed chat answers translated between the dialects (upstream.h): an Ollama backend's
// NDJSON /api/chat stream to OpenAI chat.completion.chunk SSE events, and an OpenAI backend's
// SSE stream to Ollama NDJSON lines. Text, thinking (reasoning_content <-> thinking), tool calls
// (OpenAI's indexed argument fragments are gathered and sent to an Ollama client as whole calls
// when the answer ends) and usage (eval counts <-> usage) carry over.
//
// Use: Feed() each body chunk as it arrives (lines may be split anywhere) and write what it
// appends; Finish() at the end of the body. An error line from the backend, a line that is not
// JSON, a line longer than the cap or a body that ends before the answer did gives an error
// (the caller ends the client's stream with it).
//
// Thread-safety: one object per stream, one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "base/status.h"
#include "server/api_common.h"

namespace qwenmux::server {

class StreamTranslator {
 public:
  virtual ~StreamTranslator() = default;
  Status Feed(std::string_view chunk, std::string* out);
  virtual Status Finish(std::string* out) = 0;
  bool done() const { return done_; }

 protected:
  explicit StreamTranslator(size_t max_line) : max_line_(max_line) {}
  virtual Status Line(std::string_view line, std::string* out) = 0;
  bool done_ = false;

 private:
  std::string pending_;  // the start of a line not complete yet
  size_t max_line_;
};

// Ollama NDJSON -> OpenAI SSE ("data: {chunk}\n\n" ... "data: [DONE]\n\n"); `model` is the name
// the client used; include_usage: a last chunk with usage (stream_options.include_usage).
// completion: an /api/generate stream ("response" lines) to text_completion chunks
// (choices[0].text) for /v1/completions; else an /api/chat stream to chat.completion.chunk.
class OllamaToSse : public StreamTranslator {
 public:
  OllamaToSse(std::string model, bool include_usage, size_t max_line = 1u << 20, bool completion = false);
  Status Finish(std::string* out) override;

 private:
  Status Line(std::string_view line, std::string* out) override;
  std::string Chunk(Json delta, const Json& finish) const;
  std::string model_, id_;
  int64_t created_;
  bool include_usage_, completion_, started_ = false;
  int64_t tool_calls_ = 0;
};

// OpenAI SSE -> Ollama NDJSON ({"model", "created_at", "message", "done": false} lines, then
// one "done": true line with done_reason and eval counts). generate: lines for /api/generate
// ("response" and "thinking" instead of "message"); the events may be chat chunks (delta) or
// text_completion chunks (choices[0].text).
class SseToOllama : public StreamTranslator {
 public:
  explicit SseToOllama(std::string model, size_t max_line = 1u << 20, bool generate = false);
  Status Finish(std::string* out) override;

 private:
  Status Line(std::string_view line, std::string* out) override;
  void End(std::string* out);
  std::string Message(Json message, bool done) const;
  struct Call {
    std::string id, name, arguments;
  };
  std::string model_;
  bool generate_;
  std::map<int64_t, Call> calls_;  // by OpenAI's index
  std::string finish_;
  int64_t prompt_tokens_ = -1, completion_tokens_ = -1;
};

}  // namespace qwenmux::server
