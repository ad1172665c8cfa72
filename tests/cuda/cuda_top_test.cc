// Top lists on the device (sampling without copying whole logits rows back): the selection
// kernel against runtime::SelectTopLogits on rows with many ties and odd widths, and the CUDA
// backend's RunTop against its own Run (prefill rows, sliced batches and CUDA-graph decode
// steps). Skips without a CUDA device.
#include <random>
#include <vector>

#include "cuda/cuda_models.h"
#include "cuda/cuda_test_util.h"
#include "gguf/gguf.h"
#include "runtime/backend.h"
#include "runtime/cuda/cuda_backend.h"

namespace qwenmux::runtime::cuda {
namespace {

TEST(CudaTopLogits, KernelEqualsTheHostSelection) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  std::mt19937 rng(5);
  for (int64_t vocab : {64, 1000, 4096, 4097, 151936}) {
    const int64_t rows = vocab > 5000 ? 3 : 5, ld = vocab + 7;
    std::vector<float> host(static_cast<size_t>(rows * ld), 1e30f);  // the gaps must never be read
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < vocab; ++i) {
        // Few distinct values: ties everywhere, across chunk boundaries too.
        host[r * ld + i] = static_cast<float>(static_cast<int>(rng() % 300) - 150) / 16.0f;
      }
      host[r * ld + rng() % vocab] = -INFINITY;
      if (r == 1) host[r * ld + vocab - 1] = 100.0f;  // the best logit in the last, partial chunk
    }
    DevBuf<float> logits(host);
    DevBuf<uint64_t> scratch(static_cast<size_t>(TopLogitsScratchWords(rows, vocab)));
    DevBuf<DevTop> top(static_cast<size_t>(rows * kDevTop));
    ASSERT_EQ(LaunchTopLogits(logits.p, ld, rows, vocab, scratch.p, top.p, nullptr), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<DevTop> got = top.Read(static_cast<size_t>(rows * kDevTop));
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<TopLogit> want(kDevTop);
      SelectTopLogits(std::span<const float>(host.data() + r * ld, static_cast<size_t>(vocab)), kDevTop, want.data());
      for (int j = 0; j < kDevTop; ++j) {
        ASSERT_EQ(got[r * kDevTop + j].token, want[j].token) << "vocab " << vocab << " row " << r << " rank " << j;
        ASSERT_EQ(got[r * kDevTop + j].logit, want[j].logit) << "vocab " << vocab << " row " << r << " rank " << j;
      }
    }
  }
  DevBuf<float> small(std::vector<float>(63, 0.0f));
  DevBuf<uint64_t> scratch(64);
  DevBuf<DevTop> top(64);
  EXPECT_EQ(LaunchTopLogits(small.p, 63, 1, 63, scratch.p, top.p, nullptr), cudaErrorInvalidValue);
  cudaGetLastError();
}

// RunTop's lists are the top of the very rows Run returns (same kernels up to the LM head), for
// prompt rows, a prompt sliced over n_batch, and single-token decode steps (the CUDA graph).
TEST(CudaTopLogits, RunTopEqualsTheTopOfRunsRows) {
  QWENMUX_REQUIRE_CUDA_DEVICE();
  auto f = gguf::File::Open(SynthModelFile("qwen3-0.6b", "q8_0", 2));
  ASSERT_TRUE(f.ok());
  auto cfg = model::ReadConfig(*f);
  ASSERT_TRUE(cfg.ok());
  auto w = BindWeights(*f, *cfg);
  ASSERT_TRUE(w.ok());
  auto gpu = MakeCudaBackend(*cfg, *w, CudaBackendOptions{0, 128, 2, 24});
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  Backend& b = **gpu;
  ASSERT_TRUE(b.selects_top_on_device());
  const int32_t V = static_cast<int32_t>(cfg->n_vocab);
  auto compare = [&](const std::vector<BatchEntry>& batch, int32_t k, const char* what) {
    size_t n_out = 0;
    for (const BatchEntry& e : batch) n_out += e.output;
    std::vector<float> logits(n_out * V);
    ASSERT_TRUE(b.Run(batch, logits.data(), nullptr).ok()) << what;
    std::vector<TopLogit> top(n_out * k);
    ASSERT_TRUE(b.RunTop(batch, k, top.data()).ok()) << what;
    for (size_t r = 0; r < n_out; ++r) {
      std::vector<TopLogit> want(static_cast<size_t>(k));
      SelectTopLogits(std::span<const float>(logits.data() + r * V, static_cast<size_t>(V)), k, want.data());
      for (int32_t j = 0; j < k; ++j) {
        ASSERT_EQ(top[r * k + j].token, want[j].token) << what << " row " << r << " rank " << j;
        ASSERT_EQ(top[r * k + j].logit, want[j].logit) << what << " row " << r << " rank " << j;
      }
    }
  };
  std::mt19937 rng(2);
  std::vector<BatchEntry> prompt;
  for (int32_t p = 0; p < 40; ++p) {  // two prompts, 40 tokens over n_batch 24: two slices, rows in both
    prompt.push_back({static_cast<int32_t>(rng() % V), p % 20, p / 20, p % 7 == 0 || p % 20 == 19});
  }
  compare(prompt, kMaxTopLogits, "prompt");
  compare(prompt, 3, "prompt, k 3");
  for (int32_t step = 0; step < 6; ++step) {
    const std::vector<BatchEntry> one = {{static_cast<int32_t>(rng() % V), 20 + step, 0, true}};
    compare(one, step % 2 ? 1 : kMaxTopLogits, "decode step");
  }
  std::vector<TopLogit> top(kMaxTopLogits);
  const std::vector<BatchEntry> one = {{1, 26, 0, true}};
  EXPECT_EQ(b.RunTop(one, 0, top.data()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(b.RunTop(one, kMaxTopLogits + 1, top.data()).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qwenmux::runtime::cuda
