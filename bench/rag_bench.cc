// RAG latency per stage with real-shaped models: rag::Answer over a collection of --chunks
// synthetic chunks (random vectors: retrieval cost does not depend on them), with the query
// rewrite, answer and groundedness score on --gen (Qwen3-1.7B-shaped), the query embedding on
// --embed and the rerank on --rerank. Prints JSON: each stage's ms per run and the median, the
// end-to-end time against the seed's < 2 s target.
// Usage: rag_bench --gen GEN.gguf --embed EMB.gguf --rerank RR.gguf [--chunks 2000] [--runs 2]
//                  [--answer-tokens 64] [--rerank-top 8] [--top 4] [--rewrites 2] [--ctx 4096]
//                  [--threads 0] [--dir /tmp/rag-bench-store]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "rag/rag.h"

namespace {

using namespace qwenmux;

int Fail(const std::string& what) {
  std::fprintf(stderr, "rag_bench: %s\n", what.c_str());
  return 1;
}

double ProcessCpuMs() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string gen_path, embed_path, rerank_path, dir = "/tmp/rag-bench-store";
  int chunks = 2000, runs = 2, rewrites = 2;
  rag::AnswerOptions opt;
  opt.max_answer_tokens = 64;
  opt.retrieval.rerank_top = 8;
  opt.retrieval.top_n = 4;
  opt.sampler.temperature = 0;
  int32_t ctx = 4096;
  size_t threads = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--gen") gen_path = next();
    else if (a == "--embed") embed_path = next();
    else if (a == "--rerank") rerank_path = next();
    else if (a == "--chunks") chunks = std::stoi(next());
    else if (a == "--runs") runs = std::stoi(next());
    else if (a == "--answer-tokens") opt.max_answer_tokens = std::stoi(next());
    else if (a == "--rerank-top") opt.retrieval.rerank_top = std::stoul(next());
    else if (a == "--top") opt.retrieval.top_n = std::stoul(next());
    else if (a == "--rewrites") rewrites = std::stoi(next());
    else if (a == "--ctx") ctx = std::stoi(next());
    else if (a == "--threads") threads = std::stoul(next());
    else if (a == "--dir") dir = next();
    else return Fail("unknown argument " + a);
  }
  if (gen_path.empty() || embed_path.empty() || rerank_path.empty())
    return Fail("--gen, --embed and --rerank GGUF files are required");
  opt.max_rewrites = rewrites;

  const size_t n_threads = threads ? threads : std::thread::hardware_concurrency();
  engine::LoadOptions lg, le, lr;
  lg.n_ctx = ctx;
  le.n_ctx = 512;
  lr.n_ctx = 1024;
  lr.n_seq = static_cast<int32_t>(std::max<size_t>(1, opt.retrieval.rerank_top));
  lr.n_batch = 2048;
  lg.n_threads = le.n_threads = lr.n_threads = threads;
  auto gen = engine::Model::Load(gen_path, lg);
  if (!gen.ok()) return Fail(gen.status().ToString());
  auto emb = engine::Model::Load(embed_path, le);
  if (!emb.ok()) return Fail(emb.status().ToString());
  auto rr = engine::Model::Load(rerank_path, lr);
  if (!rr.ok()) return Fail(rr.status().ToString());
  auto embedder = rag::Embedder::Create(emb->get(), embed_path);
  if (!embedder.ok()) return Fail(embedder.status().ToString());

  // The collection: English-like chunks of ~150 tokens with random unit vectors.
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  auto store = rag::Store::Open(dir);
  if (!store.ok()) return Fail(store.status().ToString());
  auto coll = (*store)->OpenCollection("bench", embedder->id(), embedder->dim());
  if (!coll.ok()) return Fail(coll.status().ToString());
  static const char* kWords[] = {"the", "river", "engine", "memory", "budget", "answers", "document", "weather",
                                 "energy", "protocol", "garden", "history", "kernel", "cache", "router", "token",
                                 "turbine", "glacier", "otter", "espresso", "marathon", "volcano", "octopus", "tea"};
  std::mt19937 g(3);
  std::normal_distribution<float> nd;
  for (int d = 0; d * 10 < chunks; ++d) {
    std::vector<rag::NewChunk> cs;
    for (int c = 0; c < 10 && d * 10 + c < chunks; ++c) {
      std::string text;
      for (int w = 0; w < 110; ++w) text += std::string(kWords[g() % std::size(kWords)]) + (w % 12 == 11 ? ". " : " ");
      std::vector<float> v(static_cast<size_t>(embedder->dim()));
      double s = 0;
      for (float& x : v) x = nd(g), s += static_cast<double>(x) * x;
      for (float& x : v) x = static_cast<float>(x / std::sqrt(s));
      cs.push_back({"Section", std::move(text), 150, std::move(v)});
    }
    rag::DocumentRecord doc;
    doc.doc_id = std::to_string(d);
    doc.source = "synthetic/doc" + doc.doc_id + ".txt";
    doc.title = "Document " + doc.doc_id;
    doc.format = "txt";
    doc.content_hash = doc.doc_id;
    auto r = (*store)->PutDocument(*coll, doc, cs);
    if (!r.ok()) return Fail(r.status().ToString());
  }
  if (auto v = (*store)->Vectors(*coll); !v.ok()) return Fail(v.status().ToString());

  rag::RagModels models;
  models.query = gen->get();
  models.embedder = &embedder.value();
  models.reranker = rr->get();
  models.generator = gen->get();
  models.scorer = gen->get();
  const char* questions[] = {"How does the river engine manage its memory budget?",
                             "What does the glacier history say about energy?",
                             "Which protocol does the router use for tokens?"};
  std::map<std::string, std::vector<double>> stage_ms;
  nlohmann::json per_run = nlohmann::json::array();
  for (int r = 0; r < runs; ++r) {
    double first_text_ms = -1;
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = ProcessCpuMs();
    auto res = rag::Answer(**store, "bench", questions[r % 3], models, opt, [&](const rag::AnswerEvent& e) {
      if (e.kind == rag::AnswerEvent::Kind::kText && first_text_ms < 0)
        first_text_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      return true;
    });
    if (!res.ok()) return Fail(res.status().ToString());
    nlohmann::json row = res->ToJson()["timings"];
    row["first_answer_text_ms"] = first_text_ms;
    // Process CPU time / threads: the end-to-end time with the cores to itself (if it scaled).
    row["total_cpu_ms_per_thread"] = (ProcessCpuMs() - c0) / static_cast<double>(n_threads);
    row["context_tokens"] = res->context_tokens;
    row["answer_tokens"] = res->answer_tokens;
    row["queries"] = res->queries.size();
    per_run.push_back(row);
    for (const auto& st : res->timings) stage_ms[st.stage].push_back(st.ms);
    stage_ms["total"].push_back(res->total_ms);
    std::fprintf(stderr, "run %d: %.0f ms\n", r, res->total_ms);
  }
  nlohmann::json med;
  for (const auto& [k, v] : stage_ms) med[k + "_ms"] = Median(v);
  nlohmann::json j{{"bench", "rag"},
                   {"gen", gen_path},
                   {"embed", embed_path},
                   {"rerank", rerank_path},
                   {"threads", n_threads},
                   {"chunks", chunks},
                   {"answer_tokens", opt.max_answer_tokens},
                   {"rerank_top", opt.retrieval.rerank_top},
                   {"top_n", opt.retrieval.top_n},
                   {"rewrites", rewrites},
                   {"runs", per_run},
                   {"median", med},
                   {"target_total_ms", 2000},
                   {"meets_target", Median(stage_ms["total"]) < 2000}};
  std::printf("%s\n", j.dump(2).c_str());
  std::filesystem::remove_all(dir, ec);
  return 0;
}
