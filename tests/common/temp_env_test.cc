// Gives every test process its own temporary directory (ctest runs tests in parallel processes,
// and several tests write fixed file names under ::testing::TempDir()). Removed at exit.
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace {

struct PerProcessTempDir {
  std::string dir;
  PerProcessTempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "qwenmux-test-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return;  // keep gtest's default
    dir = tmpl;
    setenv("TEST_TMPDIR", dir.c_str(), 1);
  }
  ~PerProcessTempDir() {
    if (dir.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

const PerProcessTempDir kTempDir;

}  // namespace
