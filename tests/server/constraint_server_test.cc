// Issue 20 items 2 and 3 through the server: compiled JSON-schema constraints stay within their
// byte cap under many distinct large schemas (the cache in /metrics, the memory figure of
// /api/ps including it, the process RSS bounded), an oversized schema is a 400 naming the limit,
// and a schema being compiled does not hold up a chat to the same model.
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "server/app.h"
#include "server/generation.h"
#include "server/http_client.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::ModelPath;

std::unique_ptr<App> StartApp(uint64_t constraint_cache_bytes) {
  AppOptions o;
  o.model_flags = {ModelPath("tiny-dense.q8_0.gguf") + "=tiny"};
  o.http.port = 0;
  o.http.security.check_host = true;
  o.models.n_ctx = 512;
  o.models.parallel = 2;
  o.models.threads = 1;
  o.shutdown_grace = std::chrono::milliseconds(500);
  o.constraint_cache_bytes = constraint_cache_bytes;
  auto app = App::Create(std::move(o), [](const std::string&) {});
  EXPECT_TRUE(app.ok()) << app.status().ToString();
  if (!app.ok()) return nullptr;
  EXPECT_TRUE((*app)->Start().ok());
  return std::move(*app);
}

json RandomEnum(size_t n, size_t len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::set<std::string> seen;
  json e = json::array();
  while (e.size() < n) {
    std::string s(len, 'a');
    for (char& c : s) c = static_cast<char>('a' + rng() % 26);
    if (seen.insert(s).second) e.push_back(s);
  }
  return e;
}

std::string SchemaChat(const json& values, int max_tokens) {
  return json{{"model", "tiny"},
              {"messages", json::array({json{{"role", "user"}, {"content", "pick one"}}})},
              {"max_tokens", max_tokens},
              {"temperature", 0},
              {"chat_template_kwargs", {{"enable_thinking", false}}},
              {"response_format",
               {{"type", "json_schema"},
                {"json_schema", {{"name", "pick"}, {"schema", {{"type", "string"}, {"enum", values}}}}}}}}
      .dump();
}

std::string PlainChat(int max_tokens) {
  return json{{"model", "tiny"},
              {"messages", json::array({json{{"role", "user"}, {"content", "hi"}}})},
              {"max_tokens", max_tokens},
              {"temperature", 0}}
      .dump();
}

uint64_t RssBytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

double Gauge(const std::string& metrics, const std::string& name) {
  const size_t at = metrics.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(metrics.substr(at + name.size() + 2));
}

TEST(ServerConstraints, CacheBoundedByBytesAndCountedInTheMemoryFigure) {
  constexpr uint64_t kCap = uint64_t{16} << 20;
  auto app = StartApp(kCap);
  ASSERT_NE(app, nullptr);
  const uint16_t port = app->port();
  ASSERT_EQ(Call(port, "POST", "/v1/chat/completions", PlainChat(1)).status, 200);  // load the model first
  const uint64_t rss0 = RssBytes();
  for (int i = 0; i < 30; ++i) {
    auto r = Call(port, "POST", "/v1/chat/completions", SchemaChat(RandomEnum(3000, 12, 1000 + i), 6));
    ASSERT_EQ(r.status, 200) << r.body;
    const std::string m = Call(port, "GET", "/metrics").body;
    const double bytes = Gauge(m, "qwenmux_constraint_cache_bytes");
    ASSERT_GE(bytes, 0) << m;
    // Within the cap plus one grammar being compiled (generous: 4 MiB).
    EXPECT_LE(bytes, static_cast<double>(kCap + (uint64_t{4} << 20))) << "after schema " << i;
  }
  const uint64_t grown = RssBytes() - std::min(RssBytes(), rss0);
  // 30 unbounded caches of these schemas took over a GiB; bounded, the growth stays near the cap.
  EXPECT_LT(grown, uint64_t{400} << 20) << "RSS grew by " << (grown >> 20) << " MiB";
  std::printf("{\"schemas\": 30, \"enum_values\": 3000, \"cap_mib\": %llu, \"rss_growth_mib\": %llu}\n",
              static_cast<unsigned long long>(kCap >> 20), static_cast<unsigned long long>(grown >> 20));

  // The memory figure of ps (and /metrics) includes the compiled constraints.
  const std::string m = Call(port, "GET", "/metrics").body;
  const double constraint_bytes = Gauge(m, "qwenmux_constraint_cache_bytes");
  EXPECT_GT(constraint_bytes, 0);
  EXPECT_EQ(Gauge(m, "qwenmux_constraint_cache_max_bytes"), static_cast<double>(kCap));
  const json ps = json::parse(Call(port, "GET", "/api/ps").body);
  uint64_t models = 0;
  for (const json& e : ps["models"]) models += e["size"].get<uint64_t>();
  ASSERT_GT(models, 0u);
  EXPECT_EQ(ps["memory"]["in_use_bytes"].get<uint64_t>(), models + static_cast<uint64_t>(constraint_bytes)) << ps.dump();
  EXPECT_EQ(Gauge(m, "qwenmux_memory_in_use_bytes"), static_cast<double>(models) + constraint_bytes) << m;
  app->Shutdown();
}

