// Retrieval latency at scale: a collection of --chunks synthetic chunks (Zipf-distributed words,
// random unit vectors of --dim dimensions) in a fresh store under --dir, then --queries hybrid
// queries (two common + two content words): BM25 top 50 + HNSW top 50 + reciprocal rank fusion + the top 8 chunks read back.
// Query embedding is not included (it is the embedding model's time; see rag_bench). Prints
// JSON: build times, per-part and total p50/p90/p99 ms, against the target p99 < 20 ms.
// --keep leaves the store in --dir and --reuse queries a store kept by an earlier run of the same
// size (the 100k-chunk HNSW build takes minutes).
// Usage: retrieval_bench [--chunks 100000] [--dim 1024] [--queries 300] [--dir /tmp/rag-retrieval-bench]
//                        [--keep] [--reuse]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "rag/retrieval.h"
#include "rag/store.h"

namespace {

using namespace qwenmux;
using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

// CPU time of this thread: what a query costs when it has a core to itself (the wall-clock
// percentiles include time spent preempted on a busy machine).
double ThreadCpuMs() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(idx);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - static_cast<double>(lo));
}

nlohmann::json Summary(const std::vector<double>& v) {
  return {{"p50", Percentile(v, 0.5)}, {"p90", Percentile(v, 0.9)}, {"p99", Percentile(v, 0.99)}};
}

double LoadAverage() {
  double l[1] = {0};
  return getloadavg(l, 1) == 1 ? l[0] : -1;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "retrieval_bench: %s\n", what.c_str());
  return 1;
}

// A vocabulary of pronounceable pseudo-words, drawn with a Zipf(1) law like natural text.
struct Words {
  std::vector<std::string> vocab;
  std::vector<double> cdf;
  explicit Words(size_t n) {
    std::mt19937 g(7);
    const char* cons = "bcdfghklmnprstvz";
    const char* vow = "aeiou";
    double sum = 0;
    for (size_t i = 0; i < n; ++i) {
      std::string w;
      const int syl = 1 + static_cast<int>(g() % 3);
      for (int s = 0; s < syl; ++s) w += cons[g() % 16], w += vow[g() % 5];
      vocab.push_back(w + std::to_string(i % 97));
      sum += 1.0 / static_cast<double>(i + 1);
      cdf.push_back(sum);
    }
    for (double& c : cdf) c /= sum;
  }
  const std::string& Draw(std::mt19937& g) const {
    const double u = std::uniform_real_distribution<double>(0, 1)(g);
    return vocab[static_cast<size_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin())];
  }
};

