// The dialect translators of the backends (upstream_translate.h, upstream_stream.h) on their
// own: tool calls both ways (streamed and whole), ids for Ollama tool answers, format <->
// response_format, lines split anywhere, and the errors of a broken stream.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "server/upstream_stream.h"
#include "server/upstream_translate.h"

namespace qwenmux::server {
namespace {

using json = Json;  // nlohmann::ordered_json, as the translators use

// The JSON objects of an SSE body ("data: {...}"), and whether it ended with [DONE].
std::vector<json> Events(const std::string& sse, bool* done) {
  std::vector<json> out;
  *done = false;
  size_t pos = 0;
  while ((pos = sse.find("data: ", pos)) != std::string::npos) {
    const size_t end = sse.find("\n\n", pos);
    const std::string data = sse.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") *done = true;
    else out.push_back(json::parse(data));
  }
  return out;
}

std::vector<json> Lines(const std::string& ndjson) {
  std::vector<json> out;
  size_t pos = 0;
  for (size_t nl; (nl = ndjson.find('\n', pos)) != std::string::npos; pos = nl + 1) out.push_back(json::parse(ndjson.substr(pos, nl - pos)));
  return out;
}

// Feeds `body` in pieces of `step` bytes.
Status FeedAll(StreamTranslator& t, const std::string& body, size_t step, std::string* out) {
  for (size_t i = 0; i < body.size(); i += step) {
    if (Status s = t.Feed(std::string_view(body).substr(i, step), out); !s.ok()) return s;
  }
  return t.Finish(out);
}

TEST(UpstreamStream, OllamaNdjsonToSseWithThinkingToolCallsAndUsage) {
  const std::string body =
      R"({"model":"m","message":{"role":"assistant","content":"","thinking":"hmm"},"done":false})" "\n"
      R"({"model":"m","message":{"role":"assistant","content":"Let me look."},"done":false})" "\n"
      R"({"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},"done":false})" "\n"
      R"({"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":7,"eval_count":5})" "\n";
  for (const size_t step : {size_t{1}, size_t{7}, body.size()}) {
    OllamaToSse t("b/m", /*include_usage=*/true);
    std::string out;
    ASSERT_TRUE(FeedAll(t, body, step, &out).ok());
    bool done = false;
    const std::vector<json> ev = Events(out, &done);
    EXPECT_TRUE(done);
    std::string content, reasoning, finish;
    json calls = json::array(), usage;
    for (const json& e : ev) {
      EXPECT_EQ(e["model"], "b/m");
      if (e.contains("usage")) usage = e["usage"];
      if (e["choices"].empty()) continue;
      const json& c = e["choices"][0];
      if (c["finish_reason"].is_string()) finish = c["finish_reason"];
      content += c["delta"].value("content", "");
      reasoning += c["delta"].value("reasoning_content", "");
      if (c["delta"].contains("tool_calls")) for (const json& x : c["delta"]["tool_calls"]) calls.push_back(x);
    }
    EXPECT_EQ(ev.front()["choices"][0]["delta"]["role"], "assistant");
    EXPECT_EQ(content, "Let me look.");
    EXPECT_EQ(reasoning, "hmm");
    EXPECT_EQ(finish, "tool_calls");
    ASSERT_EQ(calls.size(), 1u);
    EXPECT_EQ(calls[0]["index"], 0);
    EXPECT_EQ(calls[0]["type"], "function");
    EXPECT_FALSE(calls[0]["id"].get<std::string>().empty());
    EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
    EXPECT_EQ(json::parse(calls[0]["function"]["arguments"].get<std::string>()), json({{"city", "Paris"}}));
    EXPECT_EQ(usage, json({{"prompt_tokens", 7}, {"completion_tokens", 5}, {"total_tokens", 12}}));
  }
}

