// Other engines as routed backends (issue 18) with the official OpenAI and Ollama JavaScript
// clients (tests/clients/backends.test.mjs): a front `qwenmux serve` routes to an upstream
// `qwenmux serve` on loopback, once in each dialect ("up/tiny": OpenAI, "upo/tiny": Ollama).
#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "common/testdata.h"
#include "server/http_client.h"

namespace qwenmux::testing {
namespace {

TEST(UpstreamClients, OfficialClientsThroughBackendsOfBothDialects) {
  const std::filesystem::path clients =
      std::filesystem::path(::qwenmux::testing::QwenmuxBinary()).parent_path().parent_path() / "tests" / "clients";
  if (!std::filesystem::exists(clients / "node_modules" / "openai") ||
      !std::filesystem::exists(clients / "node_modules" / "ollama")) {
    GTEST_SKIP() << "tests/clients/node_modules is missing: run `npm ci` in tests/clients (scripts/test.sh does)";
  }
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node is not installed";
  const std::string tmp = std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp";
  ServerProcess upstream({"--model", ModelPath("tiny-dense.q8_0.gguf") + "=tiny", "--ctx", "1024", "-t", "1"},
                         tmp + "/backends-upstream.log");
  ASSERT_TRUE(upstream.WaitReady()) << "upstream did not start";
  const std::string up = "http://127.0.0.1:" + std::to_string(upstream.port());
  ServerProcess front({"--backend", "up=" + up, "--backend", "upo=" + up + ",ollama"}, tmp + "/backends-front.log");
  ASSERT_TRUE(front.WaitReady()) << "front did not start";
  // Discovery runs in the background: wait until both backends list their model.
  for (int i = 0; i < 200; ++i) {
    const std::string body = Call(front.port(), "GET", "/v1/models").body;
    if (body.find("\"up/tiny\"") != std::string::npos && body.find("\"upo/tiny\"") != std::string::npos) break;
    usleep(50 * 1000);
  }
  const std::string cmd = "cd '" + clients.string() + "' && QWENMUX_URL=http://127.0.0.1:" + std::to_string(front.port()) +
                          " QWENMUX_BACKEND_MODELS=up/tiny=openai,upo/tiny=ollama node --test --test-reporter=tap backends.test.mjs "
                          "> node-backends.log 2>&1";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    const std::string show = "grep -B2 -A16 '^not ok\\|^    not ok' '" + (clients / "node-backends.log").string() + "' | head -100";
    (void)std::system(show.c_str());
  }
  EXPECT_EQ(rc, 0) << "node --test failed; see tests/clients/node-backends.log";
  EXPECT_EQ(front.Stop(), 0);
  EXPECT_EQ(upstream.Stop(), 0);
}

}  // namespace
}  // namespace qwenmux::testing
