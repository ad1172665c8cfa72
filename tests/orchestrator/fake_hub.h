// Starts tests/orchestrator/fake_hub.py on 127.0.0.1 (a free port) for one test.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <random>

#include "gguf/gguf.h"
#include "orchestrator/temp_dir.h"
#include "common/paths.h"

extern char** environ;

namespace qwenmux::testing {

// A GGUF file of `n_data` random data bytes after its header (one I8 tensor), so that pull, which
// refuses anything that does not parse as GGUF, accepts it. Sizes: header + n_data.
inline std::string GgufBytes(size_t n_data, uint32_t seed) {
  gguf::Writer w;
  w.AddKeyValue("general.architecture", gguf::Value(std::string("fake")));
  const uint64_t ne[1] = {n_data};
  EXPECT_TRUE(w.AddTensor("data", gguf::TensorType::kI8, ne).ok());
  const std::vector<uint8_t> header = w.SerializeHeader();
  std::string s(header.begin(), header.end());
  std::mt19937 rng(seed);
  s.reserve(s.size() + n_data);
  for (size_t i = 0; i < n_data; ++i) s.push_back(static_cast<char>(rng()));
  return s;
}

class FakeHub {
 public:
  // `files`: "owner/repo/file" -> contents.
  FakeHub(const std::vector<std::pair<std::string, std::string>>& files, const std::string& mode) {
    for (const auto& [rel, bytes] : files) {
      std::filesystem::path p = std::filesystem::path(dir_ / "root") / rel;
      std::filesystem::create_directories(p.parent_path());
      std::ofstream(p, std::ios::binary) << bytes;
    }
    std::filesystem::create_directories(dir_ / "root");
    std::string script = (std::filesystem::path(::qwenmux::testing::SourceDir() + "/tests/orchestrator") / "fake_hub.py").string();
    std::vector<std::string> args = {"python3", script, "--root", dir_ / "root", "--port-file", dir_ / "port",
                                     "--log", log_path(), "--mode", mode, "--lifetime", "120"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawnp(&pid_, "python3", nullptr, nullptr, argv.data(), environ) != 0) {
      ADD_FAILURE() << "cannot start python3";
      pid_ = -1;
      return;
    }
    for (int i = 0; i < 200 && port_ == 0; ++i) {
      std::ifstream in(dir_ / "port");
      if (in >> port_) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_NE(port_, 0) << "fake hub did not start";
  }
  ~FakeHub() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int st = 0;
      waitpid(pid_, &st, 0);
    }
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string log_path() const { return dir_ / "requests.log"; }
  std::string log() const {
    std::ifstream in(log_path());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  TempDir dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace qwenmux::testing
