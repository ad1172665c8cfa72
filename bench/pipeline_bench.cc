// Per-stage throughput of the document pipeline on synthesized (shape-accurate, random-weight)
// Qwen3 models, with the same batched calls the pipeline makes (pipeline/model_ops.h):
//   classify  ScoreContinuations over the labels (fast tier: Qwen3-1.7B Q4_K_M)
//   embed     Model::Embed of 256-token chunks (Qwen3-Embedding-0.6B Q8_0)
//   extract   GenerateConstrained with a 6-field schema (measured on the model given; the seed's
//             quality tier, Qwen3-14B Q8_0, does not fit this machine's time: estimated)
// Prints one JSON object: measured numbers on this machine, the seed's targets, and the
// bandwidth-bound estimates for a 400 GB/s machine (M3 Max) from the models' byte sizes.
//
//   build/bench/pipeline_bench [--dir /tmp] [--docs N] [--batch B] [--doc-tokens T] [--gen-tokens G] [--threads N]
//                              [--vocab ../shared/testdata/models/qwen3-vocab.gguf]   (from the project root)
// Models are synthesized into --dir on first use (qwenmux-pipe-<shape>-<type>.gguf).
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/sysinfo.h"
#include "engine/engine.h"
#include "model/shapes.h"
#include "pipeline/model_ops.h"
#include "structured/structured.h"
#include "quant/quantize_model.h"
#include "quant/synth_model.h"

using namespace qwenmux;
using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

