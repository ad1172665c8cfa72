// Test-side HTTP: a blocking client, raw byte exchanges for hostile input, and a `qwenmux serve`
// child process on a port it picks itself (reported in its log). The client is built on Beast in
// http_client.cc, so the test files that include this header do not parse Boost.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/paths.h"

extern char** environ;

namespace qwenmux::testing {

struct HttpResult {
  int status = 0;  // 0: no answer (connection failed or closed)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// One request over a fresh connection; status 0 when the connection failed or closed early.
HttpResult Call(uint16_t port, const std::string& method, const std::string& target, const std::string& body = "",
                const std::vector<std::pair<std::string, std::string>>& headers = {});

// Sends `bytes` (optionally in pieces with pauses) and returns everything read until the server
// closes or `timeout_ms` passes.
std::string Raw(uint16_t port, const std::vector<std::string>& pieces, int pause_ms = 0, int timeout_ms = 5000);
inline std::string Raw(uint16_t port, const std::string& bytes, int timeout_ms = 5000) {
  return Raw(port, std::vector<std::string>{bytes}, 0, timeout_ms);
}
inline int RawStatus(const std::string& response) {
  if (response.size() < 12 || response.compare(0, 9, "HTTP/1.1 ") != 0) return 0;
  return std::atoi(response.c_str() + 9);
}

// A blocking TCP connection to 127.0.0.1, for tests that hold connections open or read a stream
// as it arrives.
class RawSocket {
 public:
  RawSocket() = default;
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;
  ~RawSocket() { Close(); }

  bool Connect(uint16_t port);
  bool Send(const std::string& bytes);  // all of it; false on an error
  // Blocks for at most `ms` in each later Read (0: no limit).
  void SetReadTimeout(int ms);
  // Appends what arrives next to `out`: the number of bytes, 0 when the peer closed the
  // connection, -1 on an error or when the read timeout passed.
  long Read(std::string& out);
  // Reads into `out` until `done(out)`; false when the connection closed or failed first.
  template <typename Done>
  bool ReadUntil(std::string& out, Done done) {
    while (!done(out)) {
      if (Read(out) <= 0) return false;
    }
    return true;
  }
  void Close();

 private:
  int fd_ = -1;
};

// `qwenmux serve ARGS --port 0` as a child process: the child binds a free port itself and
// reports it in its log ("serve: listening on http://HOST:PORT"), which port() reads, so no
// other process can take the port between choosing and binding it.
class ServerProcess {
 public:
  explicit ServerProcess(std::vector<std::string> args, const std::string& log_path) : log_path_(log_path) {
    args.insert(args.begin(), {QwenmuxBinary(), "serve"});
    args.push_back("--port");
    args.push_back("0");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&pid_, QwenmuxBinary().c_str(), &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~ServerProcess() { Stop(); }

  // Waits for the port in the log, then polls /health until it answers 200 or the timeout passes.
  bool WaitReady(const std::vector<std::pair<std::string, std::string>>& headers = {}, int timeout_ms = 20000) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < end) {
      if (pid_ <= 0) return false;
      if (port_ == 0) ReadPort();
      if (port_ != 0 && Call(port_, "GET", "/health", "", headers).status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // SIGTERM, then the exit status (-1 if it did not exit in time).
  int Stop(int timeout_ms = 20000) {
    if (pid_ <= 0) return exit_;
    kill(pid_, SIGTERM);
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    int status = 0;
    while (std::chrono::steady_clock::now() < end) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        exit_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return -1;
  }
  uint64_t RssBytes() const {
    std::ifstream f("/proc/" + std::to_string(pid_) + "/statm");
    uint64_t size = 0, rss = 0;
    f >> size >> rss;
    return rss * static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
  }
  // The port the child bound (0 until its log says; WaitReady waits for it).
  uint16_t port() {
    if (port_ == 0) ReadPort();
    return port_;
  }
  pid_t pid() const { return pid_; }

 private:
  void ReadPort() {
    std::ifstream f(log_path_);
    const std::string log((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const std::string marker = "serve: listening on http://";
    const size_t at = log.find(marker);
    if (at == std::string::npos) return;
    const size_t colon = log.find(':', log.find("//", at) + 2);
    if (colon == std::string::npos) return;
    port_ = static_cast<uint16_t>(std::atoi(log.c_str() + colon + 1));
  }

  std::string log_path_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  int exit_ = -1;
};

}  // namespace qwenmux::testing
