#include "orchestrator/plan/speed.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "base/sysinfo.h"
#include "base/thread_pool.h"
#include "kernels/matmul.h"
#include "quant/quant.h"

namespace qwenmux::orchestrator {

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::string CpuModelName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0 || line.rfind("Model", 0) == 0) {
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string v = line.substr(colon + 1);
        while (!v.empty() && v.front() == ' ') v.erase(v.begin());
        return v;
      }
    }
  }
  return "unknown cpu";
}

// The repeats of one timing: the best (fewest interruptions) and how far the worst spread.
struct Timings {
  double best = 1e30, worst = 0;
  void Add(double s) {
    best = std::min(best, s);
    worst = std::max(worst, s);
  }
  double Spread() const { return best > 0 && best < 1e30 ? worst / best - 1.0 : 0.0; }
};

double LoadAverage() {
  double load = -1;
  if (std::ifstream la("/proc/loadavg"); !(la >> load)) return -1;
  return load;
}

// Measures one weight type: decode GB/s and prefill GMAC/s on a ring of [rows x cols] matrices.
Result<TypeRate> MeasureType(gguf::TensorType type, const MeasureOptions& o, ThreadPool& pool) {
  constexpr int64_t kRows = 3072, kCols = 1024;  // Qwen3-0.6B ffn_up/ffn_gate: [1024 -> 3072]
  if (!quant::IsSupported(type) || !kernels::MatMulSupports(type))
    return Error(StatusCode::kUnsupported, "plan: cannot measure {}", gguf::TensorTypeName(type));
  const std::optional<uint64_t> rb = gguf::RowBytes(type, kCols);
  if (!rb) return Error(StatusCode::kInternal, "plan: no row size for {}", gguf::TensorTypeName(type));
  const uint64_t row_bytes = *rb, mat_bytes = row_bytes * kRows;
  const size_t n_mats = static_cast<size_t>(std::max<uint64_t>(2, (o.ring_bytes + mat_bytes - 1) / mat_bytes));
  std::vector<uint8_t> ring(n_mats * mat_bytes);

  // 64 distinct quantized rows of N(0, 1/cols), tiled over the ring.
  constexpr int kDistinct = 64;
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f / 32.0f);
  std::vector<float> src(kCols);
  std::vector<uint8_t> rows(kDistinct * row_bytes);
  for (int r = 0; r < kDistinct; ++r) {
    for (float& v : src) v = normal(rng);
    QM_RETURN_IF_ERROR(quant::QuantizeRow(type, src.data(), rows.data() + r * row_bytes, kCols));
  }
  for (size_t r = 0; r < n_mats * kRows; ++r)
    std::copy_n(rows.data() + (r % kDistinct) * row_bytes, row_bytes, ring.data() + r * row_bytes);

  const int n_tok = std::max(1, o.prefill_tokens);
  std::vector<float> x(static_cast<size_t>(n_tok) * kCols), y(static_cast<size_t>(n_tok) * kRows);
  std::normal_distribution<float> unit(0.0f, 1.0f);
  for (float& v : x) v = unit(rng);
  auto view = [&](size_t i) {
    kernels::WeightView w;
    w.type = type;
    w.data = ring.data() + i * mat_bytes;
    w.rows = kRows;
    w.cols = kCols;
    w.row_bytes = row_bytes;
    return w;
  };

  const int repeats = std::max(1, o.decode_passes);
  TypeRate rate;
  Timings decode;
  for (int pass = 0; pass <= repeats; ++pass) {  // pass 0 warms up
    const auto t0 = Clock::now();
    for (size_t i = 0; i < n_mats; ++i) kernels::MatMul(view(i), x.data(), kCols, y.data(), kRows, 1, &pool);
    if (pass > 0) decode.Add(Seconds(t0, Clock::now()));
  }
  rate.decode_GBps = static_cast<double>(n_mats * mat_bytes) / decode.best / 1e9;
  rate.decode_spread = decode.Spread();

  const size_t n_pre = std::min<size_t>(n_mats, 4);
  Timings prefill;
  for (int pass = 0; pass <= repeats; ++pass) {  // pass 0 warms up (the matrices are cached by now)
    const auto t0 = Clock::now();
    for (size_t i = 0; i < n_pre; ++i) kernels::MatMul(view(i), x.data(), kCols, y.data(), kRows, n_tok, &pool);
    if (pass > 0) prefill.Add(Seconds(t0, Clock::now()));
  }
  rate.prefill_GMACs = static_cast<double>(n_pre) * kRows * kCols * n_tok / prefill.best / 1e9;
  rate.prefill_spread = prefill.Spread();
  return rate;
}