double Secs(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

uint64_t FileSize(const std::string& p) {
  struct stat st{};
  return stat(p.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

std::string g_vocab = "../shared/testdata/models/qwen3-vocab.gguf";  // from the project root

std::string Synth(const std::string& dir, const char* shape, const char* type) {
  const std::string path = fmt::format("{}/qwenmux-pipe-{}-{}.gguf", dir, shape, type);
  if (FileSize(path) > 0) return path;
  fmt::print(stderr, "synthesizing {} ...\n", path);
  quant::SynthOptions o;
  o.ftype = *quant::ParseFileType(type);
  o.vocab_path = g_vocab;
  Status s = quant::SynthesizeModel(**model::FindShape(shape), path, o);
  if (!s.ok()) {
    fmt::print(stderr, "synth: {}\n", s.ToString());
    std::exit(1);
  }
  return path;
}

std::unique_ptr<engine::Model> Load(const std::string& path, int32_t n_seq, size_t threads) {
  engine::LoadOptions o;
  o.n_ctx = 1024;
  o.n_seq = n_seq;
  o.n_threads = threads;
  auto m = engine::Model::Load(path, o);
  if (!m.ok()) {
    fmt::print(stderr, "load {}: {}\n", path, m.status().ToString());
    std::exit(1);
  }
  return std::move(m).value();
}

// A document of about `tokens` tokens of plain business prose.
std::vector<int32_t> DocTokens(const tokenizer::Tokenizer& tok, int i, int tokens) {
  std::string text = fmt::format("Invoice INV-{} from Vendor {} GmbH. ", 1000 + i, i);
  while (static_cast<int>(tok.Encode(text).size()) < tokens) {
    text += fmt::format("Line item {} delivered on 2024-0{}-1{}: {} units at {}.50 EUR each. ", text.size() % 97, i % 9 + 1, i % 10,
                        i + 3, 10 + i);
  }
  auto ids = tok.Encode(text);
  ids.resize(static_cast<size_t>(tokens));
  return ids;
}

// Weight bytes of a shape at a quantization (bits per weight as GGUF stores them).
double ShapeBytes(const char* shape, double bits) {
  return static_cast<double>(model::CountParameters(**model::FindShape(shape)).total) * bits / 8.0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/tmp";
  int docs = 8, batch = 4, doc_tokens = 256, gen_tokens = 64;
  size_t threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--docs")) docs = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batch")) batch = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--doc-tokens")) doc_tokens = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--gen-tokens")) gen_tokens = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--vocab")) g_vocab = argv[i + 1];
    else if (!std::strcmp(argv[i], "--threads")) threads = static_cast<size_t>(std::atoll(argv[i + 1]));
  }
  const double kM3MaxBw = 400e9;
  Json out = {{"bench", "pipeline"}, {"cores", std::thread::hardware_concurrency()}, {"docs", docs}, {"batch", batch},
              {"doc_tokens", doc_tokens}};

  // --- classify: fast tier, Qwen3-1.7B Q4_K_M.
  {
    const std::string path = Synth(dir, "qwen3-1.7b", "q4_k_m");
    auto m = Load(path, batch, threads);
    const auto& tok = m->tokenizer();
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < docs; ++i) prompts.push_back(DocTokens(tok, i, doc_tokens));
    std::vector<std::vector<int32_t>> labels;
    for (const char* l : {"invoice", "contract", "report", "other"}) {
      auto ids = tok.Encode(l);
      ids.push_back(*tok.TokenId("<|im_end|>"));
      labels.push_back(ids);
    }
    int64_t tokens = 0;
    (void)pipeline::ScoreContinuations(*m, {prompts[0]}, labels);  // warm-up (page in)
    const auto t0 = Clock::now();
    auto r = pipeline::ScoreContinuations(*m, prompts, labels, &tokens);
    const double s = Secs(t0);
    if (!r.ok()) return std::fprintf(stderr, "%s\n", r.status().ToString().c_str()), 1;
    const double bytes = static_cast<double>(FileSize(path));
    const double flops_per_doc = 2.0 * static_cast<double>(model::CountParameters(**model::FindShape("qwen3-1.7b")).non_embedding) *
                                 static_cast<double>(tokens) / docs;
    // Bandwidth bound: weights are read once per forward call; the label continuations of a
    // batch share calls, so per batch: 1 prefill chunk + 1 call per multi-token label.
    const double calls_per_batch = 1.0 + 4.0;
    out["classify"] = {{"model", "qwen3-1.7b Q4_K_M (synthesized)"},
                       {"measured", true},
                       {"docs_per_min", 60.0 * docs / s},
                       {"tokens_per_second", tokens / s},
                       {"target_docs_per_min", 500},
                       {"gflop_per_doc", flops_per_doc / 1e9},
                       {"achieved_gflops", flops_per_doc * docs / s / 1e9},
                       {"bottleneck", "compute (prefill of every document's tokens: matmuls over the batch)"},
                       {"m3max_bandwidth_bound_docs_per_min", 60.0 * batch / (calls_per_batch * bytes / kM3MaxBw)},
                       {"note", "the bandwidth bound is far above the target; prefill FLOPs decide (see gflop_per_doc)"}};
  }
  // --- embed: Qwen3-Embedding-0.6B Q8_0, 256-token chunks.
  {
    const std::string path = Synth(dir, "qwen3-embedding-0.6b", "q8_0");
    const int ebatch = std::max(batch, 8);
    auto m = Load(path, ebatch, threads);
    std::vector<std::vector<int32_t>> chunks;
    const int n_chunks = docs * 2;
    for (int i = 0; i < n_chunks; ++i) chunks.push_back(DocTokens(m->tokenizer(), i, 255));
    (void)m->Embed({chunks[0]});
    const auto t0 = Clock::now();
    for (int i = 0; i < n_chunks; i += ebatch) {
      std::vector<std::vector<int32_t>> part(chunks.begin() + i, chunks.begin() + std::min(n_chunks, i + ebatch));
      auto r = m->Embed(part);
      if (!r.ok()) return std::fprintf(stderr, "%s\n", r.status().ToString().c_str()), 1;
    }
    const double s = Secs(t0);
    const double bytes = static_cast<double>(FileSize(path));
    const double flops = 2.0 * static_cast<double>(model::CountParameters(**model::FindShape("qwen3-embedding-0.6b")).non_embedding) * 256;
    const double bal_bytes = ShapeBytes("qwen3-8b", 8.5);
    out["embed"] = {{"model", "qwen3-embedding-0.6b Q8_0 (synthesized)"},
                    {"measured", true},
                    {"chunks_per_min", 60.0 * n_chunks / s},
                    {"tokens_per_second", 256.0 * n_chunks / s},
                    {"target_chunks_per_min", 1000},
                    {"gflop_per_chunk", flops / 1e9},
                    {"achieved_gflops", flops * n_chunks / s / 1e9},
                    {"bottleneck", "compute (prefill of 256 tokens per chunk)"},
                    {"m3max_bandwidth_bound_chunks_per_min", 60.0 * ebatch / (bytes / kM3MaxBw)},
                    {"balanced_tier_8b_q8_0", {{"measured", false},
                                               {"gflop_per_chunk", 2.0 * static_cast<double>(model::CountParameters(**model::FindShape("qwen3-8b")).non_embedding) * 256 / 1e9},
                                               {"m3max_bandwidth_bound_chunks_per_min", 60.0 * ebatch / (bal_bytes / kM3MaxBw)}}}};
  }
  // --- extract: constrained generation, measured on the fast-tier file; 14B estimated.
  {
    const std::string path = Synth(dir, "qwen3-1.7b", "q4_k_m");
    auto m = Load(path, batch, threads);
    const auto schema = Json::parse(R"({"type": "object", "properties": {
        "invoice_number": {"type": "string", "maxLength": 16}, "vendor": {"type": "string", "maxLength": 24},
        "date": {"type": "string", "maxLength": 12}, "currency": {"type": "string", "enum": ["USD", "EUR", "GBP", "other"]},
        "total": {"type": "number"}, "paid": {"type": "boolean"}}})");
    auto t = structured::CompileJsonSchema(schema, structured::VocabIndex::Shared(m->tokenizer()));
    if (!t.ok()) return std::fprintf(stderr, "%s\n", t.status().ToString().c_str()), 1;
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < docs; ++i) prompts.push_back(DocTokens(m->tokenizer(), i, doc_tokens));
    std::vector<std::unique_ptr<engine::LogitProcessor>> procs;
    for (int i = 0; i < docs; ++i) procs.push_back((*t)->NewProcessor());
    int64_t tokens = 0;
    const auto t0 = Clock::now();
    auto r = pipeline::GenerateConstrained(*m, prompts, std::move(procs), gen_tokens, &tokens);
    const double s = Secs(t0);
    if (!r.ok()) return std::fprintf(stderr, "%s\n", r.status().ToString().c_str()), 1;
    int64_t generated = 0;
    for (const auto& o : *r) generated += static_cast<int64_t>(o.tokens.size());
    const double bytes = static_cast<double>(FileSize(path));
    const double gen_per_doc = static_cast<double>(generated) / docs;
    const double q14 = ShapeBytes("qwen3-14b", 8.5);
    // Bandwidth bound per doc at batch B: decode steps read the weights once per step for the
    // whole batch; prefill reads them once per n_batch (512) tokens.
    auto bw_docs_per_min = [&](double wbytes, int b) {
      const double steps = gen_per_doc;  // per batch of b docs
      const double prefill_calls = std::ceil(static_cast<double>(doc_tokens) * b / 512.0);
      return 60.0 * b / ((steps + prefill_calls) * wbytes / kM3MaxBw);
    };
    const double flops14 = 2.0 * static_cast<double>(model::CountParameters(**model::FindShape("qwen3-14b")).non_embedding) *
                           (doc_tokens + gen_per_doc);
    out["extract"] = {{"model", "qwen3-1.7b Q4_K_M (synthesized; stands in for the quality tier)"},
                      {"measured", true},
                      {"docs_per_min", 60.0 * docs / s},
                      {"tokens_per_second", tokens / s},
                      {"generated_tokens_per_doc", gen_per_doc},
                      {"complete", std::count_if(r->begin(), r->end(), [](const auto& o) { return o.complete; })},
                      {"bottleneck", "prefill compute, then decode: weight bandwidth per step shared by the batch"},
                      {"m3max_bandwidth_bound_docs_per_min_1.7b", bw_docs_per_min(bytes, batch)},
                      {"quality_tier_14b_q8_0", {{"measured", false},
                                                 {"weight_gb", q14 / 1e9},
                                                 {"target_docs_per_min", 100},
                                                 {"gflop_per_doc", flops14 / 1e9},
                                                 {"m3max_bandwidth_bound_docs_per_min_batch1", bw_docs_per_min(q14, 1)},
                                                 {"m3max_bandwidth_bound_docs_per_min_batch8", bw_docs_per_min(q14, 8)},
                                                 {"m3max_bandwidth_bound_docs_per_min_batch32", bw_docs_per_min(q14, 32)}}}};
  }
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
