// The dashboard's server side (issue 19): the histogram quantile and sample arithmetic, the ring
// buffer's bound, and over HTTP against the in-process server on the tiny model: a request shows
// in the KPI samples and the routing log with the figures its own response reports, the
// overview follows loads and unloads, the page and its data keep the API's rules (API key, host
// check), and bad query parameters are 400s naming the parameter.
#include <chrono>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "orchestrator/metrics/metrics.h"
#include "server/app.h"
#include "server/dashboard.h"
#include "server/http_client.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::ModelPath;

TEST(DashboardQuantile, InterpolatesInsideTheBucketLikePrometheus) {
  // 10 observations in (1, 2]: the median is halfway through that bucket.
  const std::vector<double> bounds{1, 2, 4};
  EXPECT_DOUBLE_EQ(*HistogramQuantile(0.5, bounds, {0, 10, 10, 10}), 1.5);
  // 4 in (0, 1], 4 in (2, 4]: p25 is in the first bucket (0.5 of it), p75 in the third.
  EXPECT_DOUBLE_EQ(*HistogramQuantile(0.25, bounds, {4, 4, 8, 8}), 0.5);
  EXPECT_DOUBLE_EQ(*HistogramQuantile(0.75, bounds, {4, 4, 8, 8}), 3.0);
  // Beyond the last finite bound: that bound.
  EXPECT_DOUBLE_EQ(*HistogramQuantile(0.95, bounds, {0, 0, 0, 5}), 4.0);
  // No observation, or counts that do not match the bounds: none.
  EXPECT_FALSE(HistogramQuantile(0.5, bounds, {0, 0, 0, 0}).has_value());
  EXPECT_FALSE(HistogramQuantile(0.5, bounds, {1, 2}).has_value());
}

TEST(DashboardSample, DifferencesOfTheRegistryTotals) {
  Dashboard::Totals before, after;
  before.generated["a"] = 100;
  before.gen_seconds["a"] = 1;
  after.generated["a"] = 150;
  after.gen_seconds["a"] = 1.5;
  after.generated["b"] = 7;  // new model: counts from zero
  after.gen_seconds["b"] = 0.7;
  before.completed["a"] = 3;
  after.completed["a"] = 5;
  after.failed["a"] = 2;
  before.ttft["a"] = {{1, 2, 4}, {5, 5, 5, 5}, 5, 2};
  after.ttft["a"] = {{1, 2, 4}, {5, 15, 15, 15}, 15, 17};  // 10 new ones in (1, 2]
  after.load["a"] = {{1, 2, 4}, {0, 1, 1, 1}, 1, 1.25};
  after.sw["b"] = {{1, 2, 4}, {0, 0, 1, 1}, 1, 3};
  const KpiSample s = Dashboard::Difference(before, after);
  ASSERT_EQ(s.models.count("a"), 1u);
  ASSERT_EQ(s.models.count("b"), 1u);
  EXPECT_DOUBLE_EQ(s.models.at("a").generated_tokens, 50);
  EXPECT_DOUBLE_EQ(s.models.at("a").decode_tokens_per_s, 100);
  EXPECT_DOUBLE_EQ(s.models.at("b").generated_tokens, 7);
  EXPECT_DOUBLE_EQ(s.models.at("a").completed, 2);
  EXPECT_DOUBLE_EQ(s.models.at("a").failed, 2);
  EXPECT_DOUBLE_EQ(s.completed, 2);
  EXPECT_DOUBLE_EQ(s.failed, 2);
  EXPECT_DOUBLE_EQ(*s.models.at("a").ttft_p50, 1.5);  // only the period's observations count
  EXPECT_FALSE(s.models.at("b").ttft_p50.has_value());
  EXPECT_DOUBLE_EQ(s.loads, 1);
  EXPECT_DOUBLE_EQ(s.load_seconds, 1.25);
  EXPECT_DOUBLE_EQ(s.switches, 1);
  EXPECT_DOUBLE_EQ(s.switch_seconds, 3);
}

json ChatBody(const std::string& model, int max_tokens) {
  return json{{"model", model},
              {"messages", json::array({json{{"role", "user"}, {"content", "Say hi"}}})},
              {"max_tokens", max_tokens},
              {"temperature", 0},
              {"chat_template_kwargs", {{"enable_thinking", false}}}};
}

class DashboardApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    metrics_ = new orchestrator::Metrics();
    AppOptions o;
    o.model_flags = {ModelPath("tiny-dense.q8_0.gguf") + "=tiny"};
    o.http.port = 0;
    o.models.n_ctx = 256;
    o.models.threads = 1;
    o.metrics = metrics_;
    o.log.quiet = true;
    // The test takes the samples itself (SampleNow); the sampler thread waits an hour.
    o.dashboard.sample_period = std::chrono::hours(1);
    o.dashboard.window = std::chrono::hours(3);
    o.dashboard.routing_entries = 3;
    auto app = App::Create(std::move(o), [](const std::string&) {});
    ASSERT_TRUE(app.ok()) << app.status().ToString();
    app_ = std::move(*app).release();
    ASSERT_TRUE(app_->Start().ok());
  }
  static void TearDownTestSuite() {
    delete app_;
    app_ = nullptr;
    delete metrics_;
    metrics_ = nullptr;
  }
  static json Get(const std::string& target) {
    auto r = Call(app_->port(), "GET", target);
    EXPECT_EQ(r.status, 200) << target << ": " << r.body;
    return r.status == 200 ? json::parse(r.body) : json();
  }
  static App* app_;
  static orchestrator::Metrics* metrics_;
};
App* DashboardApi::app_ = nullptr;
orchestrator::Metrics* DashboardApi::metrics_ = nullptr;

