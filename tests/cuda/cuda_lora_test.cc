// LoRA adapters on the GPU: a batch mixing two adapters, no adapter and one adapter at half
// scale (prefill and decode steps, the decode through the matrix-vector path) gives the CPU
// forward's logits for the same batch (the CPU's mixed batches equal their runs alone:
// tests/engine), within the backend bars of cuda_backend_test.cc; the adapter moves the logits
// far more than that. Skips without a CUDA device.
#include <iostream>
#include <random>

#include "base/thread_pool.h"
#include "cuda/cuda_models.h"
#include "cuda/cuda_test_util.h"
#include "engine/lora.h"
#include "gguf/gguf.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/forward.h"
#include "runtime/kv_cache.h"

namespace qwenmux::runtime {
namespace {

TEST(CudaLora, MixedAdapterBatchMatchesTheCpu) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  const std::string path = SynthModelFile("qwen3-0.6b", "q8_0", 2);
  auto f = gguf::File::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  auto cfg = model::ReadConfig(*f);
  ASSERT_TRUE(cfg.ok());
  auto w = BindWeights(*f, *cfg);
  ASSERT_TRUE(w.ok());
  auto bind = [&](uint64_t seed) {
    auto t = engine::SynthLora(*f, *cfg, 16, 32.0f, seed);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    auto a = engine::BindLora(std::move(*t), *f, *cfg);
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return std::move(*a);
  };
  const auto a1 = bind(5), a2 = bind(6);
  ASSERT_TRUE(a1 && a2);

  const int32_t n_ctx = 64, n_seq = 4;
  auto gpu = MakeCudaBackend(*cfg, *w, CudaBackendOptions{0, n_ctx, n_seq, 64});
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  ThreadPool pool(0);
  auto kv = KvCache::Create(*cfg, n_ctx, n_seq);
  ASSERT_TRUE(kv.ok());
  CpuForward cpu(*cfg, *w, &pool);

  // Sequence s: its adapter and scale.
  const LoraAdapter* adapter[n_seq] = {a1.get(), nullptr, a1.get(), a2.get()};
  const float scale[n_seq] = {1.0f, 1.0f, 0.5f, 1.0f};
  auto entry = [&](int32_t tok, int32_t pos, int32_t seq) {
    BatchEntry e{tok, pos, seq, true};
    e.lora = adapter[seq];
    e.lora_scale = scale[seq];
    return e;
  };
  const int64_t V = cfg->n_vocab;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(V) - 1);
  Compare cmp;
  std::vector<float> last;
  auto run_both = [&](const std::vector<BatchEntry>& b) {
    std::vector<float> lg(b.size() * V), lc(b.size() * V);
    Status sg = (*gpu)->Run(b, lg.data(), nullptr);
    ASSERT_TRUE(sg.ok()) << sg.ToString();
    Status sc = cpu.Run(b, *kv, lc.data(), nullptr);
    ASSERT_TRUE(sc.ok()) << sc.ToString();
    for (size_t r = 0; r < b.size(); ++r) cmp.Add(lg.data() + r * V, lc.data() + r * V, V);
    last = std::move(lc);
  };
  // Prefill: 9, 6, 9 and 7 tokens in one batch (31 tokens: the matrix-vector path), the same
  // tokens for sequences 0 and 1 so that the adapter's effect shows.
  std::vector<BatchEntry> b;
  int32_t len[n_seq] = {9, 6, 9, 7};
  std::vector<int32_t> prompt;
  for (int32_t p = 0; p < 9; ++p) prompt.push_back(tok(rng));
  for (int32_t s = 0; s < n_seq; ++s) {
    for (int32_t p = 0; p < len[s]; ++p) b.push_back(entry(s <= 1 ? prompt[p] : tok(rng), p, s));
  }
  run_both(b);
  if (HasFatalFailure()) return;
  // The adapter's effect on the CPU's logits at the last common position (5) of sequences 0 and 1.
  double diff = 0, ref = 0;
  for (int64_t i = 0; i < V; ++i) {
    const double d = last[5 * V + i] - last[(9 + 5) * V + i];
    diff += d * d;
    ref += static_cast<double>(last[(9 + 5) * V + i]) * last[(9 + 5) * V + i];
  }
  const double effect = std::sqrt(diff / ref);
  // Decode steps, every sequence in each step, CPU's greedy choice fed to both.
  auto argmax = [&](const float* r) { return static_cast<int32_t>(std::max_element(r, r + V) - r); };
  std::vector<size_t> last_row(n_seq);
  size_t row = 0;
  for (int32_t s = 0; s < n_seq; ++s) row += len[s], last_row[s] = row - 1;
  int32_t next[n_seq];
  for (int32_t s = 0; s < n_seq; ++s) next[s] = argmax(last.data() + last_row[s] * V);
  for (int step = 0; step < 5; ++step) {
    std::vector<BatchEntry> d;
    for (int32_t s = 0; s < n_seq; ++s) d.push_back(entry(next[s], len[s]++, s));
    run_both(d);
    if (HasFatalFailure()) return;
    for (int32_t s = 0; s < n_seq; ++s) next[s] = argmax(last.data() + s * V);
  }
  // One sequence with its adapter alone (batch 1: the step the graph would take without one).
  run_both({entry(next[0], len[0]++, 0)});
  if (HasFatalFailure()) return;
  const double top1 = static_cast<double>(cmp.top1) / cmp.rows;
  std::cout << "lora: rows=" << cmp.rows << " top1=" << top1 << " logit_rel_rms=" << cmp.rel_rms()
            << " clear_misses=" << cmp.clear_misses << " adapter_effect_rel=" << effect << " device_mib="
            << (*gpu)->memory().device_bytes / 1048576 << "\n";
  EXPECT_GT(effect, 0.2) << "the synthesized adapter barely changes the logits: the test would not see it ignored";
  EXPECT_GE(top1, 0.90);
  EXPECT_EQ(cmp.clear_misses, 0);
  EXPECT_LE(cmp.rel_rms(), 0.05);
}

}  // namespace
}  // namespace qwenmux::runtime
