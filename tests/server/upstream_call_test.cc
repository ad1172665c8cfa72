// Upstreams::Call (upstream.h): whole requests qwenmux itself makes to a backend model, the
// building block for pipeline and RAG stages that name "NAME/MODEL". A second qwenmux on
// loopback is the backend in both dialects ("up" OpenAI, "upo" Ollama): chat and embeddings come
// back in the OpenAI dialect and equal the upstream's own answers; bad names and a backend that
// cannot be reached are clear errors naming the backend, counted in its figures.

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "server/app.h"
#include "server/http_client.h"
#include "server/upstream.h"
#include "server/upstream_fixture.h"

namespace qwenmux::server {
namespace {

using qwenmux::testing::Call;
using qwenmux::testing::ModelPath;
using Kind = Upstreams::CallKind;

class UpstreamCall : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    upstream_ = qwenmux::testing::StartTinyUpstream(256).release();
    ASSERT_NE(upstream_, nullptr);
    const std::string url = qwenmux::testing::LoopbackUrl(upstream_->port());
    upstreams_ = qwenmux::testing::MakeUpstreams(
                     {"up=" + url, "upo=" + url + ",ollama", "down=" + qwenmux::testing::LoopbackUrl(qwenmux::testing::DeadPort())},
                     {"up/tiny", "upo/tiny"})
                     .release();
  }
  static void TearDownTestSuite() {
    delete upstreams_;
    delete upstream_;
  }
  static Upstreams::Stats StatsOf(const std::string& name) {
    for (const auto& s : upstreams_->BackendStats()) {
      if (s.name == name) return s;
    }
    return {};
  }
  static App* upstream_;
  static Upstreams* upstreams_;
};
App* UpstreamCall::upstream_ = nullptr;
Upstreams* UpstreamCall::upstreams_ = nullptr;

TEST_F(UpstreamCall, ChatInBothDialectsIsTheUpstreamsOwnAnswer) {
  Json req{{"model", "tiny"}, {"messages", Json::array({Json{{"role", "user"}, {"content", "Name three colours."}}})},
           {"max_tokens", 12}, {"temperature", 0}, {"stream", true}};  // Call always asks for a whole answer
  Json direct_req = req;
  direct_req["stream"] = false;
  const auto d = Call(upstream_->port(), "POST", "/v1/chat/completions", direct_req.dump());
  ASSERT_EQ(d.status, 200) << d.body;
  const Json direct = Json::parse(d.body);
  const int64_t before = StatsOf("upo").requests;
  for (const std::string model : {"up/tiny", "upo/tiny"}) {
    const Result<Json> got = upstreams_->Call(Kind::kChat, model, req);
    ASSERT_TRUE(got.ok()) << model << ": " << got.status().ToString();
    EXPECT_EQ((*got)["object"], "chat.completion") << model;
    EXPECT_EQ((*got)["model"], model);
    const Json& m = (*got)["choices"][0]["message"];
    const Json& dm = direct["choices"][0]["message"];
    EXPECT_FALSE((dm.value("content", "") + dm.value("reasoning_content", "")).empty());
    EXPECT_EQ(m.value("content", ""), dm.value("content", "")) << model;
    EXPECT_EQ(m.value("reasoning_content", ""), dm.value("reasoning_content", "")) << model;
    EXPECT_EQ((*got)["usage"]["completion_tokens"], direct["usage"]["completion_tokens"]) << model;
  }
  EXPECT_EQ(StatsOf("upo").requests, before + 1);
  EXPECT_EQ(StatsOf("upo").in_flight, 0);
}

TEST_F(UpstreamCall, EmbeddingsInBothDialects) {
  const Json req{{"input", Json::array({"hello world", "bonjour"})}};
  Json direct_req = req;
  direct_req["model"] = "tiny";
  const auto d = Call(upstream_->port(), "POST", "/v1/embeddings", direct_req.dump());
  ASSERT_EQ(d.status, 200) << d.body;
  const Json direct = Json::parse(d.body);
  for (const std::string model : {"up/tiny", "upo/tiny"}) {
    const Result<Json> got = upstreams_->Call(Kind::kEmbeddings, model, req);
    ASSERT_TRUE(got.ok()) << model << ": " << got.status().ToString();
    ASSERT_EQ((*got)["data"].size(), 2u) << model;
    for (size_t k = 0; k < 2; ++k) {
      const auto a = (*got)["data"][k]["embedding"].get<std::vector<float>>();
      const auto b = direct["data"][k]["embedding"].get<std::vector<float>>();
      ASSERT_EQ(a.size(), b.size());
      for (size_t i = 0; i < a.size(); ++i) EXPECT_FLOAT_EQ(a[i], b[i]) << model;
    }
  }
}

TEST_F(UpstreamCall, BadNamesAndUnreachableBackendsAreClearErrors) {
  const Json req{{"messages", Json::array({Json{{"role", "user"}, {"content", "Hi"}}})}, {"max_tokens", 2}};
  struct Case {
    std::string model;
    StatusCode code;
    std::string words;
  };
  for (const Case& c : std::vector<Case>{
           {"tiny", StatusCode::kInvalidArgument, "does not name a backend model (NAME/MODEL)"},
           {"nope/tiny", StatusCode::kNotFound, "backend \"nope\" is not configured"},
           {"up/missing", StatusCode::kNotFound, "model \"up/missing\" not found on backend up; it has: up/tiny"},
           {"down/x", StatusCode::kUnavailable, "backend down (http://127.0.0.1:"},
       }) {
    const Result<Json> got = upstreams_->Call(Kind::kChat, c.model, req);
    ASSERT_FALSE(got.ok()) << c.model;
    EXPECT_EQ(got.status().code(), c.code) << c.model << ": " << got.status().ToString();
    EXPECT_NE(got.status().message().find(c.words), std::string::npos) << got.status().ToString();
  }
  const Result<Json> down = upstreams_->Call(Kind::kEmbeddings, "down/x", Json{{"input", "a"}});
  EXPECT_NE(down.status().message().find("cannot connect"), std::string::npos) << down.status().ToString();
  EXPECT_EQ(StatsOf("down").errors, 2);
  EXPECT_FALSE(StatsOf("down").healthy);
  // What the backend's dialect cannot say is refused before sending, naming it.
  Json forced = req;
  forced["tools"] = Json::array({Json{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", Json::object()}}}}});
  forced["tool_choice"] = "required";
  const Result<Json> refused = upstreams_->Call(Kind::kChat, "upo/tiny", forced);
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("backend upo ("), std::string::npos) << refused.status().ToString();
}

}  // namespace
}  // namespace qwenmux::server