TEST(UpstreamStream, OpenAiSseToNdjsonGathersToolCallFragments) {
  auto ev = [](const json& delta, const json& finish = nullptr) {
    return "data: " + json{{"choices", json::array({json{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}})}}.dump() + "\n\n";
  };
  const std::string body =
      ": keep-alive comment\n\n" + ev({{"role", "assistant"}, {"reasoning_content", "think"}}) + ev({{"content", "Hi"}}) +
      ev({{"tool_calls", json::array({json{{"index", 0}, {"id", "call_a"}, {"type", "function"},
                                          {"function", {{"name", "get_weather"}, {"arguments", "{\"ci"}}}}})}}) +
      ev({{"tool_calls", json::array({json{{"index", 0}, {"function", {{"arguments", "ty\":\"Paris\"}"}}}}})}}) +
      ev({{"tool_calls", json::array({json{{"index", 1}, {"id", "call_b"}, {"function", {{"name", "now"}, {"arguments", "{}"}}}}})}}) +
      ev(json::object(), "tool_calls") +
      "data: " + json{{"choices", json::array()}, {"usage", {{"prompt_tokens", 9}, {"completion_tokens", 4}}}}.dump() + "\n\n" +
      "data: [DONE]\n\n";
  for (const size_t step : {size_t{1}, size_t{13}, body.size()}) {
    SseToOllama t("b/m");
    std::string out;
    ASSERT_TRUE(FeedAll(t, body, step, &out).ok());
    const std::vector<json> lines = Lines(out);
    ASSERT_GE(lines.size(), 4u) << out;
    std::string content, thinking;
    json calls = json::array();
    for (const json& l : lines) {
      EXPECT_EQ(l["model"], "b/m");
      content += l["message"].value("content", "");
      thinking += l["message"].value("thinking", "");
      if (l["message"].contains("tool_calls")) for (const json& c : l["message"]["tool_calls"]) calls.push_back(c);
    }
    EXPECT_EQ(content, "Hi");
    EXPECT_EQ(thinking, "think");
    ASSERT_EQ(calls.size(), 2u) << out;
    EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
    EXPECT_EQ(calls[0]["function"]["arguments"], json({{"city", "Paris"}}));  // an object, as Ollama sends it
    EXPECT_EQ(calls[1]["function"]["name"], "now");
    const json& last = lines.back();
    EXPECT_EQ(last["done"], true);
    EXPECT_EQ(last["done_reason"], "stop");
    EXPECT_EQ(last["prompt_eval_count"], 9);
    EXPECT_EQ(last["eval_count"], 4);
    for (size_t i = 0; i + 1 < lines.size(); ++i) EXPECT_EQ(lines[i]["done"], false);
  }
}

TEST(UpstreamStream, BrokenStreamsAreErrors) {
  {
    OllamaToSse t("b/m", false);
    std::string out;
    EXPECT_TRUE(t.Feed(R"({"message":{"content":"a"},"done":false})" "\n", &out).ok());
    const Status s = t.Finish(&out);  // no done line
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("ended before"), std::string::npos) << s.message();
  }
  {
    OllamaToSse t("b/m", false);
    std::string out;
    const Status s = t.Feed(R"({"error":"model crashed"})" "\n", &out);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.message(), "model crashed");
  }
  {
    SseToOllama t("b/m");
    std::string out;
    const Status s = t.Feed("data: {not json\n\n", &out);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("not a JSON object"), std::string::npos) << s.message();
  }
  {
    SseToOllama t("b/m", /*max_line=*/64);
    std::string out;
    const Status s = t.Feed("data: " + std::string(100, 'x'), &out);  // no newline, over the cap
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("longer than 64 bytes"), std::string::npos) << s.message();
  }
  {
    SseToOllama t("b/m");
    std::string out;
    EXPECT_TRUE(t.Feed(R"(data: {"choices":[{"index":0,"delta":{"content":"a"}}]})" "\n\n", &out).ok());
    EXPECT_FALSE(t.Finish(&out).ok());  // no finish_reason, no [DONE]
  }
}

