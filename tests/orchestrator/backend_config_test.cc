// `backends:` in qwenmux.yaml and `serve --backend NAME=URL[,dialect]` (issue 18): good entries
// parse; bad ones are errors naming the line, the key and what is wrong.
#include <gtest/gtest.h>

#include "orchestrator/config/backend_config.h"
#include "orchestrator/config/config.h"

namespace qwenmux::orchestrator {
namespace {

TEST(BackendConfig, YamlEntriesParse) {
  auto c = ParseConfig(R"(backends:
  - name: lms
    url: http://127.0.0.1:1234/
    api_key_env: LMS_KEY
    models: [qwen3-8b, qwen3-4b]
    timeout: 30s
  - name: ollama
    url: https://gpu-box:11434
    dialect: ollama
    models: all
)", "q.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->backends.size(), 2u);
  const BackendConfig& a = c->backends[0];
  EXPECT_EQ(a.name, "lms");
  EXPECT_EQ(a.url, "http://127.0.0.1:1234");  // trailing '/' dropped
  EXPECT_EQ(a.dialect, BackendDialect::kOpenAi);
  EXPECT_EQ(a.api_key_env, "LMS_KEY");
  EXPECT_EQ(a.models, (std::vector<std::string>{"qwen3-8b", "qwen3-4b"}));
  EXPECT_EQ(a.timeout.ms, 30000);
  EXPECT_EQ(c->backends[1].dialect, BackendDialect::kOllama);
  EXPECT_TRUE(c->backends[1].models.empty());  // all
}

TEST(BackendConfig, BadYamlEntriesNameLineAndKey) {
  struct Case {
    const char* yaml;
    const char* expect;
  } cases[] = {
      {"backends:\n  - name: a\n    url: ftp://x\n", "q.yaml:3: backends[0].url"},
      {"backends:\n  - name: a\n    url: http://\n", "no host"},
      {"backends:\n  - name: a\n    url: http://h:99999\n", "port"},
      {"backends:\n  - name: a\n    url: http://h/?q=1\n", "no query"},
      {"backends:\n  - name: a/b\n    url: http://h\n", "backends[0].name"},
      {"backends:\n  - name: a\n    url: http://h\n    dialect: grpc\n", "expected openai or ollama"},
      {"backends:\n  - name: a\n", "backends[0].url: required"},
      {"backends:\n  - url: http://h\n", "backends[0].name: required"},
      {"backends:\n  - name: a\n    url: http://h\n    models: some\n", "expected `all` or a non-empty list"},
      {"backends:\n  - name: a\n    url: http://h\n    timeout: 0\n", "positive duration"},
      {"backends:\n  - name: a\n    url: http://h\n    colour: red\n", "colour"},
      {"backends:\n  - name: a\n    url: http://h\n  - name: a\n    url: http://g\n", "\"a\" is used twice"},
      {"backends: x\n", "expected a list"},
  };
  for (const Case& c : cases) {
    auto r = ParseConfig(c.yaml, "q.yaml");
    ASSERT_FALSE(r.ok()) << c.yaml;
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << c.yaml << " -> " << r.status().ToString();
  }
}

TEST(BackendConfig, Flag) {
  auto a = ParseBackendFlag("up=http://127.0.0.1:8080");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->name, "up");
  EXPECT_EQ(a->url, "http://127.0.0.1:8080");
  EXPECT_EQ(a->dialect, BackendDialect::kOpenAi);
  auto b = ParseBackendFlag("ol=http://box:11434/,ollama");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->url, "http://box:11434");
  EXPECT_EQ(b->dialect, BackendDialect::kOllama);
  for (const char* bad : {"up", "=http://h", "up=localhost:80", "up=http://h,grpc", "a:b=http://h", "up=http://h:0"}) {
    auto r = ParseBackendFlag(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("--backend"), std::string::npos) << r.status().ToString();
  }
  std::vector<BackendConfig> two = {*a, *a};
  Status s = CheckBackendList(two);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("\"up\" is defined twice"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace qwenmux::orchestrator
