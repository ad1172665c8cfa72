// The official OpenAI and Ollama JavaScript clients (tests/clients, pinned in its lockfile and
// installed by `npm ci` in scripts/test.sh) against a real `qwenmux serve` on loopback.
#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "common/testdata.h"
#include "server/http_client.h"

namespace qwenmux::testing {
namespace {

TEST(ServerClients, OfficialOpenAiAndOllamaClients) {
  const std::filesystem::path clients = std::filesystem::path(::qwenmux::testing::QwenmuxBinary()).parent_path().parent_path() / "tests" / "clients";
  if (!std::filesystem::exists(clients / "node_modules" / "openai") ||
      !std::filesystem::exists(clients / "node_modules" / "ollama")) {
    GTEST_SKIP() << "tests/clients/node_modules is missing: run `npm ci` in tests/clients (scripts/test.sh does)";
  }
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node is not installed";
  const std::string log = std::string(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp") + "/clients-serve.log";
  ServerProcess server({"--model", ModelPath("tiny-dense.q8_0.gguf") + "=tiny", "--ctx", "1024", "-t", "1",
                        "--api-key", "client-test-key"},
                       log);
  ASSERT_TRUE(server.WaitReady()) << "server did not start; log: " << log;
  const std::string cmd = "cd '" + clients.string() + "' && QWENMUX_URL=http://127.0.0.1:" + std::to_string(server.port()) +
                          " QWENMUX_MODEL=tiny QWENMUX_API_KEY=client-test-key node --test --test-reporter=tap "
                          "> node-test.log 2>&1";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    const std::string show = "grep -B2 -A12 '^not ok' '" + (clients / "node-test.log").string() + "' | head -80";
    (void)std::system(show.c_str());
  }
  EXPECT_EQ(rc, 0) << "node --test failed; see tests/clients/node-test.log";
  EXPECT_EQ(server.Stop(), 0) << "serve did not exit cleanly on SIGTERM";
}

}  // namespace
}  // namespace qwenmux::testing