// Microseconds per MatMul call beyond its work (dispatch to the pool, join): the intercept of the
// per-call time of two cache-resident matrices of 512 and 2048 rows (clamped at 0).
Result<double> MeasureCallOverhead(ThreadPool& pool) {
  constexpr int64_t kCols = 256, kSmall = 512, kLarge = 2048;
  const gguf::TensorType type = gguf::TensorType::kQ8_0;
  const uint64_t row_bytes = *gguf::RowBytes(type, kCols);
  std::vector<float> x(kCols, 0.5f), y(kLarge);
  std::vector<uint8_t> w(kLarge * row_bytes);
  for (int64_t r = 0; r < kLarge; ++r)
    QM_RETURN_IF_ERROR(quant::QuantizeRow(type, x.data(), w.data() + r * row_bytes, kCols));
  auto per_call = [&](int64_t rows) {
    kernels::WeightView v;
    v.type = type;
    v.data = w.data();
    v.rows = rows;
    v.cols = kCols;
    v.row_bytes = row_bytes;
    constexpr int kCalls = 100;
    double best = 1e30;
    for (int pass = 0; pass < 5; ++pass) {
      const auto t0 = Clock::now();
      for (int i = 0; i < kCalls; ++i) kernels::MatMul(v, x.data(), kCols, y.data(), kLarge, 1, &pool);
      best = std::min(best, Seconds(t0, Clock::now()) / kCalls);
    }
    return best;
  };
  const double small = per_call(kSmall), large = per_call(kLarge);
  const double per_row = (large - small) / static_cast<double>(kLarge - kSmall);
  return std::max(0.0, small - per_row * kSmall) * 1e6;
}

}  // namespace

nlohmann::json MachineSpeed::ToJson() const {
  nlohmann::json t = nlohmann::json::object();
  const std::vector<std::string> suspicious = SuspiciousTypes();
  for (const auto& [name, r] : types) {
    t[name] = {{"decode_GBps", r.decode_GBps}, {"prefill_GMACs", r.prefill_GMACs},
               {"decode_spread", r.decode_spread}, {"prefill_spread", r.prefill_spread}};
    if (std::find(suspicious.begin(), suspicious.end(), name) != suspicious.end()) t[name]["suspicious"] = true;
  }
  return {{"machine", machine}, {"threads", threads}, {"read_GBps", read_GBps},
          {"call_overhead_us", call_overhead_us}, {"types", t},
          {"measured_unix", measured_unix}, {"load_1m", load_1m}, {"cpus", cpus},
          {"spread", spread}, {"busy", Busy()}, {"binary", binary}};
}

std::string MachineSpeed::ExpiredReason(int64_t now_unix, const std::string& current_binary) const {
  const int64_t age = now_unix - measured_unix;
  if (age < 0) return "dated in the future (the clock moved)";
  if (Busy() && age > 3600) return "taken on a busy machine over an hour ago";
  if (age > 7 * 86400) return "older than 7 days";
  if (!current_binary.empty() && binary != current_binary) return "taken by another build of qwenmux";
  return "";
}

std::vector<std::string> MachineSpeed::SuspiciousTypes() const {
  std::vector<std::string> out;
  for (const auto& [name, r] : types)
    if (read_GBps > 0 && r.decode_GBps > read_GBps) out.push_back(name);
  return out;
}