TEST_F(DashboardApi, ARequestShowsInTheSamplesTheRoutingLogAndTheOverview) {
  app_->dashboard().SampleNow();  // a sample boundary before the request
  const json before = Get("/dashboard/api/kpis");
  const size_t n_before = before["samples"].size();

  auto r = Call(app_->port(), "POST", "/v1/chat/completions", ChatBody("tiny", 5).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json answer = json::parse(r.body);
  const int completion = answer["usage"]["completion_tokens"];
  const int prompt = answer["usage"]["prompt_tokens"];
  ASSERT_GT(completion, 0);

  app_->dashboard().SampleNow();
  const json kpis = Get("/dashboard/api/kpis");
  ASSERT_EQ(kpis["samples"].size(), n_before + 1) << kpis.dump();
  EXPECT_EQ(kpis["memory_line"], 0.8);
  const json& s = kpis["samples"].back();
  const json& m = s["models"]["tiny"];
  EXPECT_EQ(m["generated_tokens"].get<double>(), completion) << s.dump();
  EXPECT_EQ(m["completed"].get<double>(), 1);
  EXPECT_GT(m["tokens_per_s"].get<double>(), 0);
  EXPECT_FALSE(m["ttft_p50_s"].is_null());
  EXPECT_LE(m["ttft_p50_s"].get<double>(), m["ttft_p95_s"].get<double>());
  EXPECT_EQ(s["requests"]["error_rate"], 0.0);
  EXPECT_EQ(s["loads"]["count"], 1);  // the first request loaded the model
  EXPECT_GT(s["memory"]["in_use_bytes"].get<uint64_t>(), 0u);
  EXPECT_GT(s["memory"]["budget_bytes"].get<uint64_t>(), 0u);

  // since= filters: nothing newer than the last sample.
  const json none = Get("/dashboard/api/kpis?since=" + std::to_string(s["t"].get<int64_t>()));
  EXPECT_TRUE(none["samples"].empty());

  const json log = Get("/dashboard/api/routing?limit=1");
  ASSERT_EQ(log["entries"].size(), 1u);
  const json& e = log["entries"][0];
  EXPECT_EQ(e["requested"], "tiny");
  EXPECT_EQ(e["chosen"], "tiny");
  EXPECT_EQ(e["served"], "tiny");
  EXPECT_EQ(e["reason"], answer["qwenmux"]["route"]);
  EXPECT_EQ(e["ok"], true);
  EXPECT_EQ(e["degraded"], false);
  EXPECT_EQ(e["completion_tokens"], completion);
  EXPECT_EQ(e["prompt_tokens"], prompt);
  EXPECT_GT(e["latency_ms"].get<double>(), 0);

  // Overview: the model is loaded with its memory; an unload through the API shows.
  json ov = Get("/dashboard/api/overview");
  ASSERT_EQ(ov["models"].size(), 1u);
  EXPECT_EQ(ov["models"][0]["name"], "tiny");
  EXPECT_EQ(ov["models"][0]["state"], "loaded");
  EXPECT_GT(ov["models"][0]["ram_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(ov["memory"]["line"], 0.8);
  auto un = Call(app_->port(), "POST", "/api/generate", json{{"model", "tiny"}, {"keep_alive", 0}}.dump());
  ASSERT_EQ(un.status, 200) << un.body;
  // The scheduler's worker may still hold its lease for a moment: the unload happens on release.
  for (int i = 0; i < 200; ++i) {
    ov = Get("/dashboard/api/overview");
    if (ov["models"][0]["state"] == "unloaded") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(ov["models"][0]["state"], "unloaded") << ov.dump();
  EXPECT_EQ(ov["models"][0]["ram_bytes"], 0);
}

TEST_F(DashboardApi, AutoRoutingAndRefusalsAreLoggedWithTheirReason) {
  auto r = Call(app_->port(), "POST", "/v1/chat/completions", ChatBody("auto", 2).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json answer = json::parse(r.body);
  const json log = Get("/dashboard/api/routing");
  ASSERT_FALSE(log["entries"].empty());
  const json& e = log["entries"][0];
  EXPECT_EQ(e["requested"], "auto");
  EXPECT_EQ(e["chosen"], "tiny");
  EXPECT_EQ(e["reason"], answer["qwenmux"]["route"]);
  EXPECT_FALSE(e["explanation"].get<std::string>().empty());

  // The log keeps routing_entries (3): the newest first.
  for (int i = 0; i < 4; ++i) ASSERT_EQ(Call(app_->port(), "POST", "/v1/chat/completions", ChatBody("tiny", 1).dump()).status, 200);
  const json full = Get("/dashboard/api/routing?limit=100");
  EXPECT_EQ(full["entries"].size(), 3u);
  EXPECT_GE(full["entries"][0]["t"].get<int64_t>(), full["entries"][2]["t"].get<int64_t>());
}

TEST_F(DashboardApi, BadQueryParametersAre400sNamingThem) {
  for (const char* target : {"/dashboard/api/kpis?since=abc", "/dashboard/api/kpis?since=-5", "/dashboard/api/routing?limit=0",
                             "/dashboard/api/routing?limit=12x"}) {
    auto r = Call(app_->port(), "GET", target);
    EXPECT_EQ(r.status, 400) << target;
    const std::string param = std::string(target).find("since") != std::string::npos ? "since" : "limit";
    EXPECT_NE(r.body.find(param), std::string::npos) << r.body;
  }
}

TEST_F(DashboardApi, ThePageAndItsAssetsAreServedFromTheBinary) {
  auto page = Call(app_->port(), "GET", "/", "", {{"Accept", "text/html,application/xhtml+xml"}});
  ASSERT_EQ(page.status, 200);
  EXPECT_NE(page.Header("content-type").find("text/html"), std::string::npos);
  EXPECT_NE(page.body.find("/dashboard/app.js"), std::string::npos);
  EXPECT_NE(page.Header("content-security-policy").find("default-src 'self'"), std::string::npos);
  // Every asset the page names is served, and nothing comes from another origin.
  for (const char* a : {"/dashboard/app.js", "/dashboard/app.css"}) {
    auto r = Call(app_->port(), "GET", a);
    EXPECT_EQ(r.status, 200) << a;
    EXPECT_GT(r.body.size(), 100u) << a;
    // No URL of another origin (the SVG namespace name is not fetched).
    std::string body = r.body;
    for (size_t p; (p = body.find("http://www.w3.org/2000/svg")) != std::string::npos;) body.erase(p, 26);
    EXPECT_EQ(body.find("http://"), std::string::npos) << a;
    EXPECT_EQ(body.find("https://"), std::string::npos) << a;
  }
  // A client that does not ask for HTML still gets the old liveness text.
  auto plain = Call(app_->port(), "GET", "/");
  EXPECT_EQ(plain.status, 200);
  EXPECT_EQ(plain.body, "qwenmux is running\n");
}

TEST(DashboardSecurity, DataNeedsTheKeyThePageDoesNotAndTheHostCheckCoversBoth) {
  orchestrator::Metrics metrics;
  AppOptions o;
  o.model_flags = {ModelPath("tiny-dense.q8_0.gguf") + "=tiny"};
  o.http.port = 0;
  o.models.n_ctx = 256;
  o.models.threads = 1;
  o.metrics = &metrics;
  o.log.quiet = true;
  o.http.security.api_keys = {"dash-key"};
  o.http.security.check_host = true;
  o.dashboard.sample_period = std::chrono::hours(1);
  auto app = App::Create(std::move(o), [](const std::string&) {});
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  ASSERT_TRUE((*app)->Start().ok());
  const uint16_t port = (*app)->port();
  for (const char* api : {"/dashboard/api/overview", "/dashboard/api/kpis", "/dashboard/api/routing",
                          "/dashboard/api/collections"}) {
    EXPECT_EQ(Call(port, "GET", api).status, 401) << api;
    EXPECT_EQ(Call(port, "GET", api, "", {{"Authorization", "Bearer wrong"}}).status, 401) << api;
    EXPECT_EQ(Call(port, "GET", api, "", {{"Authorization", "Bearer dash-key"}}).status, 200) << api;
    EXPECT_EQ(Call(port, "GET", api, "", {{"Authorization", "Bearer dash-key"}, {"Host", "evil.example"}}).status, 403)
        << api;
  }
  // The page itself holds no data: it loads without the key (and asks for it), but not under a
  // foreign Host (DNS rebinding).
  EXPECT_EQ(Call(port, "GET", "/", "", {{"Accept", "text/html"}}).status, 200);
  EXPECT_EQ(Call(port, "GET", "/dashboard/app.js").status, 200);
  EXPECT_EQ(Call(port, "GET", "/", "", {{"Accept", "text/html"}, {"Host", "evil.example"}}).status, 403);
  (*app)->Shutdown();
}

TEST(DashboardSameOrigin, ThePagesOwnRequestsPassWithoutACorsOriginForeignOnesDoNot) {
  // The page's POSTs carry Origin = its own origin (browsers send it); before, every Origin not
  // in --cors-origin was a 403, so the playground could not chat.
  EXPECT_TRUE(SameOriginAllowed("http://127.0.0.1:8080", "127.0.0.1:8080", {}));
  EXPECT_TRUE(SameOriginAllowed("http://LOCALHOST:8080", "localhost:8080", {}));
  EXPECT_TRUE(SameOriginAllowed("http://box.lan:8080", "box.lan:8080", {"box.lan"}));
  EXPECT_FALSE(SameOriginAllowed("http://127.0.0.1:9999", "127.0.0.1:8080", {}));  // another port: another origin
  EXPECT_FALSE(SameOriginAllowed("http://evil.example", "evil.example", {}));       // a rebound name
  EXPECT_FALSE(SameOriginAllowed("http://127.0.0.1:8080", "", {}));

  orchestrator::Metrics metrics;
  AppOptions o;
  o.model_flags = {ModelPath("tiny-dense.q8_0.gguf") + "=tiny"};
  o.http.port = 0;
  o.models.n_ctx = 256;
  o.models.threads = 1;
  o.metrics = &metrics;
  o.log.quiet = true;
  auto app = App::Create(std::move(o), [](const std::string&) {});
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  ASSERT_TRUE((*app)->Start().ok());
  const uint16_t port = (*app)->port();
  const std::string self = "http://127.0.0.1:" + std::to_string(port);
  auto r = Call(port, "POST", "/v1/chat/completions", ChatBody("tiny", 1).dump(), {{"Origin", self}});
  EXPECT_EQ(r.status, 200) << r.body;
  r = Call(port, "POST", "/v1/chat/completions", ChatBody("tiny", 1).dump(), {{"Origin", "http://evil.example"}});
  EXPECT_EQ(r.status, 403) << r.body;
  (*app)->Shutdown();
}

TEST(DashboardRing, KeepsTheWindowAndNoMore) {
  orchestrator::Metrics metrics;
  AppOptions o;
  o.model_flags = {ModelPath("tiny-dense.q8_0.gguf") + "=tiny"};
  o.http.port = 0;
  o.metrics = &metrics;
  o.log.quiet = true;
  o.dashboard.sample_period = std::chrono::seconds(5);
  o.dashboard.window = std::chrono::seconds(10);  // room for 2 samples
  auto app = App::Create(std::move(o), [](const std::string&) {});
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  Dashboard& d = (*app)->dashboard();
  EXPECT_EQ(d.capacity(), 2u);
  d.SampleNow();  // baseline
  for (int i = 0; i < 5; ++i) d.SampleNow();
  const Json j = d.SamplesJson(0);
  EXPECT_EQ(j["samples"].size(), 2u);
  EXPECT_EQ(j["window_s"], 10);
  EXPECT_EQ(j["period_s"], 5.0);
}

}  // namespace
}  // namespace qwenmux::server
