// plan's speed predictions against the engine's measured speed (issue 21 item 16), on a
// synthesized model of a real shape: Qwen3-0.6B's layers and its tied 151,936-token head, 4 of
// its 28 layers, Q8_0 (~230 MB: larger than the caches, as the real file is, so decode reads
// DRAM as it does there).
//
// Robustness on a loaded 2-core CI machine: the calibration (MeasureMachineSpeed, what
// `plan --measure` runs) and the bench (Model::Generate, what `qwenmux bench` runs) run in this
// process one right after the other with the same thread count, so they see the same machine;
// each figure is the best of several runs (interference only slows a run down), and a pair that
// misses is taken again (up to 3 pairs; see the test). Tolerance: the
// prediction must be within a factor of 3 of the measurement, either way, for decode and for
// prefill. That is loose on purpose: the predictions leave out attention, norms, RoPE and
// sampling, and a CI machine's load can change between the two halves; it is tight enough to
// catch a calibration that is off by an order of magnitude (the test checks that an injected
// calibration 10x too fast, and one 10x too slow, fail the same comparison).
//
// The measured figures are printed (JSON) for the record.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "common/testdata.h"
#include "engine/engine.h"
#include "gguf/gguf.h"
#include "model/shapes.h"
#include "orchestrator/plan/speed.h"
#include "quant/synth_model.h"

namespace qwenmux::orchestrator {
namespace {

constexpr double kFactor = 3.0;   // allowed ratio predicted / measured, either way
constexpr size_t kThreads = 2;
constexpr int kRuns = 3;          // bench runs after a warm-up; the best is kept
constexpr int kPromptTokens = 64;
constexpr int kDecodeTokens = 12;

struct Measured {
  double decode_tok_s = 0, prefill_tok_s = 0;
};

// Within kFactor either way: ok, else an error naming the figure and both numbers.
Status CompareWithin(const char* what, double predicted, double measured) {
  if (!(predicted > 0) || !(measured > 0))
    return Error(StatusCode::kInternal, "{}: predicted {:.1f}, measured {:.1f} tok/s", what, predicted, measured);
  const double ratio = predicted / measured;
  if (ratio > kFactor || ratio < 1.0 / kFactor)
    return Error(StatusCode::kOutOfRange, "{}: predicted {:.1f} tok/s, measured {:.1f} (ratio {:.2f}, allowed 1/{} .. {})",
                 what, predicted, measured, ratio, kFactor, kFactor);
  return Status::Ok();
}

Status CompareAll(const SpeedEstimate& e, const Measured& m) {
  QM_RETURN_IF_ERROR(CompareWithin("decode", e.decode_tok_s, m.decode_tok_s));
  return CompareWithin("prefill", e.prefill_tok_s, m.prefill_tok_s);
}

class PlanAccuracy : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    path_ = new std::string(::testing::TempDir() + "/plan-accuracy-0.6b-4l.q8_0.gguf");
    auto shape = model::FindShape("qwen3-0.6b");
    ASSERT_TRUE(shape.ok());
    quant::SynthOptions so;
    so.ftype = quant::FileType::kQ8_0;
    so.vocab_path = qwenmux::testing::ModelPath("qwen3-vocab.gguf");
    so.n_layer = 4;
    so.threads = kThreads;
    Status s = quant::SynthesizeModel(**shape, *path_, so);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  static void TearDownTestSuite() {
    std::filesystem::remove(*path_);
    delete path_;
  }

  // What plan predicts for the file: its tensors' costs at `speed`.
  static SpeedEstimate Predict(const MachineSpeed& speed) {
    auto file = gguf::File::Open(*path_);
    EXPECT_TRUE(file.ok());
    if (!file.ok()) return {};
    std::vector<gguf::TensorInfo> tensors(file->tensors().begin(), file->tensors().end());
    return EstimateSpeed(ModelCosts(tensors, 0, 0), &speed);
  }

