// The CUDA backend against the CPU forward on the same file: the shared tiny models and
// synthesized Qwen3 shapes (few layers, real widths) in Q8_0, Q4_K_M and BF16 and a
// synthesized MoE. A prompt (prefill: GEMM path, sliced when longer than n_batch) and greedy
// decode steps of two interleaved sequences (matrix-vector path); top-1 agreement and logit RMS
// difference printed and held to bars. Skips without a CUDA device.
#include <filesystem>
#include <iostream>
#include <random>

#include "base/thread_pool.h"
#include "common/testdata.h"
#include "cuda/cuda_models.h"
#include "cuda/cuda_test_util.h"
#include "gguf/gguf.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/forward.h"
#include "runtime/kv_cache.h"

namespace qwenmux::runtime {
namespace {

struct Case {
  const char* name;
  const char* file;   // a shared test model, or nullptr to synthesize
  const char* shape;  // synthesized shape
  const char* ftype;
  uint32_t layers;
  int32_t n_batch;
  double max_rms;  // bar on the RMS logit difference (relative to the CPU logits' RMS)
};

std::string ModelFile(const Case& c) {
  if (c.file) return qwenmux::testing::ModelPath(c.file);
  return SynthModelFile(c.shape, c.ftype, c.layers);
}

class CudaVsCpu : public ::testing::TestWithParam<Case> {};

TEST_P(CudaVsCpu, LogitsAgree) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  const Case& c = GetParam();
  if (c.file && !std::filesystem::exists(qwenmux::testing::ModelPath(c.file))) {
    GTEST_SKIP() << "test model " << c.file << " not here (the device call carries one at a time)";
  }
  const std::string path = ModelFile(c);
  auto f = gguf::File::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  auto cfg = model::ReadConfig(*f);
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto w = BindWeights(*f, *cfg);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  const int32_t n_ctx = 256;
  auto gpu = MakeCudaBackend(*cfg, *w, CudaBackendOptions{0, n_ctx, 2, c.n_batch});
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  EXPECT_EQ((*gpu)->device(), Device::kCuda);
  EXPECT_GT((*gpu)->memory().device_bytes, 0u);
  std::cout << c.name << ": " << (*gpu)->Describe() << ", " << (*gpu)->memory().device_bytes / 1048576 << " MiB\n";
  ThreadPool pool(0);
  auto kv = KvCache::Create(*cfg, n_ctx, 2);
  ASSERT_TRUE(kv.ok());
  CpuForward cpu(*cfg, *w, &pool);

