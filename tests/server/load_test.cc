// Bounded load: many concurrent streaming clients on loopback against the tiny model all finish
// with complete, unmixed responses (each stream equals the same request answered alone), and the
// server's memory returns to its idle level afterwards.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "server/app.h"
#include "server/http_client.h"

namespace qwenmux::testing {
namespace {

using nlohmann::json;

std::string Request(int i, bool stream) {
  static const char* kPrompts[] = {"The capital of France is", "def fib(n):", "Once upon a time", "1, 2, 3,"};
  return json{{"model", "tiny"}, {"prompt", kPrompts[i % 4]}, {"max_tokens", 12}, {"temperature", 0}, {"stream", stream}}
      .dump();
}

// Concatenated text of an SSE completion stream; false if it is malformed, mixes ids, or lacks
// the final chunk and [DONE].
bool ParseStream(const std::string& body, std::string* text) {
  std::string id;
  bool finished = false, done = false;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) return false;
    const std::string data = body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    const json c = json::parse(data, nullptr, false);
    if (c.is_discarded()) return false;
    if (id.empty()) id = c["id"];
    if (c["id"] != id) return false;
    for (const auto& ch : c["choices"]) {
      *text += ch["text"].get<std::string>();
      if (!ch["finish_reason"].is_null()) finished = true;
    }
  }
  return finished && done;
}

void RunClients(uint16_t port, int n, const std::vector<std::string>& expected, std::atomic<int>* ok,
                std::vector<std::string>* failures) {
  std::mutex mu;
  std::vector<std::thread> clients;
  for (int i = 0; i < n; ++i) {
    clients.emplace_back([&, i] {
      const HttpResult r = Call(port, "POST", "/v1/completions", Request(i, true));
      std::string text;
      if (r.status == 200 && ParseStream(r.body, &text) && text == expected[i % 4]) {
        ++*ok;
      } else {
        std::lock_guard<std::mutex> lk(mu);
        failures->push_back(std::to_string(r.status) + ": " + r.body.substr(0, 300));
      }
    });
  }
  for (auto& t : clients) t.join();
}

std::vector<std::string> Expected(uint16_t port) {
  std::vector<std::string> out;
  for (int i = 0; i < 4; ++i) {
    const HttpResult r = Call(port, "POST", "/v1/completions", Request(i, false));
    const json j = json::parse(r.body, nullptr, false);
    out.push_back(r.status == 200 ? j["choices"][0]["text"].get<std::string>() : "<error>");
  }
  return out;
}

// Sum of a Prometheus metric's samples (all label sets) in /metrics; -1 if it is absent.
double MetricSum(uint16_t port, const std::string& name) {
  const HttpResult r = Call(port, "GET", "/metrics");
  double sum = -1;
  size_t a = 0, e;
  while ((e = r.body.find('\n', a)) != std::string::npos) {
    const std::string line = r.body.substr(a, e - a);
    a = e + 1;
    if (!line.starts_with(name) || (line.size() > name.size() && line[name.size()] != '{' && line[name.size()] != ' ')) continue;
    sum = std::max(sum, 0.0) + std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

// Waits (polling, up to 60 s) until the server has completed `completed` requests and none is
// queued: the event the memory measurement needs, instead of a fixed pause.
void WaitServerIdle(uint16_t port, double completed) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < end) {
    if (MetricSum(port, "qwenmux_requests_completed_total") >= completed && MetricSum(port, "qwenmux_queue_depth") <= 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "the server did not finish " << completed << " requests";
}

TEST(ServerLoad, TwoHundredConcurrentStreams) {
  const std::string log = std::string(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp") + "/load-serve.log";
  ServerProcess server({"--model", ModelPath("tiny-dense.q8_0.gguf") + "=tiny", "--ctx", "256", "-t", "1", "--parallel",
                        "8", "--max-queue", "256"},
                       log);
  ASSERT_TRUE(server.WaitReady()) << log;
  const std::vector<std::string> expected = Expected(server.port());
  // Warm: the model is loaded and the allocator has seen a few concurrent streams.
  std::atomic<int> ok{0};
  std::vector<std::string> failures;
  RunClients(server.port(), 16, expected, &ok, &failures);
  ASSERT_EQ(ok.load(), 16) << (failures.empty() ? "" : failures[0]);
  WaitServerIdle(server.port(), 4 + 16);  // Expected()'s 4, then the 16
  const uint64_t idle = server.RssBytes();

  ok = 0;
  RunClients(server.port(), 200, expected, &ok, &failures);
  EXPECT_EQ(ok.load(), 200) << failures.size() << " failed; first: " << (failures.empty() ? "" : failures[0]);

  WaitServerIdle(server.port(), 4 + 16 + 200);
  const uint64_t after = server.RssBytes();
  std::printf("server RSS: idle %.1f MiB, after 200 streams %.1f MiB\n", idle / 1048576.0, after / 1048576.0);
  EXPECT_LE(after, idle + std::max<uint64_t>(16u << 20, idle / 10)) << "memory did not return to its idle level";
  EXPECT_EQ(server.Stop(), 0);
}

// In-process (so TSan sees both sides): concurrent streams of both dialects and plain requests.
TEST(ServerConcurrent, StreamsOfBothDialects) {
  server::AppOptions o;
  o.model_flags = {ModelPath("tiny-dense.q8_0.gguf") + "=tiny"};
  o.http.port = 0;
  o.models.n_ctx = 256;
  o.models.parallel = 4;
  o.models.threads = 1;
  auto app = server::App::Create(o, [](const std::string&) {});
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  ASSERT_TRUE((*app)->Start().ok());
  const uint16_t port = (*app)->port();
  const std::vector<std::string> expected = Expected(port);
  std::atomic<int> ok{0};
  std::vector<std::string> failures;
  std::thread ollama([&] {
    for (int i = 0; i < 4; ++i) {
      const HttpResult r = Call(port, "POST", "/api/generate",
                                json{{"model", "tiny"}, {"prompt", "Hi"}, {"options", {{"num_predict", 4}}}}.dump());
      if (r.status == 200 && r.body.find("\"done\":true") != std::string::npos) ++ok;
    }
  });
  RunClients(port, 12, expected, &ok, &failures);
  ollama.join();
  EXPECT_EQ(ok.load(), 16) << (failures.empty() ? "" : failures[0]);
  (*app)->Shutdown();
}

}  // namespace
}  // namespace qwenmux::testing