Result<MachineSpeed> MachineSpeed::FromJson(const nlohmann::json& j) {
  MachineSpeed s;
  try {
    s.machine = j.at("machine").get<std::string>();
    s.threads = j.at("threads").get<size_t>();
    s.read_GBps = j.at("read_GBps").get<double>();
    s.measured_unix = j.value("measured_unix", int64_t{0});
    s.call_overhead_us = j.value("call_overhead_us", 0.0);
    s.load_1m = j.value("load_1m", -1.0);
    s.cpus = j.value("cpus", size_t{0});
    s.spread = j.value("spread", 0.0);
    s.binary = j.value("binary", std::string());
    if (!(s.call_overhead_us >= 0)) return Error(StatusCode::kCorrupt, "plan speed cache: negative call overhead");
    for (const auto& [name, r] : j.at("types").items()) {
      TypeRate tr{r.at("decode_GBps").get<double>(), r.at("prefill_GMACs").get<double>(),
                  r.value("decode_spread", 0.0), r.value("prefill_spread", 0.0)};
      if (!(tr.decode_GBps >= 0) || !(tr.prefill_GMACs >= 0))
        return Error(StatusCode::kCorrupt, "plan speed cache: negative rate for {}", name);
      s.types[name] = tr;
    }
  } catch (const nlohmann::json::exception& e) {
    return Error(StatusCode::kCorrupt, "plan speed cache: {}", e.what());
  }
  return s;
}

std::string MachineKey(size_t threads) {
  if (threads == 0) threads = ThreadPool::DefaultThreadCount();
  return fmt::format("{} | {} cpus | {} threads", CpuModelName(), std::thread::hardware_concurrency(), threads);
}

Result<MachineSpeed> MeasureMachineSpeed(const MeasureOptions& o) {
  MachineSpeed s;
  s.cpus = std::max(1u, std::thread::hardware_concurrency());
  s.load_1m = LoadAverage();
  s.threads = o.threads ? o.threads : ThreadPool::DefaultThreadCount();
  s.machine = MachineKey(s.threads);
  s.binary = BinaryId();
  // The best of the repeats (a pass can only be slowed down by interference).
  s.read_GBps = MeasureReadBandwidth(static_cast<size_t>(std::max<uint64_t>(o.ring_bytes, 64ull << 20)), s.threads,
                                     std::max(1, o.decode_passes) + 2) / 1e9;
  if (o.kernels) {
    ThreadPool pool(s.threads);
    QM_ASSIGN_OR_RETURN(s.call_overhead_us, MeasureCallOverhead(pool));
    for (gguf::TensorType t : o.types) {
      QM_ASSIGN_OR_RETURN(TypeRate r, MeasureType(t, o, pool));
      s.types[gguf::TensorTypeName(t)] = r;
      s.spread = std::max({s.spread, r.decode_spread, r.prefill_spread});
    }
  }
  // The load average lags: read it again after the measurement and keep the larger (our own
  // threads add to it, but only while they ran, and it averages over a minute).
  if (const double after = LoadAverage(); after > s.load_1m) s.load_1m = after;
  s.measured_unix = static_cast<int64_t>(std::time(nullptr));
  return s;
}

std::string BinaryId() {
  struct stat st {};
  if (::stat("/proc/self/exe", &st) != 0) return "";  // follows the link to the program
  return fmt::format("{}-{}.{:09}", static_cast<int64_t>(st.st_size), static_cast<int64_t>(st.st_mtim.tv_sec),
                     static_cast<int64_t>(st.st_mtim.tv_nsec));
}

std::string DefaultCacheDir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/qwenmux";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/qwenmux";
}

std::string SpeedCachePath(const std::string& dir) { return dir + "/plan-speed.json"; }

Result<std::optional<MachineSpeed>> LoadSpeedCache(const std::string& path, const std::string& machine) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::optional<MachineSpeed>();
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return Error(StatusCode::kCorrupt, "plan speed cache {}: not a JSON object (delete it or run plan --measure)", path);
  auto it = j.find(machine);
  if (it == j.end()) return std::optional<MachineSpeed>();
  Result<MachineSpeed> s = MachineSpeed::FromJson(*it);
  if (!s.ok()) return s.status().WithContext(path);
  return std::optional<MachineSpeed>(std::move(*s));
}