  const int64_t V = cfg->n_vocab, E = cfg->n_embd;
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(V) - 1);
  Compare cmp, hid;
  auto run_both = [&](const std::vector<BatchEntry>& b, std::vector<float>* cpu_logits) {
    int64_t n_out = 0;
    for (const auto& e : b) n_out += e.output;
    std::vector<float> lg(n_out * V), lc(n_out * V), hg(n_out * E), hc(n_out * E);
    Status sg = (*gpu)->Run(b, lg.data(), hg.data());
    ASSERT_TRUE(sg.ok()) << sg.ToString();
    Status sc = cpu.Run(b, *kv, lc.data(), hc.data());
    ASSERT_TRUE(sc.ok()) << sc.ToString();
    for (int64_t r = 0; r < n_out; ++r) {
      cmp.Add(lg.data() + r * V, lc.data() + r * V, V);
      hid.Add(hg.data() + r * E, hc.data() + r * E, E);
    }
    *cpu_logits = std::move(lc);
  };
  // Prompts: 40 tokens on sequence 0, 9 on sequence 1, one batch, every position an output.
  std::vector<BatchEntry> b;
  for (int32_t p = 0; p < 40; ++p) b.push_back({tok(rng), p, 0, true});
  for (int32_t p = 0; p < 9; ++p) b.push_back({tok(rng), p, 1, true});
  std::vector<float> last;
  run_both(b, &last);
  if (HasFatalFailure()) return;
  int32_t len[2] = {40, 9};
  auto argmax = [&](const float* r) { return static_cast<int32_t>(std::max_element(r, r + V) - r); };
  int32_t next[2] = {argmax(last.data() + 39 * V), argmax(last.data() + 48 * V)};
  // Greedy decode (CPU's choice fed to both), both sequences in each step.
  for (int step = 0; step < 6; ++step) {
    std::vector<BatchEntry> d = {{next[0], len[0], 0, true}, {next[1], len[1], 1, true}};
    run_both(d, &last);
    if (HasFatalFailure()) return;
    ++len[0], ++len[1];
    next[0] = argmax(last.data());
    next[1] = argmax(last.data() + V);
  }
  // Single-sequence steps (batch 1, logits only: the CUDA-graph path of dense models).
  for (int step = 0; step < 3; ++step) {
    std::vector<BatchEntry> d = {{next[0], len[0], 0, true}};
    int64_t before = cmp.rows;
    std::vector<float> lg(V), lc(V);
    Status sg = (*gpu)->Run(d, lg.data(), nullptr);
    ASSERT_TRUE(sg.ok()) << sg.ToString();
    ASSERT_TRUE(cpu.Run(d, *kv, lc.data(), nullptr).ok());
    cmp.Add(lg.data(), lc.data(), V);
    ASSERT_EQ(cmp.rows, before + 1);
    ++len[0];
    next[0] = argmax(lc.data());
  }
  const double top1 = static_cast<double>(cmp.top1) / cmp.rows;
  std::cout << c.name << ": rows=" << cmp.rows << " top1=" << top1 << " logit_rel_rms=" << cmp.rel_rms()
            << " clear_misses=" << cmp.clear_misses << " logit_max_abs=" << cmp.max_abs
            << " hidden_rel_rms=" << hid.rel_rms() << "\n";
  RecordProperty("top1", std::to_string(top1));
  RecordProperty("logit_rel_rms", std::to_string(cmp.rel_rms()));
  // Bars from the first H100 runs (2026-12-07): raw top-1 0.92-1.0 on synthesized shapes, every
  // miss a near-tie.
  EXPECT_GE(top1, 0.90);
  EXPECT_EQ(cmp.clear_misses, 0);
  EXPECT_LE(cmp.rel_rms(), c.max_rms);
  EXPECT_LE(hid.rel_rms(), c.max_rms);
}

