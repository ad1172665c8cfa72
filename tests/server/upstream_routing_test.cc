// Other engines as routed backends (issue 18), routing: a backend with a tier is a router
// candidate beside the local model of that tier. With a fast backend (a fake that answers at
// once) and the slower local model "qwen3-fast", `auto` goes to the backend once real traffic
// measured it, fails over to the local model (marked degraded) when the backend is stopped, and
// then stays local. A backend killed mid-stream ends the client's stream with an error and the
// next request fails over.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "orchestrator/temp_dir.h"
#include "server/app.h"
#include "server/http_client.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::ModelPath;

// An OpenAI-dialect backend listing model "m". kFast: answers a chat at once (40 completion
// tokens; streamed: 40 events); kBreaks: one event of a stream, then the connection drops.
class FakeBackend {
 public:
  enum class Mode { kFast, kBreaks };
  explicit FakeBackend(Mode mode) : mode_(mode) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::listen(fd_, 16);
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_ = std::thread([this] { Loop(); });
  }
  ~FakeBackend() {
    stop_.store(true);
    accept_.join();
    ::close(fd_);  // nothing listens on the port any more
  }
  uint16_t port() const { return port_; }

 private:
  static void Send(int c, const std::string& s) { (void)!::send(c, s.data(), s.size(), MSG_NOSIGNAL); }
  void Loop() {
    while (!stop_.load()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c >= 0) Serve(c);  // one connection at a time is enough here
    }
  }
  void Serve(int c) {
    std::string in;
    char buf[8192];
    size_t header_end = std::string::npos, length = 0;
    while (true) {
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 2000) <= 0) return (void)::close(c);
      const ssize_t n = ::recv(c, buf, sizeof(buf), 0);
      if (n <= 0) return (void)::close(c);
      in.append(buf, static_cast<size_t>(n));
      if (header_end == std::string::npos && (header_end = in.find("\r\n\r\n")) != std::string::npos) {
        if (size_t at = in.find("Content-Length: "); at != std::string::npos) length = std::stoul(in.substr(at + 16));
      }
      if (header_end != std::string::npos && in.size() >= header_end + 4 + length) break;
    }
    auto whole = [](const std::string& body, const std::string& type) {
      return "HTTP/1.1 200 OK\r\nContent-Type: " + type + "\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\nConnection: close\r\n\r\n" + body;
    };
    const bool stream = in.find("\"stream\":true") != std::string::npos;
    if (in.starts_with("GET /v1/models")) {
      Send(c, whole(R"({"object":"list","data":[{"id":"m","object":"model","owned_by":"fake"}]})", "application/json"));
    } else if (mode_ == Mode::kFast && !stream) {
      Send(c, whole(R"({"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,)"
                    R"("message":{"role":"assistant","content":"fast answer"},"finish_reason":"stop"}],)"
                    R"("usage":{"prompt_tokens":5,"completion_tokens":40,"total_tokens":45}})", "application/json"));
    } else {
      std::string events;
      const int n = mode_ == Mode::kFast ? 40 : 1;
      for (int i = 0; i < n; ++i) events += "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t\"}}]}\n\n";
      if (mode_ == Mode::kFast) {
        events += "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        Send(c, whole(events, "text/event-stream"));
      } else {  // chunked, and the last chunk never comes
        char size[16];
        std::snprintf(size, sizeof(size), "%zx", events.size());
        Send(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
                    std::string(size) + "\r\n" + events + "\r\n");
      }
    }
    ::close(c);
  }

  Mode mode_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread accept_;
};

json Chat(const std::string& model, bool stream = false) {
  return json{{"model", model}, {"messages", json::array({json{{"role", "user"}, {"content", "Hi"}}})},
              {"max_tokens", 4}, {"temperature", 0}, {"stream", stream}};
}