Status SaveSpeedCache(const std::string& path, const MachineSpeed& speed) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return Error(StatusCode::kIo, "plan speed cache: cannot create {}: {}", path, ec.message());
  nlohmann::json all = nlohmann::json::object();
  {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
      if (!j.is_discarded() && j.is_object()) all = std::move(j);  // a corrupt file is replaced
    }
  }
  all[speed.machine] = speed.ToJson();
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << all.dump(2) << "\n";
    if (!out) return Error(StatusCode::kIo, "plan speed cache: cannot write {}", tmp);
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Error(StatusCode::kIo, "plan speed cache: cannot rename to {}: {}", path, ec.message());
  return Status::Ok();
}

std::vector<TensorCost> ModelCosts(std::span<const gguf::TensorInfo> tensors, uint32_t n_expert, uint32_t n_expert_used) {
  bool has_output = false;
  for (const gguf::TensorInfo& t : tensors) has_output = has_output || t.name == "output.weight";
  std::vector<TensorCost> out;
  for (const gguf::TensorInfo& t : tensors) {
    if (t.n_dims < 2) continue;  // norms
    TensorCost c;
    c.type = t.type;
    c.bytes_per_token = t.n_bytes;
    c.macs_per_token = t.n_elements();
    if (t.name == "token_embd.weight" && has_output) continue;  // a row lookup, not a matmul
    c.head = t.name == "output.weight" || t.name == "token_embd.weight" || t.name == "cls.output.weight";
    if (t.name.find("_exps.") != std::string::npos && n_expert > 0) {
      c.bytes_per_token = t.n_bytes / n_expert * n_expert_used;
      c.macs_per_token = t.n_elements() / n_expert * n_expert_used;
      c.calls = n_expert_used;
    }
    out.push_back(c);
  }
  return out;
}

SpeedEstimate EstimateSpeed(std::span<const TensorCost> costs, const MachineSpeed* speed) {
  SpeedEstimate e;
  if (!speed || costs.empty()) return e;
  uint64_t bytes = 0;
  for (const TensorCost& c : costs) bytes += c.bytes_per_token;
  if (speed->types.empty()) {
    if (speed->read_GBps > 0 && bytes > 0) {
      e.decode_tok_s = speed->read_GBps * 1e9 * kAssumedDecodeEfficiency / static_cast<double>(bytes);
      e.source = "bandwidth";
    }
    return e;
  }
  // Types not measured (F32 router tensors, ...): the bandwidth at the assumed efficiency, and
  // the slowest measured prefill rate.
  double slowest_prefill = 1e30;
  for (const auto& [name, r] : speed->types)
    if (r.prefill_GMACs > 0) slowest_prefill = std::min(slowest_prefill, r.prefill_GMACs);
  const double fallback_decode = speed->read_GBps * kAssumedDecodeEfficiency;
  double decode_s = 0, prefill_s = 0;
  for (const TensorCost& c : costs) {
    auto it = speed->types.find(gguf::TensorTypeName(c.type));
    const double d = it != speed->types.end() && it->second.decode_GBps > 0 ? it->second.decode_GBps : fallback_decode;
    const double p = it != speed->types.end() && it->second.prefill_GMACs > 0 ? it->second.prefill_GMACs : slowest_prefill;
    if (d <= 0 || p >= 1e30) return e;
    decode_s += static_cast<double>(c.bytes_per_token) / (d * 1e9) + c.calls * speed->call_overhead_us * 1e-6;
    if (!c.head) prefill_s += static_cast<double>(c.macs_per_token) / (p * 1e9);
  }
  e.decode_tok_s = decode_s > 0 ? 1.0 / decode_s : 0;
  e.prefill_tok_s = prefill_s > 0 ? 1.0 / prefill_s : 0;
  e.source = "measured";
  return e;
}

}  // namespace qwenmux::orchestrator