INSTANTIATE_TEST_SUITE_P(
    Models, CudaVsCpu,
    ::testing::Values(Case{"tiny_dense", "tiny-dense.q8_0.gguf", nullptr, nullptr, 0, 512, 0.05},
                      Case{"tiny_dense_sliced", "tiny-dense.q8_0.gguf", nullptr, nullptr, 0, 16, 0.05},
                      Case{"tiny_moe", "tiny-moe.q4_k_m.gguf", nullptr, nullptr, 0, 512, 0.10},
                      Case{"qwen3_0_6b_q8_0", nullptr, "qwen3-0.6b", "q8_0", 2, 512, 0.05},
                      Case{"qwen3_0_6b_q4_k_m", nullptr, "qwen3-0.6b", "q4_k_m", 2, 512, 0.05},
                      Case{"qwen3_0_6b_bf16", nullptr, "qwen3-0.6b", "bf16", 2, 512, 0.05},
                      Case{"qwen3_1_7b_q4_k_m", nullptr, "qwen3-1.7b", "q4_k_m", 2, 512, 0.05},
                      Case{"qwen3_30b_a3b_q4_k_m", nullptr, "qwen3-30b-a3b", "q4_k_m", 1, 512, 0.10}),
    [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

TEST(CudaBackend, BadBatchEntriesAreErrors) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  auto f = gguf::File::Open(ModelFile(Case{"small", nullptr, "qwen3-0.6b", "q8_0", 2, 512, 0}));
  ASSERT_TRUE(f.ok());
  auto cfg = model::ReadConfig(*f);
  ASSERT_TRUE(cfg.ok());
  auto w = BindWeights(*f, *cfg);
  ASSERT_TRUE(w.ok());
  auto gpu = MakeCudaBackend(*cfg, *w, CudaBackendOptions{0, 32, 1, 8});
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  std::vector<float> logits(cfg->n_vocab);
  std::vector<BatchEntry> bad_tok = {{static_cast<int32_t>(cfg->n_vocab), 0, 0, true}};
  EXPECT_EQ((*gpu)->Run(bad_tok, logits.data(), nullptr).code(), StatusCode::kInvalidArgument);
  std::vector<BatchEntry> bad_pos = {{1, 32, 0, true}};
  EXPECT_EQ((*gpu)->Run(bad_pos, logits.data(), nullptr).code(), StatusCode::kOutOfRange);
  std::vector<BatchEntry> bad_seq = {{1, 0, 1, true}};
  EXPECT_EQ((*gpu)->Run(bad_seq, logits.data(), nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*gpu)->n_ctx(), 32);
  (*gpu)->set_length(0, 5);
  EXPECT_EQ((*gpu)->length(0), 5);
}

// A pool of 3 blocks of 64 positions shared by 3 sequences: sequences take blocks as they grow,
// a step that finds none free is refused naming the cache (and runs nothing), a sequence cut
// back by set_length returns its blocks, and every logit equals a backend whose pool is full size
// (the block table changes where rows live, not the arithmetic).
TEST(CudaBackend, PagedKvCacheSharesBlocksAndRefusesWhenFull) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  auto f = gguf::File::Open(ModelFile(Case{"small", nullptr, "qwen3-0.6b", "q8_0", 2, 512, 0}));
  ASSERT_TRUE(f.ok());
  auto cfg = model::ReadConfig(*f);
  ASSERT_TRUE(cfg.ok());
  auto w = BindWeights(*f, *cfg);
  ASSERT_TRUE(w.ok());
  CudaBackendOptions full{0, 256, 3, 128}, small = full;
  small.kv_blocks = 3;
  auto a = MakeCudaBackend(*cfg, *w, full);
  auto b = MakeCudaBackend(*cfg, *w, small);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_LT((*b)->memory().device_bytes, (*a)->memory().device_bytes);
  const int64_t V = cfg->n_vocab;
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(V) - 1);
  auto prompt = [&](int32_t seq, int32_t from, int32_t len) {
    std::vector<BatchEntry> e;
    for (int32_t p = from; p < from + len; ++p) e.push_back({tok(rng), p, seq, p == from + len - 1});
    return e;
  };
  // Runs `batch` on both; expects equal last logits (or b's refusal, when refuse is set).
  auto both = [&](const std::vector<BatchEntry>& batch, bool refuse) {
    std::vector<float> la(V), lb(V, -1.0f);
    Status sa = (*a)->Run(batch, la.data(), nullptr);
    ASSERT_TRUE(sa.ok()) << sa.ToString();
    Status sb = (*b)->Run(batch, lb.data(), nullptr);
    if (refuse) {
      EXPECT_EQ(sb.code(), StatusCode::kResourceExhausted) << sb.ToString();
      EXPECT_NE(sb.ToString().find("KV cache is full"), std::string::npos) << sb.ToString();
      return;
    }
    ASSERT_TRUE(sb.ok()) << sb.ToString();
    EXPECT_EQ(la, lb);
  };
  both(prompt(0, 0, 100), false);  // 2 blocks
  both(prompt(1, 0, 50), false);   // the third
  (*a)->set_length(0, 100), (*b)->set_length(0, 100);
  (*a)->set_length(1, 50), (*b)->set_length(1, 50);
  const std::vector<BatchEntry> seq2 = prompt(2, 0, 10);
  {
    std::vector<float> lb(V);
    Status sb = (*b)->Run(seq2, lb.data(), nullptr);
    EXPECT_EQ(sb.code(), StatusCode::kResourceExhausted) << sb.ToString();
    EXPECT_NE(sb.ToString().find("KV cache is full"), std::string::npos) << sb.ToString();
  }
  (*a)->set_length(1, 0), (*b)->set_length(1, 0);  // sequence 1 ends: its block is free again
  both(seq2, false);
  (*a)->set_length(2, 10), (*b)->set_length(2, 10);
  // Sequence 0 decodes on (its blocks untouched by the reuse), then grows into a third block:
  // none is free.
  both({{tok(rng), 100, 0, true}}, false);
  (*a)->set_length(0, 101), (*b)->set_length(0, 101);
  both(prompt(0, 101, 30), true);
  (*a)->set_length(2, 0), (*b)->set_length(2, 0);
  both(prompt(0, 101, 30), false);
}

TEST(CudaBackend, NoDeviceIsAnErrorNotACrash) {
  const auto info = QueryCudaDevice(0);
  auto far = QueryCudaDevice(1000);
  EXPECT_FALSE(far.available);
  EXPECT_FALSE(far.why.empty());
  if (!info.available) {
    std::cout << "no CUDA device: " << info.why << "\n";
    EXPECT_FALSE(info.why.empty());
  } else {
    EXPECT_GT(info.total_bytes, 0u);
    EXPECT_FALSE(info.name.empty());
  }
}

}  // namespace
}  // namespace qwenmux::runtime
