// Shared pieces of the backend tests (issue 18): another qwenmux in-process on loopback as the
// upstream, a loopback port nothing listens on, waiting for discovery, and an Upstreams of
// `--backend` flags. Used by the upstream_* tests of the server and by the pipeline and RAG
// tests of stages that name a backend model.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/testdata.h"
#include "server/app.h"
#include "server/upstream.h"

namespace qwenmux::testing {

// A listening socket on 127.0.0.1 (any port, written to *port); -1 on failure.
inline int ListenLoopback(uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd, 16) != 0) {
    ::close(fd);
    return -1;
  }
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// A loopback port nothing listens on (bound once, then freed).
inline uint16_t DeadPort() {
  uint16_t port = 0;
  ::close(ListenLoopback(&port));
  return port;
}

inline std::string LoopbackUrl(uint16_t port) { return "http://127.0.0.1:" + std::to_string(port); }

// Another qwenmux serving the tiny dense test model as `name`, started on a loopback port; null
// (with a test failure) if it cannot start.
inline std::unique_ptr<server::App> StartTinyUpstream(int32_t n_ctx, const std::string& name = "tiny") {
  server::AppOptions o;
  o.model_flags = {ModelPath("tiny-dense.q8_0.gguf") + "=" + name};
  o.http.port = 0;
  o.models.n_ctx = n_ctx;
  o.models.threads = 1;
  auto app = server::App::Create(std::move(o), [](const std::string&) {});
  EXPECT_TRUE(app.ok()) << app.status().ToString();
  if (!app.ok()) return nullptr;
  std::unique_ptr<server::App> up = std::move(*app);
  const Status started = up->Start();
  EXPECT_TRUE(started.ok()) << started.ToString();
  return started.ok() ? std::move(up) : nullptr;
}

// Polls `done` every 20 ms for up to `limit`; whether it became true.
inline bool WaitUntil(const std::function<bool()>& done, std::chrono::seconds limit = std::chrono::seconds(20)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// An Upstreams of `--backend` flags (NAME=URL[,dialect]), discovery started, with short
// connection timeouts; waits until every model of `expect` ("NAME/MODEL") is listed.
inline std::unique_ptr<server::Upstreams> MakeUpstreams(const std::vector<std::string>& flags,
                                                        const std::vector<std::string>& expect = {}) {
  std::vector<orchestrator::BackendConfig> backends;
  for (const std::string& flag : flags) {
    auto b = orchestrator::ParseBackendFlag(flag);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    if (b.ok()) backends.push_back(std::move(*b));
  }
  server::UpstreamOptions o;
  o.min_backoff = std::chrono::milliseconds(60000);
  o.connect_timeout = std::chrono::milliseconds(1000);
  auto u = std::make_unique<server::Upstreams>(std::move(backends), o, [](const std::string&) {});
  u->Start();
  server::Upstreams* raw = u.get();
  EXPECT_TRUE(WaitUntil([&] {
    size_t found = 0;
    for (const auto& m : raw->Models()) {
      for (const std::string& e : expect) found += m.full_name() == e;
    }
    return found >= expect.size();
  }));
  return u;
}

// A test suite with one tiny upstream on loopback (n_ctx 1024) reached as backend "up" (OpenAI
// dialect) and "upo" (Ollama dialect), both serving "tiny", for tests of stages that name a
// backend model. Suite: the deriving fixture, so each suite starts its own upstream.
template <class Suite>
class TinyUpstreamSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    upstream_ = StartTinyUpstream(1024).release();
    ASSERT_NE(upstream_, nullptr);
    const std::string url = LoopbackUrl(upstream_->port());
    upstreams_ = MakeUpstreams({"up=" + url, "upo=" + url + ",ollama"}, {"up/tiny", "upo/tiny"}).release();
  }
  static void TearDownTestSuite() {
    delete upstreams_;
    delete upstream_;
  }
  static rag::BackendAccess Access() { return server::BackendAccessOf(upstreams_); }
  static inline server::App* upstream_ = nullptr;
  static inline server::Upstreams* upstreams_ = nullptr;
};

}  // namespace qwenmux::testing
