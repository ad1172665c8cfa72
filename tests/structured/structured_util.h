// Shared helpers of the structured-generation tests: the real Qwen3 vocabulary, random walks
// through a constraint (uniformly random logits, i.e. a random-weight model), and the
// independent JSON Schema validator (python3-jsonschema, tests/structured/validate.py).
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "gguf/gguf.h"
#include "structured/structured.h"
#include "tokenizer/tokenizer.h"

namespace qwenmux::structured::testutil {

inline const tokenizer::Tokenizer& Vocab() {
  static const tokenizer::Tokenizer* tok = [] {
    auto f = gguf::File::Open(qwenmux::testing::ModelPath("qwen3-vocab.gguf"));
    if (!f.ok()) std::abort();
    auto t = tokenizer::Tokenizer::FromGguf(*f);
    if (!t.ok()) std::abort();
    return new tokenizer::Tokenizer(std::move(*t));
  }();
  return *tok;
}

inline std::shared_ptr<const VocabIndex> Index() { return VocabIndex::Shared(Vocab()); }

// Drives `p` with random logits (temperature 1 over N(0, 2)) until Done, an end token or
// max_tokens; returns the text of the accepted tokens (special tokens as their text).
struct Walk {
  std::string text;
  int tokens = 0;
  std::vector<int32_t> ids;
  bool done = false;     // Done() or an end-of-sequence token was drawn
  std::string error;
};
inline Walk RandomWalk(engine::LogitProcessor& p, const VocabIndex& v, uint64_t seed, int max_tokens = 400) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> logits(v.vocab_size());
  Walk w;
  for (int i = 0; i < max_tokens; ++i) {
    for (float& x : logits) x = nd(rng);
    if (Status s = p.Apply(logits); !s.ok()) {
      w.error = s.ToString();
      return w;
    }
    // Softmax draw over the finite logits.
    double total = 0;
    for (float x : logits) total += std::isfinite(x) ? std::exp(static_cast<double>(x)) : 0.0;
    double r = std::uniform_real_distribution<double>(0, total)(rng);
    int32_t tok = -1;
    for (size_t k = 0; k < logits.size(); ++k) {
      if (!std::isfinite(logits[k])) continue;
      tok = static_cast<int32_t>(k);
      r -= std::exp(static_cast<double>(logits[k]));
      if (r <= 0) break;
    }
    if (Status s = p.Accept(tok); !s.ok()) {
      w.error = s.ToString();
      return w;
    }
    ++w.tokens;
    w.ids.push_back(tok);
    if (v.is_eos(tok)) {
      w.done = true;
      return w;
    }
    w.text += v.bytes(tok);
    if (p.Done()) {
      w.done = true;
      return w;
    }
  }
  return w;
}

// Validates (schema, text) pairs with python3-jsonschema in one process. Returns one message
// per pair: "" when the text parses as JSON and validates.
inline std::vector<std::string> ValidateWithPython(const std::vector<std::pair<nlohmann::ordered_json, std::string>>& pairs) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = tmp ? tmp : "/tmp";
  const std::string in = dir + "/structured_pairs." + std::to_string(::getpid()) + ".jsonl";
  const std::string out = in + ".out";
  {
    std::ofstream f(in);
    for (const auto& [schema, text] : pairs) f << nlohmann::ordered_json{{"schema", schema}, {"text", text}}.dump() << "\n";
  }
  // The build directory (build/, build-asan/...) sits in the source tree.
  std::filesystem::path script = std::filesystem::path(::qwenmux::testing::QwenmuxBinary()).parent_path().parent_path() / "tests/structured/validate.py";
  if (!std::filesystem::exists(script)) script = "tests/structured/validate.py";
  const std::string cmd = "python3 " + script.string() + " < " + in + " > " + out;
  std::vector<std::string> res;
  if (std::system(cmd.c_str()) != 0) return std::vector<std::string>(pairs.size(), "validator failed to run: " + cmd);
  std::ifstream f(out);
  std::string line;
  while (std::getline(f, line)) res.push_back(line == "ok" ? "" : line);
  if (res.size() != pairs.size()) return std::vector<std::string>(pairs.size(), "validator output has the wrong number of lines");
  std::remove(in.c_str());
  std::remove(out.c_str());
  return res;
}

}  // namespace qwenmux::structured::testutil