  // The calibration, as `plan --measure` takes it, on the weight types of the file.
  static MachineSpeed Calibrate() {
    MeasureOptions o;
    o.threads = kThreads;
    o.ring_bytes = 256ull << 20;
    o.types = {gguf::TensorType::kQ8_0};
    auto m = MeasureMachineSpeed(o);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? *m : MachineSpeed{};
  }

  // The engine on the file: best prefill and decode rates of kRuns greedy generations after a
  // warm-up run.
  static Measured Bench() {
    engine::LoadOptions lo;
    lo.n_ctx = 256;
    lo.n_threads = kThreads;
    lo.device = runtime::DeviceChoice::kCpu;
    auto model = engine::Model::Load(*path_, lo);
    EXPECT_TRUE(model.ok()) << model.status().ToString();
    if (!model.ok()) return {};
    std::vector<int32_t> prompt;
    for (int i = 0; i < kPromptTokens; ++i) prompt.push_back(1000 + 37 * i);
    engine::GenerateOptions g;
    g.sampler.temperature = 0;
    g.max_tokens = kDecodeTokens;
    g.stop_on_eos = false;
    Measured best;
    for (int run = 0; run <= kRuns; ++run) {
      auto r = (*model)->Generate(prompt, g);
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok() || run == 0) continue;
      EXPECT_EQ(static_cast<int>(r->tokens.size()), kDecodeTokens);
      best.prefill_tok_s = std::max(best.prefill_tok_s, kPromptTokens / r->prefill_seconds);
      best.decode_tok_s = std::max(best.decode_tok_s, (r->tokens.size() - 1) / r->decode_seconds);
    }
    return best;
  }

  static std::string* path_;
};

std::string* PlanAccuracy::path_ = nullptr;

TEST_F(PlanAccuracy, PredictionsAreWithinAFactorOfThreeOfTheEngineAndAWrongCalibrationIsNot) {
  // Up to kAttempts (calibration, bench) pairs: another process that takes the cores during one
  // half of a pair and not the other (ctest runs tests side by side) can skew one pair; a wrong
  // model of speed skews them all.
  constexpr int kAttempts = 3;
  MachineSpeed speed;
  Measured got;
  Status s;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    speed = Calibrate();
    got = Bench();
    const SpeedEstimate want = Predict(speed);
    ASSERT_EQ(want.source, "measured");
    ASSERT_TRUE(speed.types.count("q8_0"));
    std::printf("{\"plan_accuracy\": {\"attempt\": %d, \"threads\": %zu, \"load_1m\": %.2f, \"spread\": %.3f, "
                "\"read_GBps\": %.2f, \"q8_0_decode_GBps\": %.2f, \"q8_0_prefill_GMACs\": %.2f, "
                "\"call_overhead_us\": %.2f, \"decode_predicted\": %.1f, \"decode_measured\": %.1f, "
                "\"prefill_predicted\": %.1f, \"prefill_measured\": %.1f}}\n",
                attempt, speed.threads, speed.load_1m, speed.spread, speed.read_GBps, speed.types.at("q8_0").decode_GBps,
                speed.types.at("q8_0").prefill_GMACs, speed.call_overhead_us, want.decode_tok_s, got.decode_tok_s,
                want.prefill_tok_s, got.prefill_tok_s);
    s = CompareAll(want, got);
    if (s.ok()) break;
  }
  ASSERT_TRUE(s.ok()) << s.ToString();
  // The same comparison fails for a calibration 10x too fast or 10x too slow.
  for (double scale : {10.0, 0.1}) {
    MachineSpeed wrong = speed;
    for (auto& [name, r] : wrong.types) {
      r.decode_GBps *= scale;
      r.prefill_GMACs *= scale;
    }
    wrong.call_overhead_us /= scale;
    Status w = CompareAll(Predict(wrong), got);
    EXPECT_FALSE(w.ok()) << "a calibration scaled by " << scale << " passed";
    EXPECT_EQ(w.code(), StatusCode::kOutOfRange) << w.ToString();
  }
}

}  // namespace
}  // namespace qwenmux::orchestrator
