// `qwenmux finetune eval`: the base model against base + adapter on a split of a JSONL data set
// (the same split `train` makes with the same seed and validation share): mean label loss,
// perplexity and exact match (every answer token the argmax, teacher forced: what greedy
// decoding reproduces), as JSON and a readable table.
//
// Thread-safety: a free function; `pool` is used inside.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "base/thread_pool.h"
#include "finetune/data.h"

namespace qwenmux::finetune {

struct EvalOptions {
  std::string base, data, lora;
  std::string split = "valid";  // valid, train or all
  DataOptions data_options;
};

struct EvalSide {
  double loss = 0, ppl = 0, exact_match = 0;
};

struct EvalReport {
  std::string split;
  int64_t examples = 0, labels = 0;
  EvalSide base, adapter;

  nlohmann::json ToJson() const;
  std::string ToText() const;
};

Result<EvalReport> RunEval(const EvalOptions& o, ThreadPool* pool);

}  // namespace qwenmux::finetune