TEST(UpstreamTranslate, OllamaChatRequestToOpenAi) {
  const json body = json::parse(R"({
    "model": "b/m", "think": false, "format": "json",
    "options": {"temperature": 0.2, "num_predict": 30, "stop": ["x"], "seed": 4},
    "tools": [{"type": "function", "function": {"name": "get_weather"}}],
    "messages": [
      {"role": "user", "content": "weather?"},
      {"role": "assistant", "content": "", "thinking": "t",
       "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                      {"function": {"name": "now", "arguments": {}}}]},
      {"role": "tool", "tool_name": "now", "content": "noon"},
      {"role": "tool", "content": "sunny"}]})");
  const Result<json> r = OllamaChatToOpenAiRequest(body, "m");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const json& o = *r;
  EXPECT_EQ(o["model"], "m");
  EXPECT_EQ(o["stream"], true);
  EXPECT_EQ(o["stream_options"]["include_usage"], true);
  EXPECT_EQ(o["max_tokens"], 30);
  EXPECT_EQ(o["temperature"], 0.2);
  EXPECT_EQ(o["seed"], 4);
  EXPECT_EQ(o["stop"], json::array({"x"}));
  EXPECT_EQ(o["response_format"], json({{"type", "json_object"}}));
  EXPECT_EQ(o["chat_template_kwargs"]["enable_thinking"], false);
  EXPECT_EQ(o["tools"], body["tools"]);
  const json& a = o["messages"][1];
  EXPECT_EQ(a["reasoning_content"], "t");
  ASSERT_EQ(a["tool_calls"].size(), 2u);
  EXPECT_EQ(json::parse(a["tool_calls"][0]["function"]["arguments"].get<std::string>()), json({{"city", "Paris"}}));
  // Tool answers: by name, then the oldest call still open.
  EXPECT_EQ(o["messages"][2]["tool_call_id"], a["tool_calls"][1]["id"]);
  EXPECT_EQ(o["messages"][3]["tool_call_id"], a["tool_calls"][0]["id"]);

  json schema_body = body;
  schema_body["format"] = {{"type", "object"}};
  schema_body["stream"] = false;
  const Result<json> s = OllamaChatToOpenAiRequest(schema_body, "m");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->at("response_format")["type"], "json_schema");
  EXPECT_EQ(s->at("response_format")["json_schema"]["schema"], json({{"type", "object"}}));
  EXPECT_FALSE(s->contains("stream_options"));

  json images = body;
  images["messages"][0]["images"] = json::array({"aGk="});
  const Result<json> i = OllamaChatToOpenAiRequest(images, "m");
  ASSERT_FALSE(i.ok());
  EXPECT_NE(i.status().message().find("images"), std::string::npos);
  json bad_format = body;
  bad_format["format"] = 3;
  EXPECT_FALSE(OllamaChatToOpenAiRequest(bad_format, "m").ok());
}

TEST(UpstreamTranslate, AnswersBothWays) {
  const json openai = json::parse(R"({"choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant",
    "content":null,"reasoning_content":"r","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}}],
    "usage":{"prompt_tokens":3,"completion_tokens":2}})");
  const Result<json> o = OpenAiChatAnswerToOllama(openai, "b/m");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ((*o)["model"], "b/m");
  EXPECT_EQ((*o)["message"]["content"], "");
  EXPECT_EQ((*o)["message"]["thinking"], "r");
  EXPECT_EQ((*o)["message"]["tool_calls"][0]["function"]["arguments"], json({{"a", 1}}));
  EXPECT_EQ((*o)["eval_count"], 2);
  EXPECT_EQ((*o)["prompt_eval_count"], 3);
  EXPECT_FALSE(OpenAiChatAnswerToOllama(json{{"choices", json::array()}}, "m").ok());

  const Result<json> e = OpenAiEmbedAnswerToOllama(
      json::parse(R"({"data":[{"index":1,"embedding":[2.0]},{"index":0,"embedding":[1.0]}],"usage":{"prompt_tokens":4}})"), "b/m", false);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ((*e)["embeddings"], json::parse("[[1.0],[2.0]]"));  // in index order
  EXPECT_EQ((*e)["prompt_eval_count"], 4);
  EXPECT_FALSE(OpenAiEmbedAnswerToOllama(json::parse(R"({"data":[{"index":5,"embedding":[1.0]}]})"), "m", false).ok());
  const Result<json> back = OllamaEmbedAnswerToOpenAi(json::parse(R"({"embeddings":[[1.0],[2.0]],"prompt_eval_count":4})"), "b/m");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ((*back)["data"][1]["embedding"], json::array({2.0}));
  EXPECT_EQ((*back)["usage"]["prompt_tokens"], 4);
  EXPECT_FALSE(OpenAiEmbedToOllama(json{{"input", json::array({1, 2})}}, "m").ok());  // token ids: not translated
}

}  // namespace
}  // namespace qwenmux::server

