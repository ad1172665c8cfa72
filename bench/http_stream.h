// Helpers of the HTTP benchmarks (server_bench, upstream_bench): one streamed completion request
// timed to its first text delta and its end over a raw loopback socket, and percentiles.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>  // boost 1.74 asio/awaitable.hpp uses std::exchange without it
#include <vector>

#include <boost/asio.hpp>
#include <fmt/format.h>

namespace qwenmux::bench {

using Clock = std::chrono::steady_clock;
namespace net = boost::asio;

inline double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

struct StreamTiming {
  bool ok = false;
  double ttft = 0, total = 0;
  int tokens = 0;
};

// Streams one request; times the first "data: " event with text and the end.
inline StreamTiming Stream(uint16_t port, const std::string& path, const std::string& body) {
  StreamTiming t;
  net::io_context ioc;
  net::ip::tcp::socket sock(ioc);
  boost::system::error_code ec;
  const auto t0 = Clock::now();
  sock.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return t;
  sock.set_option(net::ip::tcp::no_delay(true), ec);
  const std::string req = fmt::format(
      "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
      path, body.size(), body);
  net::write(sock, net::buffer(req), ec);
  std::string got;
  char buf[16384];
  bool first = false;
  size_t scanned = 0;
  for (;;) {
    const size_t n = sock.read_some(net::buffer(buf), ec);
    if (n > 0) got.append(buf, n);
    size_t pos;
    while ((pos = got.find("\"text\":\"", scanned)) != std::string::npos) {
      scanned = pos + 8;
      if (got.compare(pos + 8, 1, "\"") != 0) {  // a non-empty text delta
        ++t.tokens;
        if (!first) {
          first = true;
          t.ttft = Seconds(t0, Clock::now());
        }
      }
    }
    if (ec) break;
  }
  t.total = Seconds(t0, Clock::now());
  t.ok = got.find("data: [DONE]") != std::string::npos;
  if (const size_t u = got.find("\"completion_tokens\":"); u != std::string::npos) {
    t.tokens = std::atoi(got.c_str() + u + 20);  // the usage chunk's count
  }
  return t;
}

inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

}  // namespace qwenmux::bench
