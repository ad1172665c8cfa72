// Structured-generation benchmark. Prints JSON:
//  - per extraction schema, with the full Qwen3 vocabulary (151,936 tokens): the per-token cost
//    of computing the allowed-token mask (GrammarMatcher::ComputeMask), mean and p99, over
//    `--runs` random-logit generations (a random-weight model) on one compiled constraint:
//    "cold" is the first generation (empty mask cache), "all" every generation (the cache
//    warms as it does in a server that reuses a compiled schema). *_cpu_ms use the thread's CPU
//    time (on a machine shared with other jobs it estimates the uncontended cost);
//  - apply_ms: the cost of writing the mask into a logits row (ApplyTokenMask; Apply = both);
//  - compile_ms per schema, vocab_index_ms once;
//  - with --model FILE: end-to-end decode ms/token unconstrained vs constrained (same prompt,
//    same sampler; constrained generations restart until --tokens tokens are decoded), and the
//    slowdown in percent.
// Usage: structured_bench [--vocab qwen3-vocab.gguf] [--runs 20] [--model M.gguf --tokens 64 -t 2]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "gguf/gguf.h"
#include "structured/structured.h"

namespace {

using namespace qwenmux;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

double ThreadCpuMs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

const char* kSchemas[][2] = {
    {"person", R"({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0,
      "maximum": 150}, "email": {"type": "string", "format": "email"}, "city": {"type": "string"}},
      "required": ["name", "age"], "additionalProperties": false})"},
    {"invoice", R"({"type": "object", "properties": {"invoice_number": {"type": "string"}, "date": {"type": "string",
      "format": "date"}, "vendor": {"type": "string"}, "total": {"type": "number", "minimum": 0},
      "currency": {"enum": ["EUR", "USD", "GBP"]}, "lines": {"type": "array", "items": {"type": "object",
      "properties": {"description": {"type": "string"}, "quantity": {"type": "integer"}, "price": {"type": "number"}},
      "required": ["description", "quantity", "price"], "additionalProperties": false}, "maxItems": 4}},
      "required": ["invoice_number", "date", "vendor", "total", "currency", "lines"], "additionalProperties": false})"},
    {"review", R"({"type": "object", "properties": {"sentiment": {"enum": ["positive", "negative", "neutral"]},
      "score": {"type": "number", "minimum": 0, "maximum": 1}, "aspects": {"type": "array", "items": {"type": "string",
      "maxLength": 24}, "maxItems": 5}, "summary": {"type": "string", "maxLength": 120}},
      "required": ["sentiment", "score", "aspects", "summary"], "additionalProperties": false})"},
    {"events", R"({"type": "object", "properties": {"events": {"type": "array", "items": {"type": "object", "properties":
      {"title": {"type": "string"}, "when": {"type": "string", "format": "date-time"}, "location": {"anyOf":
      [{"type": "string"}, {"type": "null"}]}, "attendees": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
      "required": ["title", "when", "location", "attendees"], "additionalProperties": false}, "maxItems": 3}},
      "required": ["events"], "additionalProperties": false})"},
};

struct Stats {
  double mean = 0, p50 = 0, p99 = 0, max = 0;
  size_t n = 0;
};
Stats Summarize(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.n = v.size();
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  s.p50 = v[v.size() / 2];
  s.p99 = v[std::min(v.size() - 1, static_cast<size_t>(std::ceil(0.99 * static_cast<double>(v.size()))) - 1)];
  s.max = v.back();
  return s;
}
json ToJson(const Stats& s) { return {{"mean", s.mean}, {"p50", s.p50}, {"p99", s.p99}, {"max", s.max}, {"n", s.n}}; }

