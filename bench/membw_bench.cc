// Memory read bandwidth (streaming sum over a buffer much larger than the caches), the "speed of
// light" for decode. Usage: membw_bench [THREADS] [MiB]; prints JSON.
#include <cstdio>
#include <cstdlib>

#include "base/sysinfo.h"
#include "base/thread_pool.h"

int main(int argc, char** argv) {
  const size_t threads = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : qwenmux::ThreadPool::DefaultThreadCount();
  const size_t mib = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 1024;
  const double bw = qwenmux::MeasureReadBandwidth(mib << 20, threads == 0 ? 1 : threads, 7);
  std::printf("{\"threads\": %zu, \"buffer_mib\": %zu, \"read_GBps\": %.2f}\n", threads, mib, bw / 1e9);
  return 0;
}