TEST(ServerConstraints, OversizedSchemaIsA400NamingTheLimit) {
  auto app = StartApp(uint64_t{64} << 20);
  ASSERT_NE(app, nullptr);
  auto r = Call(app->port(), "POST", "/v1/chat/completions", SchemaChat(RandomEnum(100000, 8, 5), 2));
  EXPECT_EQ(r.status, 400) << r.body.substr(0, 300);
  EXPECT_NE(r.body.find("limit"), std::string::npos) << r.body.substr(0, 300);
  json format = {{"type", "string"}, {"enum", RandomEnum(5000, 6, 6)}};
  auto o = Call(app->port(), "POST", "/api/chat",
                json{{"model", "tiny"}, {"messages", json::array({json{{"role", "user"}, {"content", "x"}}})},
                     {"format", format}, {"stream", false}}.dump());
  EXPECT_EQ(o.status, 400) << o.body.substr(0, 300);
  EXPECT_NE(o.body.find("'enum' has 5000 values"), std::string::npos) << o.body.substr(0, 300);
  EXPECT_EQ(Call(app->port(), "POST", "/v1/chat/completions", PlainChat(2)).status, 200);
  app->Shutdown();
}

// While one request's schema compiles (held inside the compile by the hook), a 2-token chat to
// the same model completes: compilation happens on the request's own thread, not on the model's
// worker and not holding anything the chat needs. Events are recorded in order, no timing.
TEST(ServerConstraints, ChatIsNotBlockedBehindASchemaCompile) {
  auto app = StartApp(uint64_t{64} << 20);
  ASSERT_NE(app, nullptr);
  const uint16_t port = app->port();
  ASSERT_EQ(Call(port, "POST", "/v1/chat/completions", PlainChat(1)).status, 200);  // loaded
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> events;
  bool release = false;
  auto record = [&](const std::string& e) {
    std::lock_guard<std::mutex> lk(mu);
    events.push_back(e);
    cv.notify_all();
  };
  SetConstraintCompileHookForTesting([&] {
    record("compile started");
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return release; });
  });
  auto release_hook = [&] {
    {
      std::lock_guard<std::mutex> lk(mu);
      release = true;
    }
    cv.notify_all();
  };
  auto schema = std::async(std::launch::async, [&] {
    auto r = Call(port, "POST", "/v1/chat/completions", SchemaChat(RandomEnum(4000, 10, 77), 4));
    record("schema request done");
    return r.status;
  });
  // Destroyed before the future (whose destructor waits): an ASSERT below must not leave the
  // compile waiting forever.
  struct Guard {
    std::function<void()> f;
    ~Guard() { f(); }
  } guard{[&] {
    release_hook();
    SetConstraintCompileHookForTesting(nullptr);
  }};
  {
    std::unique_lock<std::mutex> lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, std::chrono::seconds(60), [&] { return !events.empty(); }));
  }
  const int chat_status = Call(port, "POST", "/v1/chat/completions", PlainChat(2)).status;
  record("chat done");
  release_hook();
  EXPECT_EQ(chat_status, 200);
  EXPECT_EQ(schema.get(), 200);
  SetConstraintCompileHookForTesting(nullptr);
  EXPECT_EQ(events, (std::vector<std::string>{"compile started", "chat done", "schema request done"}));
  app->Shutdown();
}

}  // namespace
}  // namespace qwenmux::server