class UpstreamRouting : public ::testing::Test {
 protected:
  void SetUp() override {
    fast_ = std::make_unique<FakeBackend>(FakeBackend::Mode::kFast);
    breaks_ = std::make_unique<FakeBackend>(FakeBackend::Mode::kBreaks);
    std::ofstream(dir_ / "qwenmux.yaml")
        << "backends:\n"
        << "  - name: fast\n    url: http://127.0.0.1:" << fast_->port() << "\n    tier: qwen3-fast\n"
        << "  - name: brk\n    url: http://127.0.0.1:" << breaks_->port() << "\n    tier: qwen3-fast\n";
    AppOptions o;
    o.config_path = dir_ / "qwenmux.yaml";
    o.model_flags = {ModelPath("tiny-dense.q8_0.gguf") + "=qwen3-fast"};  // the local model of the tier
    o.upstream.min_backoff = std::chrono::milliseconds(60000);  // no health check brings a backend back here
    o.upstream.connect_timeout = std::chrono::milliseconds(1000);
    o.http.port = 0;
    o.models.n_ctx = 256;
    o.models.threads = 1;
    auto app = App::Create(std::move(o), [](const std::string&) {});
    ASSERT_TRUE(app.ok()) << app.status().ToString();
    app_ = std::move(*app);
    ASSERT_TRUE(app_->Start().ok());
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < end) {
      const std::string body = Call(app_->port(), "GET", "/v1/models").body;
      if (body.find("\"fast/m\"") != std::string::npos && body.find("\"brk/m\"") != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  json Ok(const json& req) {
    const auto r = Call(app_->port(), "POST", "/v1/chat/completions", req.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body, nullptr, false);
  }

  qwenmux::testing::TempDir dir_;
  std::unique_ptr<FakeBackend> fast_, breaks_;
  std::unique_ptr<App> app_;
};

TEST_F(UpstreamRouting, AutoPrefersTheFastBackendAndMovesBackWhenItStops) {
  json a = Ok(Chat("auto"));  // the backend's speed is not known yet: local
  EXPECT_EQ(a["model"], "qwen3-fast");
  EXPECT_EQ(Ok(Chat("fast/m"))["choices"][0]["message"]["content"], "fast answer");  // traffic measures it
  a = Ok(Chat("auto"));
  EXPECT_EQ(a["model"], "fast/m") << a.dump();
  EXPECT_EQ(a["choices"][0]["message"]["content"], "fast answer");
  // The live figures: /metrics and /api/ps (two requests went to the backend).
  const std::string metrics = Call(app_->port(), "GET", "/metrics").body;
  EXPECT_NE(metrics.find("qwenmux_backend_requests_total{backend=\"fast\"} 2\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("qwenmux_backend_errors_total{backend=\"fast\"} 0\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("qwenmux_backend_up{backend=\"fast\"} 1\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("qwenmux_backend_tokens_per_second{backend=\"fast\"} "), std::string::npos) << metrics;
  const json ps = json::parse(Call(app_->port(), "GET", "/api/ps").body);
  ASSERT_TRUE(ps.contains("backends")) << ps.dump();
  bool listed = false;
  for (const json& b : ps["backends"]) {
    if (b["name"] != "fast") continue;
    listed = true;
    EXPECT_EQ(b["models"], json::array({"fast/m"}));
    EXPECT_EQ(b["requests"], 2);
    EXPECT_EQ(b["state"], "ready");
    EXPECT_EQ(b["tier"], "qwen3-fast");
    EXPECT_GT(b["tokens_per_second"].get<double>(), 0);
  }
  EXPECT_TRUE(listed) << ps.dump();
  a = Ok(Chat("qwen3-fast"));  // the local model asked by its own name stays local
  EXPECT_EQ(a["model"], "qwen3-fast") << a.dump();

  fast_.reset();  // the backend stops: the next request fails over, marked degraded
  a = Ok(Chat("auto"));
  EXPECT_EQ(a["model"], "qwen3-fast") << a.dump();
  EXPECT_EQ(a["qwenmux"]["degraded"], true) << a.dump();
  EXPECT_EQ(a["qwenmux"]["route"], "failover");
  EXPECT_NE(a["qwenmux"]["explanation"].get<std::string>().find("backend fast "), std::string::npos) << a.dump();
  a = Ok(Chat("auto"));  // then the router keeps to the local model
  EXPECT_EQ(a["model"], "qwen3-fast");
  EXPECT_EQ(a["qwenmux"]["degraded"], false) << a.dump();
  a = Ok(Chat("fast/m"));  // asked by name: the backend is down, so the local model of its tier
  EXPECT_EQ(a["model"], "qwen3-fast");
  EXPECT_EQ(a["qwenmux"]["route"], "failover");
  EXPECT_NE(a["qwenmux"]["explanation"].get<std::string>().find("backend fast is unhealthy"), std::string::npos) << a.dump();
  const std::string after = Call(app_->port(), "GET", "/metrics").body;
  EXPECT_NE(after.find("qwenmux_backend_up{backend=\"fast\"} 0\n"), std::string::npos) << after;
  EXPECT_NE(after.find("qwenmux_backend_errors_total{backend=\"fast\"} 1\n"), std::string::npos) << after;
  EXPECT_EQ(Call(app_->port(), "GET", "/health").status, 200);
}

TEST_F(UpstreamRouting, KilledMidStreamEndsWithAnErrorAndTheNextRequestFailsOver) {
  const auto r = Call(app_->port(), "POST", "/v1/chat/completions", Chat("brk/m", true).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"content\":\"t\""), std::string::npos) << r.body;   // what came was passed on
  EXPECT_NE(r.body.find("backend brk (http://127.0.0.1:"), std::string::npos) << r.body;  // then the error event
  EXPECT_NE(r.body.find("the stream broke off"), std::string::npos) << r.body;
  const json a = Ok(Chat("brk/m"));
  EXPECT_EQ(a["model"], "qwen3-fast") << a.dump();
  EXPECT_EQ(a["qwenmux"]["degraded"], true);
  EXPECT_EQ(a["qwenmux"]["route"], "failover");
  const json s = Ok(Chat("brk/m", false));  // still down (no health check passed): local again
  EXPECT_EQ(s["model"], "qwen3-fast");
}

json OllamaChat(const std::string& model, bool stream = false) {
  return json{{"model", model}, {"messages", json::array({json{{"role", "user"}, {"content", "Hi"}}})}, {"stream", stream},
              {"options", {{"num_predict", 4}, {"temperature", 0}}}};
}

// The routing log's newest entry with this reason (null if none).
json RoutingEntryOf(uint16_t port, const std::string& reason) {
  const json log = json::parse(Call(port, "GET", "/dashboard/api/routing?limit=100").body, nullptr, false);
  if (!log.is_object() || !log.contains("entries")) return json();
  for (const json& e : log["entries"]) {
    if (e.value("reason", "") == reason) return e;
  }
  return json();
}

// The Ollama dialect (/api/chat, /api/generate) routes and fails over as the OpenAI one does:
// `auto` to the measured faster backend (written to the routing log), a backend that is down
// fails over to the local model of its tier, marked degraded (answer, stream's last line and
// routing log), and the backend's metrics count it.
TEST_F(UpstreamRouting, OllamaDialectRoutesAndFailsOver) {
  const uint16_t port = app_->port();
  auto ok = [&](const std::string& path, const json& req) {
    const auto r = Call(port, "POST", path, req.dump());
    EXPECT_EQ(r.status, 200) << path << ": " << r.body;
    return json::parse(r.body, nullptr, false);
  };
  json a = ok("/api/chat", OllamaChat("auto"));  // the backend's speed is not known yet: local
  EXPECT_EQ(a["model"], "qwen3-fast") << a.dump();
  EXPECT_EQ(ok("/api/chat", OllamaChat("fast/m"))["message"]["content"], "fast answer");  // traffic measures it
  a = ok("/api/chat", OllamaChat("auto"));
  EXPECT_EQ(a["model"], "fast/m") << a.dump();
  EXPECT_EQ(a["message"]["content"], "fast answer");
  const json picked = RoutingEntryOf(port, "backend");
  ASSERT_TRUE(picked.is_object()) << Call(port, "GET", "/dashboard/api/routing").body;
  EXPECT_EQ(picked["requested"], "auto");
  EXPECT_EQ(picked["chosen"], "fast/m");
  EXPECT_EQ(picked["kind"], "chat");
  const json gen = ok("/api/generate", json{{"model", "auto"}, {"prompt", "Hi"}, {"stream", false},
                                           {"options", {{"num_predict", 4}, {"temperature", 0}}}});
  EXPECT_EQ(gen["model"], "fast/m") << gen.dump();  // /api/generate goes to the backend's chat, translated
  EXPECT_EQ(gen["response"], "fast answer") << gen.dump();
  const auto streamed = Call(port, "POST", "/api/chat", OllamaChat("auto", true).dump());  // streamed, translated
  ASSERT_EQ(streamed.status, 200) << streamed.body;
  EXPECT_NE(streamed.body.find("\"model\":\"fast/m\""), std::string::npos) << streamed.body;
  EXPECT_NE(streamed.body.find("\"done\":true"), std::string::npos) << streamed.body;
  std::string metrics = Call(port, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("qwenmux_backend_requests_total{backend=\"fast\"} 4\n"), std::string::npos) << metrics;
  // A backend model the backend does not have: 404 in Ollama's shape, naming the backend.
  const auto missing = Call(port, "POST", "/api/chat", OllamaChat("fast/nope").dump());
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(json::parse(missing.body)["error"].get<std::string>().find("not found on backend fast"), std::string::npos)
      << missing.body;

  fast_.reset();  // the backend stops: the next `auto` fails over, marked degraded
  a = ok("/api/chat", OllamaChat("auto"));
  EXPECT_EQ(a["model"], "qwen3-fast") << a.dump();
  EXPECT_EQ(a["qwenmux"]["degraded"], true) << a.dump();
  EXPECT_EQ(a["qwenmux"]["route"], "failover");
  EXPECT_NE(a["qwenmux"]["explanation"].get<std::string>().find("backend fast "), std::string::npos) << a.dump();
  const json failed = RoutingEntryOf(port, "failover");
  ASSERT_TRUE(failed.is_object()) << Call(port, "GET", "/dashboard/api/routing").body;
  EXPECT_EQ(failed["degraded"], true);
  EXPECT_EQ(failed["served"], "qwen3-fast");
  EXPECT_EQ(failed["requested"], "auto");
  // Asked by name through /api/generate: the backend is down, so the local model of its tier.
  a = ok("/api/generate", json{{"model", "fast/m"}, {"prompt", "Hi"}, {"stream", false},
                               {"options", {{"num_predict", 4}, {"temperature", 0}}}});
  EXPECT_EQ(a["model"], "qwen3-fast") << a.dump();
  EXPECT_EQ(a["qwenmux"]["route"], "failover");
  EXPECT_EQ(a["qwenmux"]["degraded"], true);
  EXPECT_NE(a["qwenmux"]["explanation"].get<std::string>().find("backend fast is unhealthy"), std::string::npos) << a.dump();
  EXPECT_TRUE(a["response"].is_string());
  // Streamed by name: the last line says degraded.
  const auto s = Call(port, "POST", "/api/chat", OllamaChat("fast/m", true).dump());
  ASSERT_EQ(s.status, 200) << s.body;
  const std::string body = s.body.substr(0, s.body.find_last_not_of('\n') + 1);
  const json last = json::parse(body.substr(body.rfind('\n') + 1), nullptr, false);
  EXPECT_EQ(last.value("done", false), true) << s.body;
  EXPECT_EQ(last["model"], "qwen3-fast") << s.body;
  EXPECT_EQ(last["qwenmux"]["degraded"], true) << s.body;
  metrics = Call(port, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("qwenmux_backend_up{backend=\"fast\"} 0\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("qwenmux_backend_errors_total{backend=\"fast\"} 1\n"), std::string::npos) << metrics;
  EXPECT_EQ(Call(port, "GET", "/health").status, 200);
}

TEST(UpstreamRoutingConfig, BadTierRoleOrLimitStopsTheStart) {
  for (const auto& [line, words] : std::vector<std::pair<std::string, std::string>>{
           {"tier: qwen3-huge", "tier \"qwen3-huge\": expected qwen3-fast"},
           {"role: reranker", "expected chat or embedding"},
           {"max_concurrent: -1", "expected a whole number >= 0"},
           {"max_concurrent: many", "expected a whole number >= 0"}}) {
    qwenmux::testing::TempDir dir;
    std::ofstream(dir / "qwenmux.yaml") << "backends:\n  - name: b\n    url: http://127.0.0.1:1\n    " << line << "\n";
    AppOptions o;
    o.config_path = dir / "qwenmux.yaml";
    o.http.port = 0;
    auto app = App::Create(std::move(o), [](const std::string&) {});
    ASSERT_FALSE(app.ok()) << line;
    EXPECT_NE(app.status().message().find(words), std::string::npos) << line << ": " << app.status().ToString();
  }
}

}  // namespace
}  // namespace qwenmux::server
