// MatMul benchmark on the projection shapes of Qwen3-0.6B and Qwen3-1.7B. Prints JSON:
//  - read_bandwidth_gbs: a plain streaming read of a 512 MiB buffer (the speed of light for
//    mat-vec), per thread count;
//  - per (model, shape, type, threads, n_tokens): ms per call, GB/s of weight bytes read
//    (meaningful at n_tokens = 1) and GFLOP/s (2 * rows * cols * n_tokens / time);
//    *_cpu variants divide by process CPU time / threads instead of wall time: on a machine
//    shared with other jobs they estimate the uncontended speed;
//  - per (model, type, threads): the mat-vec time of one decode step (28 layers + LM head)
//    and the implied upper bound on decode tok/s.
// Usage: matmul_bench [--quick] [--types q8_0,q4_k,...] [--tokens 1,64,512] [--threads 1,2]
#include <algorithm>
#include <ctime>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "gguf/gguf.h"
#include "kernels/matmul.h"
#include "nlohmann/json.hpp"
#include "quant/quant.h"

namespace {

using qwenmux::ThreadPool;
using qwenmux::gguf::TensorType;
using Clock = std::chrono::steady_clock;

struct Shape {
  const char* name;
  int64_t cols, rows;  // in -> out
  int per_layer;       // times per decoder layer (0: once per token, the LM head)
};

struct Model {
  const char* name;
  std::vector<Shape> shapes;
};

const std::vector<Model> kModels = {
    {"qwen3-0.6b",
     {{"q", 1024, 2048, 1}, {"kv", 1024, 1024, 2}, {"o", 2048, 1024, 1},
      {"gate_up", 1024, 3072, 2}, {"down", 3072, 1024, 1}, {"output", 1024, 151936, 0}}},
    {"qwen3-1.7b",
     {{"q_o", 2048, 2048, 2}, {"kv", 2048, 1024, 2}, {"gate_up", 2048, 6144, 2},
      {"down", 6144, 2048, 1}, {"output", 2048, 151936, 0}}},
};
constexpr int kLayers = 28;

// CPU time of the whole process (all threads): on a shared machine, wall time includes time
// other processes held our cores; cpu_ms / threads approximates the uncontended wall time.
double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Streaming read bandwidth with `pool` (GB/s).
double ReadBandwidth(ThreadPool& pool) {
  const size_t n = (512u << 20) / 8;
  static std::vector<uint64_t> buf;
  if (buf.size() != n) {
    buf.assign(n, 0);
    for (size_t i = 0; i < n; i += 512) buf[i] = i;
  }
  std::vector<uint64_t> sums(pool.size() * 8);
  double best = 0.0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
    pool.ParallelFor(n / 4096, 1, [&](size_t b, size_t e, size_t t) {
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (size_t i = b * 4096; i < e * 4096; i += 4) {
        s0 += buf[i];
        s1 += buf[i + 1];
        s2 += buf[i + 2];
        s3 += buf[i + 3];
      }
      sums[t * 8] += s0 + s1 + s2 + s3;
    });
    best = std::max(best, static_cast<double>(n * 8) / Seconds(t0, Clock::now()) / 1e9);
  }
  uint64_t total = 0;
  for (uint64_t s : sums) total += s;
  if (total == 42) std::printf(" ");  // keep the reads
  return best;
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  size_t p = 0;
  while (p <= s.size()) {
    const size_t q = std::min(s.find(',', p), s.size());
    if (q > p) out.push_back(s.substr(p, q - p));
    p = q + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::vector<std::string> types = {"q8_0", "q4_K", "q6_K", "q5_K"};
  std::vector<int64_t> tokens = {1, 64, 512};
  std::vector<size_t> threads = {1, 2};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--types" && i + 1 < argc) {
      types = Split(argv[++i]);
    } else if (a == "--tokens" && i + 1 < argc) {
      tokens.clear();
      for (const auto& s : Split(argv[++i])) tokens.push_back(std::stoll(s));
    } else if (a == "--threads" && i + 1 < argc) {
      threads.clear();
      for (const auto& s : Split(argv[++i])) threads.push_back(std::stoul(s));
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--types a,b] [--tokens 1,64] [--threads 1,2]\n",
                   argv[0]);
      return 2;
    }
  }
  const double min_time = quick ? 0.05 : 0.3;
  nlohmann::json out;
  out["bench"] = "matmul";
  for (size_t nt : threads) {
    ThreadPool pool(nt);
    out["read_bandwidth_gbs"][std::to_string(nt) + "_threads"] = ReadBandwidth(pool);
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  nlohmann::json results = nlohmann::json::array();
  nlohmann::json decode = nlohmann::json::array();
  for (const std::string& tname : types) {
    TensorType type{};
    bool found = false;
    for (TensorType t : {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ4_K,
                         TensorType::kQ5_K, TensorType::kQ6_K, TensorType::kF16,
                         TensorType::kBF16, TensorType::kF32}) {
      if (tname == qwenmux::gguf::TensorTypeName(t)) {
        type = t;
        found = true;
      }
    }
    if (!found) {
      std::fprintf(stderr, "unknown type %s\n", tname.c_str());
      return 2;
    }
    for (const Model& model : kModels) {
      for (size_t nt : threads) {
        ThreadPool pool(nt);
        double decode_s = 0.0;
        double decode_bytes = 0.0;
        for (const Shape& sh : model.shapes) {
          // One random row quantized, replicated: realistic bytes at any size, fast to set up.
          const size_t rb = qwenmux::quant::RowSize(type, sh.cols);
          std::vector<float> row(static_cast<size_t>(sh.cols));
          for (auto& v : row) v = nd(rng) * 0.02f;
          std::vector<uint8_t> wbytes(rb * static_cast<size_t>(sh.rows));
          if (!qwenmux::quant::QuantizeRow(type, row.data(), wbytes.data(), sh.cols).ok()) return 1;
          for (int64_t r = 1; r < sh.rows; ++r) {
            std::memcpy(wbytes.data() + rb * r, wbytes.data(), rb);
          }
          qwenmux::kernels::WeightView w;
          w.type = type;
          w.data = wbytes.data();
          w.rows = sh.rows;
          w.cols = sh.cols;
          w.row_bytes = rb;
          for (int64_t n : tokens) {
            // The LM head at 512 tokens takes seconds per call and is not on the prefill path.
            if (sh.per_layer == 0 && n > 64) continue;
            std::vector<float> x(static_cast<size_t>(n * sh.cols));
            for (auto& v : x) v = nd(rng);
            std::vector<float> y(static_cast<size_t>(n * sh.rows));
            qwenmux::kernels::MatMul(w, x.data(), sh.cols, y.data(), sh.rows, n, &pool);  // warm
            int reps = 0;
            const auto t0 = Clock::now();
            const double c0 = ProcessCpuSeconds();
            double el = 0.0;
            do {
              qwenmux::kernels::MatMul(w, x.data(), sh.cols, y.data(), sh.rows, n, &pool);
              ++reps;
              el = Seconds(t0, Clock::now());
            } while (el < min_time);
            const double s = el / reps;
            const double cpu_s = (ProcessCpuSeconds() - c0) / reps;
            const double bytes = static_cast<double>(wbytes.size());
            const double flop = 2.0 * sh.rows * sh.cols * n;
            results.push_back({{"model", model.name},
                               {"shape", sh.name},
                               {"cols", sh.cols},
                               {"rows", sh.rows},
                               {"type", tname},
                               {"threads", nt},
                               {"n_tokens", n},
                               {"ms", s * 1e3},
                               {"cpu_ms", cpu_s * 1e3},
                               {"weight_gbs_cpu", bytes / (cpu_s / static_cast<double>(nt)) / 1e9},
                               {"weight_gbs", bytes / s / 1e9},
                               {"gflops", flop / s / 1e9},
                               {"gflops_cpu", flop / (cpu_s / static_cast<double>(nt)) / 1e9}});
            if (n == 1) {
              const int times = sh.per_layer == 0 ? 1 : sh.per_layer * kLayers;
              decode_s += s * times;
              decode_bytes += bytes * times;
            }
          }
        }
        if (decode_s > 0.0) {
          decode.push_back({{"model", model.name},
                            {"type", tname},
                            {"threads", nt},
                            {"matvec_ms_per_token", decode_s * 1e3},
                            {"matvec_tok_s_bound", 1.0 / decode_s},
                            {"weight_gbs", decode_bytes / decode_s / 1e9}});
        }
      }
    }
  }
  out["results"] = results;
  out["decode_matvec"] = decode;
  std::printf("%s\n", out.dump(1).c_str());
  return 0;
}
