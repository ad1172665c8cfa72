// The LoRA trainer behind `qwenmux finetune train`: data (data.h), a fresh or given adapter,
// AdamW steps over seeded per-epoch shuffles of the training split, validation loss every
// eval interval, checkpoints with exact resume, and the adapter written as GGUF (the layout the
// engine's --lora / --adapter loads).
//
// Exact resume: a step's batch and dropout masks are functions of (seed, step) only, and a
// checkpoint holds the step, the f32 master weights and both AdamW moments, written to a
// temporary file and renamed (a kill -9 leaves the previous checkpoint whole). A resumed run
// therefore repeats the uninterrupted run's loss curve (bitwise with the same thread count).
//
// Thread-safety: one Train at a time per pool.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "base/thread_pool.h"
#include "finetune/data.h"
#include "finetune/optim.h"

namespace qwenmux::finetune {

struct TrainOptions {
  std::string base;        // base model GGUF (any type the engine runs)
  std::string data;        // JSONL
  std::string valid_data;  // JSONL of validation examples ("" = a share of `data`, data_options.valid_fraction)
  std::string out;         // adapter GGUF to write
  std::string peft_dir;    // also a PEFT directory ("" = none)
  std::string init;        // initial adapter ("" = a fresh one: rank, alpha, targets below)
  std::string checkpoint;  // checkpoint file ("" = out + ".ckpt")
  int64_t checkpoint_every = 0;  // 0: only when stopping early
  bool resume = false;           // continue from the checkpoint when it exists
  int64_t stop_after = 0;        // stop once this many steps are done (checkpoint written)
  int32_t rank = 8;
  float alpha = 16;
  float dropout = 0;
  bool checkpointing = false;  // activation checkpointing (train_model.h)
  std::string targets = "all";
  OptimConfig optim;
  int64_t steps = 100;
  double epochs = 0;  // > 0: steps = ceil(epochs · training examples / (batch · accum)), replacing `steps`
  int64_t batch = 4;
  int64_t accum = 1;
  int64_t eval_every = 0;  // 0: at the end only
  int64_t early_stop = 0;  // stop when this many evaluations in a row do not improve the best
                           // validation loss (0: never; counted within one run, not across resumes)
  uint64_t seed = 1;
  DataOptions data_options;
  std::string log_json;    // JSONL of per-step records ("" = none)
  bool exact_match = false;  // report the training examples' exact match at the end
  // Set (from any thread): training stops before its next step, writes the checkpoint (a later
  // run with `resume` continues there) and Train returns kCancelled.
  const std::atomic<bool>* cancel = nullptr;
  // Called with every record log_json gets (each step: step, loss, lr, grad_norm, tokens, plus
  // total_steps and tokens_per_s; each evaluation: step, valid_loss), on Train's thread.
  std::function<void(const nlohmann::json&)> on_record;
};

struct TrainReport {
  int64_t first_step = 0, steps_done = 0;
  std::vector<double> losses;       // per step run here
  double valid_loss = -1;           // last validation loss (-1: no validation split)
  double tokens_per_s = 0, seconds = 0;
  double exact_match = -1;          // fraction of training examples fully right (-1: not asked)
  double exact_match_before = -1;   // the same with the starting adapter
  bool stopped_early = false;       // --stop-after: checkpoint written, no adapter
  bool early_stopped = false;       // validation stopped improving: adapter written
  Dataset data;

  nlohmann::json ToJson() const;
};

// Progress lines go to `progress` (may be null). Errors: kInvalidArgument (options, data),
// kNotFound (files), kCancelled (o.cancel was set; the checkpoint holds the last step).
Result<TrainReport> Train(const TrainOptions& o, ThreadPool* pool, std::FILE* progress);

// Fraction of `examples` whose every label is the argmax of its logits (teacher forced: the same
// as greedy decoding reproducing the answer).
Result<double> ExactMatch(TrainModel& m, LoraParams& p, const std::vector<Example>& examples);

// Checkpoints: step + master weights + AdamW moments.
Status SaveCheckpoint(const std::string& path, int64_t step, const LoraParams& p);
// The step a checkpoint file holds (its header only). Errors: kNotFound, kInvalidArgument.
Result<int64_t> CheckpointStep(const std::string& path);
Result<int64_t> LoadCheckpoint(const std::string& path, const model::ModelConfig& c, LoraParams* p);

}  // namespace qwenmux::finetune
