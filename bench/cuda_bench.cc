// Batch-1 speed of the CUDA backend on a GGUF file, the llama-bench way: prefill of P prompt
// tokens in one batch (pp), then G greedy decode steps of one token each after it (tg: what
// the engine's steps do when sampling from top lists: the forward, the top list selected on the
// device and copied back, the pick of the next token). tg_logits_tok_s: the same steps copying
// whole logits rows back instead (the host's argmax not timed). Best of R repetitions. Prints
// one JSON line with the card's name.
// With PROFILE=1 in the environment it then prints a second line: the device time of each
// forward step (QWENMUX_CUDA_PROFILE, graphs off) for one prefill of P tokens and, per token, for
// G decode steps, next to the decode wall time per token measured with graphs.
// Usage: cuda_bench MODEL.gguf [P=512] [G=128] [R=3]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/config.h"
#include "orchestrator/manager/memory_estimate.h"
#include "runtime/cuda/cuda_device.h"
#include "runtime/weights.h"
#ifdef QWENMUX_CUDA
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_blas.h"
#include "runtime/cuda/cuda_forward.h"
#endif

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  using namespace qwenmux;
  if (argc < 2) {
    std::fprintf(stderr, "usage: cuda_bench MODEL.gguf [PROMPT=512] [GEN=128] [REPS=3]\n");
    return 2;
  }
  const std::string path = argv[1];
  const int32_t P = argc > 2 ? std::atoi(argv[2]) : 512;
  const int32_t G = argc > 3 ? std::atoi(argv[3]) : 128;
  const int reps = argc > 4 ? std::atoi(argv[4]) : 3;
  const auto info = runtime::QueryCudaDevice(0);
  if (!info.available) {
    std::printf("{\"model\": \"%s\", \"error\": \"no CUDA device: %s\"}\n", path.c_str(), info.why.c_str());
    return 1;
  }
