// Other engines as routed backends (issue 18), over HTTP: a second qwenmux server in-process is
// the upstream, reached through a front server as "up/tiny" (OpenAI dialect) and "upo/tiny"
// (Ollama dialect): the lists show the backend's models, chat answers (plain and streamed) are
// the upstream's own greedy tokens, and an OpenAI request to the Ollama-dialect backend is
// translated. Tiny fake upstreams (raw sockets) return invalid JSON, HTTP 500, nothing, or break
// off a stream; nothing listens behind another: each gives a clear 502/504 (or an error at the
// end of the stream) naming the backend, and the front keeps serving its local model.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "orchestrator/temp_dir.h"
#include "server/app.h"
#include "server/http_client.h"
#include "server/upstream_fixture.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::ModelPath;

// A misbehaving backend: lists one model "m" (GET /v1/models and /api/tags) and answers every
// POST the way its mode says.
class FakeUpstream {
 public:
  // kDrip: an SSE event every 20 ms until the client goes (counted in disconnects());
  // kSlowBody: a 4000-byte answer, one byte every 5 ms; kManyModels: lists 3000 models;
  // kHugeList: a 2 MiB model list; kNoRoutes: 404 "404 page not found" (text) to every POST, as
  // Ollama answers a route it does not have.
  enum class Mode { kInvalidJson, kHttp500, kNeverAnswers, kStreamBreaks, kDrip, kSlowBody, kManyModels, kHugeList, kNoRoutes };
  explicit FakeUpstream(Mode mode) : mode_(mode) {
    fd_ = qwenmux::testing::ListenLoopback(&port_);
    accept_ = std::thread([this] { AcceptLoop(); });
  }
  ~FakeUpstream() {
    stop_.store(true);
    ::shutdown(fd_, SHUT_RDWR);
    accept_.join();
    for (auto& t : conns_) t.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  int disconnects() const { return disconnects_.load(); }

 private:
  void AcceptLoop() {
    while (!stop_.load()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      conns_.emplace_back([this, c] { Serve(c); });
    }
  }
  void Send(int c, const std::string& s) { (void)!::send(c, s.data(), s.size(), MSG_NOSIGNAL); }
  static std::string Response(int status, const std::string& body, const std::string& type = "application/json") {
    return "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " Internal Server Error") +
           "\r\nContent-Type: " + type + "\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nConnection: close\r\n\r\n" + body;
  }
  void Serve(int c) {
    std::string in;
    char buf[4096];
    size_t header_end = std::string::npos;
    while (header_end == std::string::npos) {  // the header, then Content-Length bytes
      pollfd p{c, POLLIN, 0};
      if (stop_.load()) return (void)::close(c);
      if (::poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = ::recv(c, buf, sizeof(buf), 0);
      if (n <= 0) return (void)::close(c);
      in.append(buf, static_cast<size_t>(n));
      header_end = in.find("\r\n\r\n");
    }
    size_t length = 0;
    if (size_t at = in.find("Content-Length: "); at != std::string::npos) length = std::stoul(in.substr(at + 16));
    while (in.size() < header_end + 4 + length) {
      const ssize_t n = ::recv(c, buf, sizeof(buf), 0);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
    }
    if (in.starts_with("GET /v1/models") && (mode_ == Mode::kManyModels || mode_ == Mode::kHugeList)) {
      std::string list = R"({"object":"list","data":[)";
      const int n = mode_ == Mode::kManyModels ? 3000 : 30000;
      for (int i = 0; i < n; ++i) {
        list += (i ? "," : "") + std::string(R"({"id":"m)") + std::to_string(i) + R"(","object":"model","owned_by":"fake")" +
                (mode_ == Mode::kHugeList ? R"(,"pad":")" + std::string(40, 'x') + "\"" : "") + "}";
      }
      Send(c, Response(200, list + "]}"));
    } else if (in.starts_with("GET /v1/models")) {
      Send(c, Response(200, R"({"object":"list","data":[{"id":"m","object":"model","owned_by":"fake"}]})"));
    } else if (in.starts_with("GET /api/tags")) {
      Send(c, Response(200, R"({"models":[{"name":"m","model":"m","size":1}]})"));
    } else if (mode_ == Mode::kInvalidJson) {
      Send(c, Response(200, "{\"choices\": [ not json"));
    } else if (mode_ == Mode::kNoRoutes) {
      Send(c, Response(404, "404 page not found", "text/plain"));
    } else if (mode_ == Mode::kHttp500) {
      Send(c, Response(500, R"({"error":{"message":"the fake engine crashed"}})"));
    } else if (mode_ == Mode::kNeverAnswers) {
      while (!stop_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } else if (mode_ == Mode::kDrip) {
      Send(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
      const std::string event = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
      while (!stop_.load()) {
        if (::send(c, event.data(), event.size(), MSG_NOSIGNAL) < 0) {
          ++disconnects_;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    } else if (mode_ == Mode::kSlowBody) {
      Send(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4000\r\nConnection: close\r\n\r\n");
      for (int i = 0; i < 4000 && !stop_.load(); ++i) {
        if (::send(c, " ", 1, MSG_NOSIGNAL) < 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    } else if (mode_ == Mode::kManyModels || mode_ == Mode::kHugeList) {
      Send(c, Response(500, R"({"error":"not a chat server"})"));
    } else {  // one chunk of an SSE stream, then the connection drops without the last chunk
      const std::string event = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n";
      char size[16];
      std::snprintf(size, sizeof(size), "%zx", event.size());
      Send(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
                  std::string(size) + "\r\n" + event + "\r\n");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::close(c);
  }

  Mode mode_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> disconnects_{0};
  std::thread accept_;
  std::vector<std::thread> conns_;  // joined at the end (only the accept thread adds)
};

json Messages() { return json::array({json{{"role", "user"}, {"content", "Name three colours."}}}); }

json OpenAiChat(const std::string& model, bool stream, int max_tokens = 12) {
  return json{{"model", model}, {"messages", Messages()}, {"max_tokens", max_tokens}, {"temperature", 0},
              {"stream", stream}};
}

// Concatenated delta text of an SSE chat stream ("content" and "reasoning_content"), and whether
// it ended with [DONE].
struct SseText {
  std::string content, reasoning, error;
  bool done = false;
};
SseText ReadSse(const std::string& body) {
  SseText out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string::npos) end = body.size();
    const std::string line = body.substr(pos, end - pos);
    pos = end + 1;
    if (!line.starts_with("data: ")) continue;
    if (line == "data: [DONE]") {
      out.done = true;
      continue;
    }
    const json j = json::parse(line.substr(6), nullptr, false);
    if (j.is_discarded()) continue;
    if (j.contains("error")) out.error = j["error"].value("message", "");
    if (!j.contains("choices") || j["choices"].empty()) continue;
    const json& d = j["choices"][0]["delta"];
    if (d.contains("content") && d["content"].is_string()) out.content += d["content"].get<std::string>();
    if (d.contains("reasoning_content") && d["reasoning_content"].is_string())
      out.reasoning += d["reasoning_content"].get<std::string>();
  }
  return out;
}

class Upstream : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    upstream_ = qwenmux::testing::StartTinyUpstream(256).release();  // the upstream: another qwenmux
    ASSERT_NE(upstream_, nullptr);

    invalid_ = new FakeUpstream(FakeUpstream::Mode::kInvalidJson);
    http500_ = new FakeUpstream(FakeUpstream::Mode::kHttp500);
    hang_ = new FakeUpstream(FakeUpstream::Mode::kNeverAnswers);
    breaks_ = new FakeUpstream(FakeUpstream::Mode::kStreamBreaks);
    drip_ = new FakeUpstream(FakeUpstream::Mode::kDrip);
    slow_ = new FakeUpstream(FakeUpstream::Mode::kSlowBody);
    many_ = new FakeUpstream(FakeUpstream::Mode::kManyModels);
    huge_ = new FakeUpstream(FakeUpstream::Mode::kHugeList);
    noroutes_ = new FakeUpstream(FakeUpstream::Mode::kNoRoutes);
    const uint16_t dead_port = qwenmux::testing::DeadPort();

    dir_ = new qwenmux::testing::TempDir();
    const auto url = qwenmux::testing::LoopbackUrl;
    std::ofstream(*dir_ / "qwenmux.yaml")
        << "backends:\n"
        << "  - name: bad\n    url: " << url(invalid_->port()) << "\n"
        << "  - name: crash\n    url: " << url(http500_->port()) << "\n"
        << "  - name: crash-o\n    url: " << url(http500_->port()) << "\n    dialect: ollama\n"
        << "  - name: hang\n    url: " << url(hang_->port()) << "\n    timeout: 300ms\n"
        << "  - name: breaks\n    url: " << url(breaks_->port()) << "\n"
        << "  - name: drip\n    url: " << url(drip_->port()) << "\n"
        << "  - name: slow\n    url: " << url(slow_->port()) << "\n"
        << "  - name: many\n    url: " << url(many_->port()) << "\n"
        << "  - name: huge\n    url: " << url(huge_->port()) << "\n"
        << "  - name: noroute\n    url: " << url(noroutes_->port()) << "\n    dialect: ollama\n";
    AppOptions fo;  // the front: a local model and the backends
    fo.config_path = *dir_ / "qwenmux.yaml";
    fo.model_flags = {ModelPath("tiny-dense.q8_0.gguf") + "=local"};
    fo.backend_flags = {"up=" + url(upstream_->port()), "upo=" + url(upstream_->port()) + ",ollama",
                        "down=" + url(dead_port)};
    fo.upstream.min_backoff = std::chrono::milliseconds(50);
    fo.upstream.max_backoff = std::chrono::milliseconds(200);
    fo.upstream.connect_timeout = std::chrono::milliseconds(1000);
    fo.upstream.max_duration = std::chrono::milliseconds(3000);  // the slow drips end here
    fo.upstream.max_models = 100;
    fo.upstream.max_list_bytes = 1u << 20;
    fo.http.port = 0;
    fo.models.n_ctx = 256;
    fo.models.threads = 1;
    auto front = App::Create(std::move(fo), [](const std::string& line) {
      std::lock_guard lock(log_mu_);
      log_ += line + "\n";
    });
    ASSERT_TRUE(front.ok()) << front.status().ToString();
    front_ = std::move(*front).release();
    ASSERT_TRUE(front_->Start().ok());
    // Discovery runs on its own thread: wait for the upstream's model in the list.
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < end) {
      const std::string body = Call(front_->port(), "GET", "/v1/models").body;
      if (body.find("\"up/tiny\"") != std::string::npos && body.find("\"upo/tiny\"") != std::string::npos &&
          body.find("\"bad/m\"") != std::string::npos && body.find("\"hang/m\"") != std::string::npos &&
          body.find("\"drip/m\"") != std::string::npos && body.find("\"slow/m\"") != std::string::npos &&
          body.find("\"many/m99\"") != std::string::npos && body.find("\"noroute/m\"") != std::string::npos)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  static void TearDownTestSuite() {
    delete front_;
    delete upstream_;
    delete invalid_;
    delete http500_;
    delete hang_;
    delete breaks_;
    delete drip_;
    delete slow_;
    delete many_;
    delete huge_;
    delete noroutes_;
    delete dir_;
  }
  static uint16_t front() { return front_->port(); }
  static uint16_t upstream() { return upstream_->port(); }
  static std::string Log() {
    std::lock_guard lock(log_mu_);
    return log_;
  }
  // The front still serves its local model and says it is healthy.
  static void ExpectFrontHealthy() {
    EXPECT_EQ(Call(front(), "GET", "/health").status, 200);
    const auto r = Call(front(), "POST", "/v1/chat/completions", OpenAiChat("local", false, 2).dump());
    EXPECT_EQ(r.status, 200) << r.body;
  }

  static App* upstream_;
  static App* front_;
  static FakeUpstream *invalid_, *http500_, *hang_, *breaks_, *drip_, *slow_, *many_, *huge_, *noroutes_;
  static qwenmux::testing::TempDir* dir_;
  static std::mutex log_mu_;
  static std::string log_;
};
App* Upstream::upstream_ = nullptr;
App* Upstream::front_ = nullptr;
FakeUpstream *Upstream::invalid_ = nullptr, *Upstream::http500_ = nullptr, *Upstream::hang_ = nullptr,
             *Upstream::breaks_ = nullptr, *Upstream::drip_ = nullptr, *Upstream::slow_ = nullptr,
             *Upstream::many_ = nullptr, *Upstream::huge_ = nullptr, *Upstream::noroutes_ = nullptr;
qwenmux::testing::TempDir* Upstream::dir_ = nullptr;
std::mutex Upstream::log_mu_;
std::string Upstream::log_;

TEST_F(Upstream, ListsBackendModelsInBothDialects) {
  const auto r = Call(front(), "GET", "/v1/models");
  ASSERT_EQ(r.status, 200);
  const json list = json::parse(r.body);
  std::map<std::string, json> by_id;
  for (const json& m : list["data"]) by_id[m["id"].get<std::string>()] = m;
  ASSERT_TRUE(by_id.count("local")) << r.body;
  ASSERT_TRUE(by_id.count("up/tiny")) << r.body;
  EXPECT_EQ(by_id["up/tiny"]["backend"]["name"], "up");
  EXPECT_EQ(by_id["up/tiny"]["backend"]["model"], "tiny");
  EXPECT_EQ(by_id["up/tiny"]["backend"]["state"], "ready");
  EXPECT_EQ(by_id["upo/tiny"]["backend"]["dialect"], "ollama");
  EXPECT_FALSE(by_id.count("down/tiny"));  // never reached: nothing to list

  const auto one = Call(front(), "GET", "/v1/models/up/tiny");
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(json::parse(one.body)["id"], "up/tiny");

  const auto tags = Call(front(), "GET", "/api/tags");
  ASSERT_EQ(tags.status, 200);
  std::set<std::string> names;
  const json tag_list = json::parse(tags.body);
  for (const json& m : tag_list["models"]) names.insert(m["name"].get<std::string>());
  EXPECT_TRUE(names.count("local") && names.count("up/tiny") && names.count("upo/tiny") && names.count("crash-o/m"))
      << tags.body;
}

TEST_F(Upstream, ChatIsTheUpstreamsOwnAnswer) {
  const auto direct = Call(upstream(), "POST", "/v1/chat/completions", OpenAiChat("tiny", false).dump());
  const auto proxied = Call(front(), "POST", "/v1/chat/completions", OpenAiChat("up/tiny", false).dump());
  ASSERT_EQ(direct.status, 200) << direct.body;
  ASSERT_EQ(proxied.status, 200) << proxied.body;
  const json d = json::parse(direct.body), p = json::parse(proxied.body);
  EXPECT_EQ(p["model"], "up/tiny");
  EXPECT_EQ(p["choices"][0]["message"], d["choices"][0]["message"]);
  EXPECT_EQ(p["usage"]["completion_tokens"], d["usage"]["completion_tokens"]);
  EXPECT_GT(d["usage"]["completion_tokens"].get<int>(), 0);
}

TEST_F(Upstream, StreamedChatIsPassedThrough) {
  const auto direct = Call(upstream(), "POST", "/v1/chat/completions", OpenAiChat("tiny", true).dump());
  const auto proxied = Call(front(), "POST", "/v1/chat/completions", OpenAiChat("up/tiny", true).dump());
  ASSERT_EQ(direct.status, 200);
  ASSERT_EQ(proxied.status, 200) << proxied.body;
  EXPECT_NE(proxied.Header("content-type").find("text/event-stream"), std::string::npos);
  const SseText d = ReadSse(direct.body), p = ReadSse(proxied.body);
  EXPECT_TRUE(p.done);
  EXPECT_EQ(p.content, d.content);
  EXPECT_EQ(p.reasoning, d.reasoning);
  EXPECT_FALSE((d.content + d.reasoning).empty());
}

TEST_F(Upstream, OllamaDialectBackend) {
  const json req{{"model", "tiny"}, {"messages", Messages()}, {"stream", false},
                 {"options", {{"temperature", 0}, {"num_predict", 12}}}};
  json via = req;
  via["model"] = "upo/tiny";
  const auto direct = Call(upstream(), "POST", "/api/chat", req.dump());
  const auto proxied = Call(front(), "POST", "/api/chat", via.dump());
  ASSERT_EQ(direct.status, 200) << direct.body;
  ASSERT_EQ(proxied.status, 200) << proxied.body;
  EXPECT_EQ(json::parse(proxied.body)["model"], "upo/tiny");
  EXPECT_EQ(json::parse(proxied.body)["message"], json::parse(direct.body)["message"]);

  // Streamed (Ollama's default): NDJSON lines passed through.
  via.erase("stream");
  json direct_stream = req;
  direct_stream.erase("stream");
  auto text = [](const std::string& body) {
    std::string s;
    size_t pos = 0;
    while (pos < body.size()) {
      size_t end = body.find('\n', pos);
      if (end == std::string::npos) end = body.size();
      const json j = json::parse(body.substr(pos, end - pos), nullptr, false);
      pos = end + 1;
      if (j.is_object() && j.contains("message")) s += j["message"].value("thinking", "") + j["message"].value("content", "");
    }
    return s;
  };
  const auto ds = Call(upstream(), "POST", "/api/chat", direct_stream.dump());
  const auto ps = Call(front(), "POST", "/api/chat", via.dump());
  ASSERT_EQ(ps.status, 200) << ps.body;
  EXPECT_NE(ps.Header("content-type").find("ndjson"), std::string::npos);
  EXPECT_EQ(text(ps.body), text(ds.body));
  EXPECT_FALSE(text(ds.body).empty());
}

TEST_F(Upstream, OpenAiRequestToAnOllamaBackendIsTranslated) {
  const auto direct = Call(upstream(), "POST", "/v1/chat/completions", OpenAiChat("tiny", false).dump());
  const auto proxied = Call(front(), "POST", "/v1/chat/completions", OpenAiChat("upo/tiny", false).dump());
  ASSERT_EQ(direct.status, 200) << direct.body;
  ASSERT_EQ(proxied.status, 200) << proxied.body;
  const json d = json::parse(direct.body), p = json::parse(proxied.body);
  EXPECT_EQ(p["object"], "chat.completion");
  EXPECT_EQ(p["model"], "upo/tiny");
  EXPECT_EQ(p["choices"][0]["message"].value("content", ""), d["choices"][0]["message"].value("content", ""));
  EXPECT_EQ(p["choices"][0]["message"].value("reasoning_content", ""),
            d["choices"][0]["message"].value("reasoning_content", ""));
  EXPECT_EQ(p["choices"][0]["finish_reason"], d["choices"][0]["finish_reason"]);
  EXPECT_EQ(p["usage"]["completion_tokens"], d["usage"]["completion_tokens"]);
}

TEST_F(Upstream, UnknownBackendModelIs404ListingWhatItHas) {
  const auto r = Call(front(), "POST", "/v1/chat/completions", OpenAiChat("up/nope", false).dump());
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.body.find("up/tiny"), std::string::npos) << r.body;
}

// Each failure: status, OpenAI error shape, the backend named, and the front still serving.
void ExpectOpenAiError(const testing::HttpResult& r, int status, const std::string& backend, const std::string& words) {
  EXPECT_EQ(r.status, status) << r.body;
  const json j = json::parse(r.body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("error") && j["error"].is_object()) << r.body;
  const std::string msg = j["error"].value("message", "");
  EXPECT_NE(msg.find("backend " + backend + " "), std::string::npos) << msg;
  EXPECT_NE(msg.find(words), std::string::npos) << msg;
  EXPECT_EQ(j["error"]["code"], status);
}

TEST_F(Upstream, InvalidJsonIs502) {
  ExpectOpenAiError(Call(front(), "POST", "/v1/chat/completions", OpenAiChat("bad/m", false).dump()), 502, "bad",
                    "invalid JSON");
  ExpectFrontHealthy();
}

TEST_F(Upstream, Http500Is502InTheClientsDialect) {
  ExpectOpenAiError(Call(front(), "POST", "/v1/chat/completions", OpenAiChat("crash/m", false).dump()), 502, "crash",
                    "HTTP 500: the fake engine crashed");
  const auto o = Call(front(), "POST", "/api/chat",
                      json{{"model", "crash-o/m"}, {"messages", Messages()}, {"stream", false}}.dump());
  EXPECT_EQ(o.status, 502);
  const json j = json::parse(o.body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j["error"].is_string()) << o.body;  // Ollama's {"error": "..."}
  EXPECT_NE(j["error"].get<std::string>().find("backend crash-o "), std::string::npos) << o.body;
  ExpectFrontHealthy();
}

// Completions and rerank fail as chat does, naming the backend: a backend without /v1/rerank
// (an Ollama) is a 501, one that cannot be reached a 502, an HTTP 500 a 502 in the client's
// dialect (translated or not).
TEST_F(Upstream, CompletionsAndRerankFailuresNameTheBackend) {
  const json rerank{{"model", "noroute/m"}, {"query", "q"}, {"documents", json::array({"a", "b"})}};
  ExpectOpenAiError(Call(front(), "POST", "/v1/rerank", rerank.dump()), 501, "noroute",
                    "has no rerank endpoint: POST /v1/rerank answered HTTP 404: 404 page not found");
  const json completion{{"model", "down/x"}, {"prompt", "Hello"}, {"max_tokens", 2}};
  ExpectOpenAiError(Call(front(), "POST", "/v1/completions", completion.dump()), 502, "down", "cannot connect");
  json translated = completion;
  translated["model"] = "crash-o/m";  // OpenAI client, Ollama backend: /api/generate answers 500
  ExpectOpenAiError(Call(front(), "POST", "/v1/completions", translated.dump()), 502, "crash-o", "HTTP 500");
  const auto o = Call(front(), "POST", "/api/generate", json{{"model", "crash/m"}, {"prompt", "Hello"}, {"stream", false}}.dump());
  EXPECT_EQ(o.status, 502) << o.body;
  const json j = json::parse(o.body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j["error"].is_string()) << o.body;  // Ollama's {"error": "..."}
  EXPECT_NE(j["error"].get<std::string>().find("backend crash "), std::string::npos) << o.body;
  EXPECT_NE(j["error"].get<std::string>().find("HTTP 500"), std::string::npos) << o.body;
  ExpectFrontHealthy();
}

TEST_F(Upstream, NoAnswerIs504) {
  ExpectOpenAiError(Call(front(), "POST", "/v1/chat/completions", OpenAiChat("hang/m", false).dump()), 504, "hang",
                    "did not answer within 300 ms");
  ExpectFrontHealthy();
}

TEST_F(Upstream, ConnectionRefusedIs502AndDiscoveryRetries) {
  ExpectOpenAiError(Call(front(), "POST", "/v1/chat/completions", OpenAiChat("down/x", false).dump()), 502, "down",
                    "cannot connect");
  // Discovery keeps trying with backoff, and says so.
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto count = [] {
    std::istringstream lines(Log());
    size_t n = 0;
    for (std::string line; std::getline(lines, line);) {
      n += line.find("backend down ") != std::string::npos && line.find("cannot list models") != std::string::npos;
    }
    return n;
  };
  while (count() < 3 && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_GE(count(), 3u) << Log();
  EXPECT_NE(Log().find("retrying in"), std::string::npos);
  ExpectFrontHealthy();
}

TEST_F(Upstream, StreamThatBreaksOffEndsWithAnError) {
  const auto r = Call(front(), "POST", "/v1/chat/completions", OpenAiChat("breaks/m", true).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const SseText t = ReadSse(r.body);
  EXPECT_EQ(t.content, "Hel");  // what arrived was passed on
  EXPECT_NE(t.error.find("backend breaks "), std::string::npos) << r.body;
  ExpectFrontHealthy();
}

TEST_F(Upstream, SlowDripStreamHitsTheTimeLimit) {
  const auto r = Call(front(), "POST", "/v1/chat/completions", OpenAiChat("drip/m", true).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const SseText t = ReadSse(r.body);
  EXPECT_FALSE(t.content.empty());  // the drip was passed on until the limit
  EXPECT_NE(t.error.find("backend drip "), std::string::npos) << t.error;
  EXPECT_NE(t.error.find("ran past its limit of 3000 ms"), std::string::npos) << t.error;
  ExpectFrontHealthy();
}

TEST_F(Upstream, SlowDripAnswerIs504) {
  ExpectOpenAiError(Call(front(), "POST", "/v1/chat/completions", OpenAiChat("slow/m", false).dump()), 504, "slow",
                    "ran past its limit of 3000 ms");
  ExpectFrontHealthy();
}

TEST_F(Upstream, HugeModelListsAreBounded) {
  const auto r = Call(front(), "GET", "/v1/models");
  ASSERT_EQ(r.status, 200);
  size_t many = 0, huge = 0;
  const json list = json::parse(r.body);
  for (const json& m : list["data"]) {
    const std::string id = m["id"].get<std::string>();
    many += id.starts_with("many/");
    huge += id.starts_with("huge/");
  }
  EXPECT_EQ(many, 100u);  // max_models of 3000 listed
  EXPECT_EQ(huge, 0u);    // a list over max_list_bytes is refused
  EXPECT_NE(Log().find("backend many (http://127.0.0.1:" + std::to_string(many_->port()) +
                       ") lists 3000 models; keeping the first 100"), std::string::npos) << Log();
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (Log().find("backend huge") == std::string::npos && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const std::string log = Log();
  const size_t at = log.find("backend huge");
  ASSERT_NE(at, std::string::npos) << log;
  EXPECT_NE(log.find("cannot list models: the answer is too large", at), std::string::npos) << log;
  ExpectFrontHealthy();
}

TEST_F(Upstream, ClientDisconnectCancelsTheUpstreamRequest) {
  const int before = drip_->disconnects();
  qwenmux::testing::RawSocket s;
  ASSERT_TRUE(s.Connect(front()));
  const std::string body = OpenAiChat("drip/m", true).dump();
  ASSERT_TRUE(s.Send("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body));
  s.SetReadTimeout(5000);
  std::string got;
  ASSERT_TRUE(s.ReadUntil(got, [](const std::string& g) { return g.find("data: ") != std::string::npos; })) << got;
  s.Close();
  // The front aborts its transfer, so the fake sees its connection go (well before the 3 s limit).
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(2500);
  while (drip_->disconnects() == before && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GT(drip_->disconnects(), before);
  ExpectFrontHealthy();
}

TEST(UpstreamStartup, BadBackendsStopTheStartWithAClearError) {
  for (const auto& [flags, words] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"up"}, "expected NAME=URL"},
           {{"up=127.0.0.1:8080"}, "expected http://"},
           {{"up=http://127.0.0.1:8080,grpc"}, "expected openai or ollama"},
           {{"up=http://127.0.0.1:1", "up=http://127.0.0.1:2"}, "\"up\" is defined twice"}}) {
    AppOptions o;
    o.backend_flags = flags;
    o.http.port = 0;
    auto app = App::Create(std::move(o), [](const std::string&) {});
    ASSERT_FALSE(app.ok()) << words;
    EXPECT_NE(app.status().message().find(words), std::string::npos) << app.status().ToString();
  }
}

}  // namespace
}  // namespace qwenmux::server