namespace qwenmux::server {
namespace {

// Completions: /v1/completions <-> /api/generate requests (raw, sampling, what has no form),
// answers, and streams split anywhere.
TEST(UpstreamTranslate, CompletionRequestsBothWays) {
  const json oa{{"model", "b/m"}, {"prompt", json::array({"Once upon"})}, {"max_tokens", 9}, {"temperature", 0.5},
                {"stop", "\n"}, {"seed", 3}, {"stream", true}};
  const Result<json> g = OpenAiCompletionToOllama(oa, "m");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ((*g)["model"], "m");
  EXPECT_EQ((*g)["prompt"], "Once upon");
  EXPECT_EQ((*g)["raw"], true);
  EXPECT_EQ((*g)["stream"], true);
  EXPECT_FALSE(g->contains("messages"));
  EXPECT_EQ((*g)["options"], json({{"temperature", 0.5}, {"seed", 3}, {"stop", {"\n"}}, {"num_predict", 9}}));
  EXPECT_EQ(OpenAiCompletionToOllama(json{{"prompt", "x"}}, "m")->value("stream", true), false);  // Ollama's default is true
  for (const json& bad : {json{{"prompt", json::array({1, 2})}}, json{{"prompt", json::array({"a", "b"})}},
                          json{{"prompt", "a"}, {"echo", true}}, json{{"prompt", "a"}, {"logprobs", 2}},
                          json{{"prompt", "a"}, {"n", 2}}, json::object()}) {
    EXPECT_EQ(OpenAiCompletionToOllama(bad, "m").status().code(), StatusCode::kUnsupported) << bad.dump();
  }

  bool chat = false;
  const json ol{{"model", "b/m"}, {"prompt", "Hi"}, {"system", "Be brief."}, {"think", false},
                {"options", {{"num_predict", 5}}}, {"format", "json"}};
  const Result<json> c = OllamaGenerateToOpenAi(ol, "m", &chat);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(chat);
  EXPECT_EQ((*c)["messages"], json::array({json{{"role", "system"}, {"content", "Be brief."}},
                                           json{{"role", "user"}, {"content", "Hi"}}}));
  EXPECT_EQ((*c)["max_tokens"], 5);
  EXPECT_EQ((*c)["stream"], true);
  EXPECT_EQ((*c)["response_format"], json({{"type", "json_object"}}));
  EXPECT_EQ((*c)["chat_template_kwargs"], json({{"enable_thinking", false}}));
  json raw = ol;
  raw["raw"] = true;
  raw["stream"] = false;
  const Result<json> r = OllamaGenerateToOpenAi(raw, "m", &chat);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(chat);
  EXPECT_EQ((*r)["prompt"], "Hi");
  EXPECT_FALSE(r->contains("messages"));
  EXPECT_FALSE(r->contains("chat_template_kwargs"));
  EXPECT_EQ((*r)["stream"], false);
  for (const char* k : {"images", "context", "suffix"}) {
    json bad{{"prompt", "x"}};
    bad[k] = k == std::string("suffix") ? json("y") : json::array({1});
    EXPECT_EQ(OllamaGenerateToOpenAi(bad, "m", &chat).status().code(), StatusCode::kUnsupported) << k;
  }
}

TEST(UpstreamTranslate, CompletionAnswersBothWays) {
  const Result<json> oa = OllamaGenerateAnswerToOpenAi(
      json{{"model", "m"}, {"response", "text"}, {"done", true}, {"done_reason", "length"}, {"prompt_eval_count", 3},
           {"eval_count", 4}}, "b/m");
  ASSERT_TRUE(oa.ok());
  EXPECT_EQ((*oa)["object"], "text_completion");
  EXPECT_EQ((*oa)["model"], "b/m");
  EXPECT_EQ((*oa)["choices"][0]["text"], "text");
  EXPECT_EQ((*oa)["choices"][0]["finish_reason"], "length");
  EXPECT_EQ((*oa)["usage"], json({{"prompt_tokens", 3}, {"completion_tokens", 4}, {"total_tokens", 7}}));
  EXPECT_FALSE(OllamaGenerateAnswerToOpenAi(json{{"message", {{"content", "x"}}}}, "b/m").ok());

  const Result<json> text = OpenAiAnswerToOllamaGenerate(
      json{{"choices", json::array({json{{"index", 0}, {"text", "abc"}, {"finish_reason", "stop"}}})},
           {"usage", {{"prompt_tokens", 2}, {"completion_tokens", 3}}}}, "b/m");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ((*text)["response"], "abc");
  EXPECT_EQ((*text)["eval_count"], 3);
  EXPECT_EQ((*text)["done"], true);
  const Result<json> chat = OpenAiAnswerToOllamaGenerate(
      json{{"choices", json::array({json{{"index", 0},
                                         {"message", {{"role", "assistant"}, {"content", "hi"}, {"reasoning_content", "r"}}},
                                         {"finish_reason", "length"}}})}}, "b/m");
  ASSERT_TRUE(chat.ok());
  EXPECT_EQ((*chat)["response"], "hi");
  EXPECT_EQ((*chat)["thinking"], "r");
  EXPECT_EQ((*chat)["done_reason"], "length");
  EXPECT_FALSE(chat->contains("message"));
  EXPECT_FALSE(OpenAiAnswerToOllamaGenerate(json{{"choices", json::array()}}, "b/m").ok());
}

TEST(UpstreamStream, CompletionStreamsBothWays) {
  const std::string ndjson = R"({"model":"m","response":"Once","done":false})" "\n"
                             R"({"model":"m","response":" upon","done":false})" "\n"
                             R"({"model":"m","response":"","done":true,"done_reason":"length","prompt_eval_count":2,"eval_count":2})" "\n";
  for (const size_t step : {size_t{1}, size_t{5}, ndjson.size()}) {
    OllamaToSse t("b/m", /*include_usage=*/true, 1u << 20, /*completion=*/true);
    std::string out;
    ASSERT_TRUE(FeedAll(t, ndjson, step, &out).ok());
    bool done = false;
    std::string text, finish;
    json usage;
    for (const json& e : Events(out, &done)) {
      EXPECT_EQ(e["object"], "text_completion");
      if (e.contains("usage")) usage = e["usage"];
      if (e["choices"].empty()) continue;
      EXPECT_FALSE(e["choices"][0].contains("delta"));
      text += e["choices"][0]["text"].get<std::string>();
      if (e["choices"][0]["finish_reason"].is_string()) finish = e["choices"][0]["finish_reason"];
    }
    EXPECT_TRUE(done);
    EXPECT_EQ(text, "Once upon");
    EXPECT_EQ(finish, "length");
    EXPECT_EQ(usage["completion_tokens"], 2);
  }
  // SSE of text_completion chunks (raw) or chat chunks -> /api/generate lines.
  const std::string sse = "data: {\"choices\":[{\"index\":0,\"text\":\"Once\",\"finish_reason\":null}]}\n\n"
                          "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hm\"}}]}\n\n"
                          "data: {\"choices\":[{\"index\":0,\"text\":\" upon\",\"finish_reason\":\"stop\"}]}\n\n"
                          "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\n\n"
                          "data: [DONE]\n\n";
  for (const size_t step : {size_t{1}, size_t{9}, sse.size()}) {
    SseToOllama t("b/m", 1u << 20, /*generate=*/true);
    std::string out;
    ASSERT_TRUE(FeedAll(t, sse, step, &out).ok());
    std::string response, thinking;
    json last;
    for (const json& l : Lines(out)) {
      EXPECT_FALSE(l.contains("message")) << l.dump();
      response += l.value("response", "");
      thinking += l.value("thinking", "");
      if (l["done"] == true) last = l;
    }
    EXPECT_EQ(response, "Once upon");
    EXPECT_EQ(thinking, "hm");
    EXPECT_EQ(last["done_reason"], "stop");
    EXPECT_EQ(last["eval_count"], 3);
    EXPECT_EQ(last["model"], "b/m");
  }
}

}  // namespace
}  // namespace qwenmux::server