#ifdef QWENMUX_CUDA
  auto f = gguf::File::Open(path);
  if (!f.ok()) return std::fprintf(stderr, "%s\n", f.status().ToString().c_str()), 1;
  auto cfg = model::ReadConfig(*f);
  if (!cfg.ok()) return std::fprintf(stderr, "%s\n", cfg.status().ToString().c_str()), 1;
  auto w = runtime::BindWeights(*f, *cfg);
  if (!w.ok()) return std::fprintf(stderr, "%s\n", w.status().ToString().c_str()), 1;
  const auto t0 = Clock::now();
  auto be = runtime::MakeCudaBackend(*cfg, *w, runtime::CudaBackendOptions{0, P + G + 8, 1, std::max(P, 1)});
  if (!be.ok()) return std::fprintf(stderr, "%s\n", be.status().ToString().c_str()), 1;
  const double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
  auto& b = **be;
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(cfg->n_vocab) - 1);
  std::vector<float> logits(cfg->n_vocab);
  auto fail = [](const Status& s) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    std::exit(1);
  };
  double best_pp = 0, best_tg = 0, best_tg_rows = 0;
  std::vector<runtime::TopLogit> top(runtime::kMaxTopLogits);
  for (int r = 0; r < reps + 1; ++r) {  // the first round warms up
    std::vector<runtime::BatchEntry> batch;
    for (int32_t p = 0; p < P; ++p) batch.push_back({tok(rng), p, 0, p == P - 1});
    auto a = Clock::now();
    if (Status s = b.Run(batch, logits.data(), nullptr); !s.ok()) fail(s);
    const double pp = P / std::chrono::duration<double>(Clock::now() - a).count();
    // Decode as the engine does it: top lists, greedy pick of their first entry (all timed).
    int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    a = Clock::now();
    for (int32_t g = 0; g < G; ++g) {
      runtime::BatchEntry e{next, P + g, 0, true};
      if (Status s = b.RunTop({&e, 1}, runtime::kMaxTopLogits, top.data()); !s.ok()) fail(s);
      next = top[0].token;
    }
    const double tg = G / std::chrono::duration<double>(Clock::now() - a).count();
    // The same steps over again with whole rows: the forward and the logits' copy to the host
    // are timed, the bench's own argmax on the host is not (llama-bench times no sampling).
    double tg_s = 0;
    for (int32_t g = 0; g < G; ++g) {
      next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      runtime::BatchEntry e{next, P + g, 0, true};
      a = Clock::now();
      if (Status s = b.Run({&e, 1}, logits.data(), nullptr); !s.ok()) fail(s);
      tg_s += std::chrono::duration<double>(Clock::now() - a).count();
    }
    if (r > 0 || reps == 0) {
      best_pp = std::max(best_pp, pp), best_tg = std::max(best_tg, tg), best_tg_rows = std::max(best_tg_rows, G / tg_s);
    }
  }
  // The model manager's device-memory estimate for the same load (the 5% bar of the CUDA issue).
  engine::LoadOptions lo;
  lo.n_ctx = P + G + 8;
  lo.n_seq = 1;
  lo.n_batch = std::max(P, 1);
  const double estimate_mib =
      orchestrator::EstimateDeviceMemory(*cfg, model::WeightBytes(*f), lo).total() / 1048576.0;
  const double host_ms = [&] {  // the bench's own argmax per step (not in tg_tok_s)
    auto a = Clock::now();
    int32_t sink = 0;
    for (int i = 0; i < 16; ++i) sink += static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    return std::chrono::duration<double, std::milli>(Clock::now() - a).count() / 16 + (sink == -1);
  }();
  std::string gemm_why;  // what runs the prefill products (CudaForward makes the same choice)
  const bool cublas = runtime::cuda::Blas::Create(nullptr, &gemm_why) != nullptr;
  std::printf("{\"model\": \"%s\", \"gemm\": \"%s\"}\n", path.c_str(), cublas ? "cublas" : ("own: " + gemm_why).c_str());
  std::printf(
      "{\"model\": \"%s\", \"card\": \"%s\", \"n_layer\": %u, \"n_embd\": %u, \"pp\": %d, \"tg\": %d, "
      "\"pp_tok_s\": %.1f, \"tg_tok_s\": %.1f, \"tg_logits_tok_s\": %.1f, \"load_s\": %.2f, \"device_mib\": %.0f, \"weights_file_mib\": %.0f, "
      "\"estimate_mib\": %.0f, \"device_vs_estimate\": %.3f, \"matvec\": \"%s\"}\n",
      path.c_str(), info.name.c_str(), cfg->n_layer, cfg->n_embd, P, G, best_pp, best_tg, best_tg_rows, load_s,
      b.memory().device_bytes / 1048576.0, model::WeightBytes(*f) / 1048576.0, estimate_mib,
      b.memory().device_bytes / 1048576.0 / estimate_mib, std::getenv("QWENMUX_CUDA_MATVEC") ? std::getenv("QWENMUX_CUDA_MATVEC") : "default");
  if (const char* prof = std::getenv("PROFILE"); prof && std::strcmp(prof, "1") == 0) {
    setenv("QWENMUX_CUDA_PROFILE", "1", 1);
    auto pb = runtime::MakeCudaBackend(*cfg, *w, runtime::CudaBackendOptions{0, P + G + 8, 1, std::max(P, 1)});
    if (!pb.ok()) fail(pb.status());
    std::vector<runtime::BatchEntry> batch;
    for (int32_t p = 0; p < P; ++p) batch.push_back({tok(rng), p, 0, p == P - 1});
    if (Status s = (*pb)->Run(batch, logits.data(), nullptr); !s.ok()) fail(s);  // warm-up
    runtime::cuda::CudaForward::ProfileReset();
    if (Status s = (*pb)->Run(batch, logits.data(), nullptr); !s.ok()) fail(s);
    const std::string pp_prof = runtime::cuda::CudaForward::ProfileJson();
    runtime::cuda::CudaForward::ProfileReset();
    auto a = Clock::now();
    for (int32_t g = 0; g < G; ++g) {
      runtime::BatchEntry e{static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()),
                            P + g, 0, true};
      if (Status s = (*pb)->Run({&e, 1}, logits.data(), nullptr); !s.ok()) fail(s);
    }
    const double tg_nograph_ms = std::chrono::duration<double, std::milli>(Clock::now() - a).count() / G;
    std::printf(
        "{\"model\": \"%s\", \"profile\": true, \"tg_wall_ms_per_token_graphs\": %.4f, "
        "\"tg_wall_ms_per_token_profiled\": %.4f, \"host_argmax_ms\": %.4f, \"decode_steps\": %d, "
        "\"pp_steps_ms\": %s, \"tg_steps_ms_total\": %s}\n",
        path.c_str(), 1000.0 / best_tg, tg_nograph_ms, host_ms, G, pp_prof.c_str(),
        runtime::cuda::CudaForward::ProfileJson().c_str());
  }
  return 0;
#else
  return 1;
#endif
}