std::string Arg(int argc, char** argv, const char* name, const char* def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  }
  return def;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string vocab_path = Arg(argc, argv, "--vocab", "../shared/testdata/models/qwen3-vocab.gguf");
  const int runs = std::stoi(Arg(argc, argv, "--runs", "20"));
  const std::string model_path = Arg(argc, argv, "--model", "");
  const int tokens = std::stoi(Arg(argc, argv, "--tokens", "64"));
  const int threads = std::stoi(Arg(argc, argv, "-t", "0"));
  auto file = gguf::File::Open(vocab_path);
  if (!file.ok()) {
    std::fprintf(stderr, "%s\n", file.status().ToString().c_str());
    return 1;
  }
  auto tok = tokenizer::Tokenizer::FromGguf(*file);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", tok.status().ToString().c_str());
    return 1;
  }
  json out;
  auto t0 = Clock::now();
  auto vocab = structured::VocabIndex::Build(*tok);
  out["vocab_size"] = vocab->vocab_size();
  out["vocab_index_ms"] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  json per_schema = json::array();
  std::vector<double> all_wall, all_cpu, cold_wall, cold_cpu, apply_wall, apply_cpu;
  for (const auto& [name, text] : kSchemas) {
    t0 = Clock::now();
    auto c = structured::CompileJsonSchema(json::parse(text), vocab);
    const double compile_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (!c.ok()) {
      std::fprintf(stderr, "%s: %s\n", name, c.status().ToString().c_str());
      return 1;
    }
    std::vector<double> wall, cpu, cwall, ccpu;
    structured::TokenMask mask;
    std::vector<float> logits(vocab->vocab_size());
    std::mt19937_64 rng(42);
    std::normal_distribution<float> nd(0.0f, 2.0f);
    int complete = 0;
    for (int r = 0; r < runs; ++r) {
      auto p = std::make_unique<structured::GrammarMatcher>(*c);
      for (int i = 0; i < 2000 && !p->Done(); ++i) {
        for (float& x : logits) x = nd(rng);
        const double c0 = ThreadCpuMs();
        const auto w0 = Clock::now();
        Status s = p->ComputeMask(&mask);
        const double c1 = ThreadCpuMs();
        const auto w1 = Clock::now();
        if (s.ok()) s = structured::ApplyTokenMask(mask, logits);
        if (!s.ok()) {
          std::fprintf(stderr, "%s: %s\n", name, s.ToString().c_str());
          return 1;
        }
        const double w = std::chrono::duration<double, std::milli>(w1 - w0).count(), cc = c1 - c0;
        apply_wall.push_back(std::chrono::duration<double, std::milli>(Clock::now() - w1).count());
        apply_cpu.push_back(ThreadCpuMs() - c1);
        wall.push_back(w);
        cpu.push_back(cc);
        if (r == 0) cwall.push_back(w), ccpu.push_back(cc);
        // Temperature-1 draw among the allowed tokens.
        double total = 0;
        for (float x : logits) total += std::isfinite(x) ? std::exp(static_cast<double>(x)) : 0.0;
        double u = std::uniform_real_distribution<double>(0, total)(rng);
        int32_t t = 0;
        for (size_t k = 0; k < logits.size(); ++k) {
          if (!std::isfinite(logits[k])) continue;
          t = static_cast<int32_t>(k);
          u -= std::exp(static_cast<double>(logits[k]));
          if (u <= 0) break;
        }
        if (Status s = p->Accept(t); !s.ok()) {
          std::fprintf(stderr, "%s: %s\n", name, s.ToString().c_str());
          return 1;
        }
        if (vocab->is_eos(t)) break;
      }
      complete += p->Done();
    }
    all_wall.insert(all_wall.end(), wall.begin(), wall.end());
    all_cpu.insert(all_cpu.end(), cpu.begin(), cpu.end());
    cold_wall.insert(cold_wall.end(), cwall.begin(), cwall.end());
    cold_cpu.insert(cold_cpu.end(), ccpu.begin(), ccpu.end());
    per_schema.push_back({{"schema", name},
                          {"compile_ms", compile_ms},
                          {"runs", runs},
                          {"complete", complete},
                          {"tokens", wall.size()},
                          {"mask_ms_all", ToJson(Summarize(wall))},
                          {"mask_cpu_ms_all", ToJson(Summarize(cpu))},
                          {"mask_ms_cold", ToJson(Summarize(cwall))},
                          {"mask_cpu_ms_cold", ToJson(Summarize(ccpu))},
                          {"cache_hits", (*c)->cache_hits()},
                          {"cache_misses", (*c)->cache_misses()}});
  }
  out["schemas"] = per_schema;
  out["mask_ms_all"] = ToJson(Summarize(all_wall));
  out["mask_cpu_ms_all"] = ToJson(Summarize(all_cpu));
  out["mask_ms_cold"] = ToJson(Summarize(cold_wall));
  out["mask_cpu_ms_cold"] = ToJson(Summarize(cold_cpu));
  out["apply_ms"] = ToJson(Summarize(apply_wall));
  out["apply_cpu_ms"] = ToJson(Summarize(apply_cpu));

  if (!model_path.empty()) {
    engine::LoadOptions lo;
    lo.n_ctx = 1024;
    lo.n_threads = static_cast<size_t>(threads);
    auto m = engine::Model::Load(model_path, lo);
    if (!m.ok()) {
      std::fprintf(stderr, "%s\n", m.status().ToString().c_str());
      return 1;
    }
    auto v = structured::VocabIndex::Build((*m)->tokenizer());
    auto c = structured::CompileJsonSchema(json::parse(kSchemas[1][1]), v);
    const auto prompt = (*m)->tokenizer().Encode("Extract the invoice as JSON:");
    auto decode = [&](bool constrained, uint64_t seed, double* secs, int* n) -> Status {
      *secs = 0;
      *n = 0;
      while (*n < tokens) {
        engine::GenerateOptions g;
        g.sampler.temperature = 1.0f;
        g.sampler.seed = seed++;
        g.max_tokens = tokens - *n + 1;
        g.stop_on_eos = !constrained ? false : true;
        std::unique_ptr<engine::LogitProcessor> p;
        if (constrained) {
          p = (*c)->NewProcessor();
          g.processor = p.get();
        }
        QM_ASSIGN_OR_RETURN(engine::GenerateResult r, (*m)->Generate(prompt, g));
        *secs += r.decode_seconds;
        *n += static_cast<int>(r.tokens.size()) - 1;  // decode_seconds covers tokens after the first
        if (r.tokens.size() <= 1) break;
      }
      return Status::Ok();
    };
    double su = 0, sc = 0;
    int nu = 0, nc = 0;
    Status s = decode(false, 1, &su, &nu);
    if (s.ok()) s = decode(true, 1, &sc, &nc);
    // Second pass, order swapped (machine noise).
    double su2 = 0, sc2 = 0;
    int nu2 = 0, nc2 = 0;
    if (s.ok()) s = decode(true, 7, &sc2, &nc2);
    if (s.ok()) s = decode(false, 7, &su2, &nu2);
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
    const double mu = 1e3 * (su + su2) / std::max(1, nu + nu2), mc = 1e3 * (sc + sc2) / std::max(1, nc + nc2);
    out["e2e"] = {{"model", model_path},
                  {"threads", threads},
                  {"unconstrained_ms_per_token", mu},
                  {"constrained_ms_per_token", mc},
                  {"tokens", {nu + nu2, nc + nc2}},
                  {"slowdown_percent", 100.0 * (mc / mu - 1.0)}};
  }
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