std::vector<float> UnitVector(std::mt19937& g, int dim) {
  std::normal_distribution<float> n;
  std::vector<float> v(static_cast<size_t>(dim));
  double s = 0;
  for (float& x : v) x = n(g), s += static_cast<double>(x) * x;
  const float inv = static_cast<float>(1.0 / std::sqrt(s));
  for (float& x : v) x *= inv;
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t n_chunks = 100000;
  int dim = 1024, n_queries = 300;
  std::string dir = "/tmp/rag-retrieval-bench";
  bool keep = false, reuse = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--chunks") n_chunks = std::stoll(next());
    else if (a == "--dim") dim = std::stoi(next());
    else if (a == "--queries") n_queries = std::stoi(next());
    else if (a == "--dir") dir = next();
    else if (a == "--keep") keep = true;
    else if (a == "--reuse") reuse = true, keep = true;
    else return Fail("unknown argument " + a);
  }
  std::error_code ec;
  if (!reuse) std::filesystem::remove_all(dir, ec);
  auto store = rag::Store::Open(dir);
  if (!store.ok()) return Fail(store.status().ToString());
  rag::Store& s = **store;
  auto coll = s.OpenCollection("bench", "synthetic", dim);
  if (!coll.ok()) return Fail(coll.status().ToString());

  // Build: documents of 10 chunks of ~120 words; SQLite + FTS5 first, then the HNSW index built
  // from SQLite in parallel (the repair path a fresh index takes).
  const Words words(20000);
  std::mt19937 g(1);
  const auto t0 = Clock::now();
  const int64_t per_doc = 10;
  const bool built = reuse && s.Stats("bench").ok() && s.Stats("bench")->chunks == n_chunks;
  for (int64_t d = 0; !built && d * per_doc < n_chunks; ++d) {
    std::vector<rag::NewChunk> chunks;
    for (int64_t c = 0; c < per_doc && d * per_doc + c < n_chunks; ++c) {
      std::string text;
      for (int w = 0; w < 120; ++w) text += words.Draw(g) + ' ';
      chunks.push_back({"", std::move(text), 160, UnitVector(g, dim)});
    }
    rag::DocumentRecord doc;
    doc.doc_id = std::to_string(d);
    doc.source = "synthetic/" + doc.doc_id;
    doc.format = "txt";
    doc.content_hash = doc.doc_id;
    auto r = s.PutDocument(*coll, doc, chunks);
    if (!r.ok()) return Fail(r.status().ToString());
  }
  const auto t1 = Clock::now();
  rag::IndexRepair repair;
  auto index = s.Vectors(*coll, &repair);
  if (!index.ok()) return Fail(index.status().ToString());
  const auto t2 = Clock::now();

  // Queries like questions: two words drawn like the text (mostly stop-word-like), two content
  // words drawn uniformly from the vocabulary, and a random vector.
  std::vector<double> bm25_ms, vec_ms, fuse_ms, total_ms, cpu_ms;
  std::mt19937 gq(99);
  for (int q = 0; q < n_queries; ++q) {
    std::string text;
    for (int w = 0; w < 2; ++w) text += words.Draw(gq) + ' ';
    for (int w = 0; w < 2; ++w) text += words.vocab[gq() % words.vocab.size()] + ' ';
    const std::vector<float> qv = UnitVector(gq, dim);
    const double cpu0 = ThreadCpuMs();
    const auto a = Clock::now();
    auto bm = s.SearchBm25(*coll, text, 50);
    const auto b = Clock::now();
    auto vec = s.SearchVector(*coll, qv, 50);
    const auto c = Clock::now();
    if (!bm.ok() || !vec.ok()) return Fail("query failed");
    std::vector<int64_t> l1, l2;
    for (const auto& [id, sc] : *bm) l1.push_back(id);
    for (const auto& [id, sc] : *vec) l2.push_back(id);
    auto fused = rag::FuseRrf({l1, l2}, 60);
    std::vector<int64_t> top;
    for (size_t i = 0; i < fused.size() && i < 8; ++i) top.push_back(fused[i].first);
    auto recs = s.GetChunks(top);
    const auto e = Clock::now();
    cpu_ms.push_back(ThreadCpuMs() - cpu0);
    if (!recs.ok()) return Fail(recs.status().ToString());
    bm25_ms.push_back(Ms(a, b));
    vec_ms.push_back(Ms(b, c));
    fuse_ms.push_back(Ms(c, e));
    total_ms.push_back(Ms(a, e));
  }
  nlohmann::json j{{"bench", "retrieval"},
                   {"chunks", n_chunks},
                   {"dim", dim},
                   {"queries", n_queries},
                   {"threads", std::thread::hardware_concurrency()},
                   {"build_sqlite_fts_s", Ms(t0, t1) / 1000},
                   {"build_hnsw_s", Ms(t1, t2) / 1000},
                   {"indexed_vectors", (*index)->size()},
                   {"bm25_ms", Summary(bm25_ms)},
                   {"hnsw_ms", Summary(vec_ms)},
                   {"fuse_fetch_ms", Summary(fuse_ms)},
                   {"total_ms", Summary(total_ms)},
                   {"total_cpu_ms", Summary(cpu_ms)},
                   {"reused_store", built},
                   {"load_average_1m", LoadAverage()},
                   {"target_p99_ms", 20},
                   {"meets_target_wall", Percentile(total_ms, 0.99) < 20},
                   {"meets_target_cpu", Percentile(cpu_ms, 0.99) < 20}};
  std::printf("%s\n", j.dump(2).c_str());
  if (!keep) std::filesystem::remove_all(dir, ec);
  return 0;
}
