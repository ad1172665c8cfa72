// Test-side HTTP: a blocking client (Beast), raw byte exchanges for hostile input, and a
// `qwenmux serve` child process on a port it picks itself (reported in its log).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

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

inline HttpResult Call(uint16_t port, const std::string& method, const std::string& target, const std::string& body = "",
                       const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  namespace net = boost::asio;
  namespace http = boost::beast::http;
  HttpResult out;
  try {
    net::io_context ioc;
    boost::beast::tcp_stream stream(ioc);
    stream.expires_after(std::chrono::seconds(60));
    stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    http::request<http::string_body> req(http::string_to_verb(method), target, 11);
    req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
    req.set(http::field::content_type, "application/json");
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    req.prepare_payload();
    http::write(stream, req);
    boost::beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(1u << 30);
    http::read(stream, buf, parser);
    const auto& res = parser.get();
    out.status = static_cast<int>(res.result_int());
    for (const auto& f : res) {
      std::string name(f.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers[name] = std::string(f.value());
    }
    out.body = res.body();
  } catch (const std::exception&) {
  }
  return out;
}

// Sends `bytes` (optionally in pieces with pauses) and returns everything read until the server
// closes or `timeout_ms` passes.
inline std::string Raw(uint16_t port, const std::vector<std::string>& pieces, int pause_ms = 0, int timeout_ms = 5000) {
  namespace net = boost::asio;
  net::io_context ioc;
  net::ip::tcp::socket sock(ioc);
  boost::system::error_code ec;
  sock.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return "";
  for (const std::string& p : pieces) {
    net::write(sock, net::buffer(p), ec);
    if (ec) break;
    if (pause_ms) std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
  }
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(sock.native_handle(), buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}
inline std::string Raw(uint16_t port, const std::string& bytes, int timeout_ms = 5000) {
  return Raw(port, std::vector<std::string>{bytes}, 0, timeout_ms);
}
inline int RawStatus(const std::string& response) {
  if (response.size() < 12 || response.compare(0, 9, "HTTP/1.1 ") != 0) return 0;
  return std::atoi(response.c_str() + 9);
}

// `qwenmux serve ARGS --port 0` as a child process: the child binds a free port itself and
// reports it in its log ("serve: listening on http://HOST:PORT"), which port() reads, so no
// other process can take the port between choosing and binding it.
class ServerProcess {
 public:
  explicit ServerProcess(std::vector<std::string> args, const std::string& log_path) : log_path_(log_path) {
    args.insert(args.begin(), {QWENMUX_BINARY, "serve"});
    args.push_back("--port");
    args.push_back("0");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&pid_, QWENMUX_BINARY, &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
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
