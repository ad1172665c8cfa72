// qwenmux bench MODEL.gguf [-t THREADS] [-p 512] [-n 64] [--json]
// Prefill of p random tokens, then n greedy decode steps; prints tokens/s, achieved weight-read
// GB/s during decode, the machine's measured read bandwidth with the same threads, and peak RSS.
// With --lora FILE[:SCALE], the same runs with the adapter side by side ("lora" in the JSON:
// decode/prefill tok/s, the ratio to the base, the adapter's load time); --lora-seqs N adds N
// concurrent sequences sharing the adapter against N sequences with N different adapters.
#include <chrono>
#include <memory>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/sysinfo.h"
#include "commands.h"
#include "model_ref_flag.h"
#include "engine_flags.h"
#include "engine/batch.h"
#include "runtime/cpu_profile.h"
#include "runtime/kv_cache.h"

namespace qwenmux::apps {

namespace {

struct Args {
  std::string model, models_dir;
  int32_t n_prompt = 512, n_gen = 64, reps = 1;
  bool json = false, no_bw = false, profile = false;
  engine::LoadOptions load;
  LoraFlag lora;
  int32_t lora_seqs = 0;
};

// runtime::CpuProfileJson's totals per token: for decode and prefill, each phase's milliseconds per
// token, its share of the timed total, and for the matrix phases the weight GB/s it achieved.
nlohmann::json ProfileReport(const nlohmann::json& totals) {
  nlohmann::json out;
  for (const char* part : {"decode", "prefill"}) {
    const nlohmann::json& t = totals.at(part);
    const double tokens = t.at("tokens").get<double>();
    if (tokens <= 0) continue;
    double total_ms = 0;
    for (const auto& [name, ph] : t.at("phases").items()) total_ms += ph.at("ms").get<double>();
    nlohmann::json phases = nlohmann::json::object();
    for (const auto& [name, ph] : t.at("phases").items()) {
      const double ms = ph.at("ms").get<double>();
      nlohmann::json p = {{"ms_per_token", ms / tokens}, {"share", total_ms > 0 ? ms / total_ms : 0.0}};
      if (const double bytes = ph.at("bytes").get<double>(); bytes > 0 && ms > 0) {
        p["weight_GBps"] = bytes / (ms * 1e6);
      }
      phases[name] = p;
    }
    out[part] = {{"steps", t.at("steps")}, {"tokens", tokens}, {"timed_ms_per_token", total_ms / tokens},
                 {"phases", phases}};
  }
  return out;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int Run(Args a) {
  if (Status r = ResolveModelRefs({&a.model}, a.models_dir); !r.ok()) return ReportError(r);
  if (a.n_prompt < 1 || a.n_gen < 1) {
    fmt::print(stderr, "error: -p and -n must be at least 1\n");
    return 1;
  }
  a.load.n_ctx = std::max(a.load.n_ctx, a.n_prompt + a.n_gen + 1);
  if (a.lora_seqs > 1) {
    if (a.lora.path.empty()) {
      fmt::print(stderr, "error: --lora-seqs needs --lora\n");
      return 1;
    }
    a.load.n_seq = std::max(a.load.n_seq, a.lora_seqs);
  }
  std::string device_why;
  if (Status d = ResolveLoadDevice(&a.load, a.json ? &device_why : nullptr); !d.ok()) return ReportError(d);
  auto model = engine::Model::Load(a.model, a.load);
  if (!model.ok()) {
    return ReportError(model.status());
  }
  engine::Model& m = **model;
  const auto& c = m.config();
  std::mt19937 rng(42);
  std::uniform_int_distribution<int32_t> tok(0, 151642 < static_cast<int32_t>(c.n_vocab) ? 151642 : c.n_vocab - 1);
  std::vector<int32_t> prompt(a.n_prompt);
  for (auto& t : prompt) t = tok(rng);

  // Warm-up: touch the weights once (page cache -> mapping) so the first timed pass is not I/O.
  std::vector<float> logits;
  {
    const int32_t w[] = {prompt[0]};
    (void)m.Prefill(0, w, &logits);
    m.ResetSequence(0);
  }
  double lora_load_s = 0;
  auto lora = LoadLoraFlag(m, a.lora, a.json, &lora_load_s);
  if (!lora.ok()) return ReportError(lora.status());
  // Each repetition: the prompt and then n greedy tokens through the engine's batch step (the
  // path `run` and the scheduler take); prefill ends when the first token comes. With --lora,
  // each repetition runs the base model and then the same with the adapter, side by side.
  struct Best {
    double pre = 1e30, dec = 1e30;
  };
  Best base, with_lora;
  std::vector<engine::SequenceEvent> events;
  engine::Batch batch(m);
  // One sequence per entry of `adapters` (their ids; -1: none), admitted together.
  auto measure = [&](const std::vector<int32_t>& adapters, Best* best) -> Status {
    const double t0 = Now();
    for (int32_t adapter : adapters) {
      engine::SequenceRequest req;
      req.prompt = prompt;
      req.options.sampler.temperature = 0;
      req.options.max_tokens = a.n_gen + 1;  // n decode steps after the prompt's token
      req.options.stop_on_eos = false;
      req.adapter = adapter;
      req.adapter_scale = a.lora.scale;
      QM_RETURN_IF_ERROR(batch.Admit(std::move(req)).status());
    }
    double t1 = 0;
    while (batch.active() > 0) {
      QM_RETURN_IF_ERROR(batch.Step(&events));
      if (t1 == 0 && !events.empty()) t1 = Now();
    }
    const double t2 = Now();
    best->pre = std::min(best->pre, t1 - t0);
    best->dec = std::min(best->dec, t2 - t1);
    return Status::Ok();
  };
  // --lora-seqs N: N sequences sharing the adapter against N sequences with N different adapters
  // (the file loaded N times: the same work, but N segments per projection).
  std::vector<int32_t> shared, distinct;
  if (*lora >= 0 && a.lora_seqs > 1) {
    for (int32_t i = 0; i < a.lora_seqs; ++i) {
      shared.push_back(*lora);
      if (i == 0) {
        distinct.push_back(*lora);
        continue;
      }
      auto id = LoadLoraFlag(m, a.lora, true);
      if (!id.ok()) return ReportError(id.status());
      distinct.push_back(*id);
    }
  }
  Best mix_shared, mix_distinct;
  if (a.profile) {
    runtime::SetCpuProfile(true);
    runtime::CpuProfileReset();
  }
  for (int r = 0; r < a.reps; ++r) {
    if (Status st = measure({-1}, &base); !st.ok()) return ReportError(st);
    if (*lora >= 0) {
      if (Status st = measure({*lora}, &with_lora); !st.ok()) return ReportError(st);
    }
    if (!shared.empty()) {
      if (Status st = measure(shared, &mix_shared); !st.ok()) return ReportError(st);
      if (Status st = measure(distinct, &mix_distinct); !st.ok()) return ReportError(st);
    }
  }
  const double best_pre = base.pre, best_dec = base.dec;
  // Bytes read per decode token: every matrix once, but only one row of the embedding table
  // (unless it is also the tied output head).
  uint64_t per_token = model::WeightBytes(m.file());
  if (!c.tied_embeddings) {
    if (const auto* t = m.file().FindTensor("token_embd.weight")) per_token -= t->n_bytes;
  }
  if (c.is_moe()) {
    // Only n_expert_used of n_expert experts are read per token.
    for (const auto& t : m.file().tensors()) {
      if (t.name.find("_exps.") != std::string::npos) {
        per_token -= t.n_bytes - t.n_bytes / c.n_expert * c.n_expert_used;
      }
    }
  }
  const double avg_ctx = a.n_prompt + a.n_gen / 2.0;
  const double kv_per_token = static_cast<double>(model::KvBytesPerToken(c)) * avg_ctx;
  const double dec_tok_s = a.n_gen / best_dec;
  nlohmann::json j = {
      {"model", a.model},
      {"architecture", c.arch_name},
      {"threads", m.pool().size()},
      {"device", runtime::DeviceName(m.backend().device())},
      {"backend", m.backend().Describe()},
      {"n_prompt", a.n_prompt},
      {"n_gen", a.n_gen},
      {"prefill_tok_s", a.n_prompt / best_pre},
      {"decode_tok_s", dec_tok_s},
      {"decode_GBps", dec_tok_s * (static_cast<double>(per_token) + kv_per_token) / 1e9},
      {"weight_bytes_per_token", per_token},
      {"peak_rss_bytes", PeakRssBytes()},
      {"weights_bytes", model::WeightBytes(m.file())},
      {"kv_cache_bytes", runtime::KvCache::BytesFor(c, m.n_ctx(), m.n_seq())},
  };
  if (!device_why.empty()) j["device_why"] = device_why;
  if (*lora >= 0) {
    const runtime::LoraAdapter* ad = m.adapter(*lora);
    const double lora_dec = a.n_gen / with_lora.dec;
    j["lora"] = {
        {"path", a.lora.path},
        {"scale", a.lora.scale},
        {"rank", ad->max_rank()},
        {"projections", ad->n_pairs()},
        {"adapter_bytes", ad->bytes()},
        {"load_ms", lora_load_s * 1e3},
        {"prefill_tok_s", a.n_prompt / with_lora.pre},
        {"decode_tok_s", lora_dec},
        {"decode_vs_base", lora_dec / dec_tok_s},
    };
    if (!shared.empty()) {
      const double n_tok = static_cast<double>(a.n_gen) * a.lora_seqs;
      j["lora"]["mix"] = {
          {"sequences", a.lora_seqs},
          {"shared_adapter_decode_tok_s", n_tok / mix_shared.dec},
          {"distinct_adapters_decode_tok_s", n_tok / mix_distinct.dec},
          {"distinct_vs_shared", mix_shared.dec / mix_distinct.dec},
      };
    }
  }
  if (a.profile) j["profile"] = ProfileReport(nlohmann::json::parse(runtime::CpuProfileJson()));
  if (!a.no_bw) {
    const double bw = MeasureReadBandwidth(size_t{1} << 30, m.pool().size());
    j["read_bandwidth_GBps"] = bw / 1e9;
    j["decode_share_of_bandwidth"] = j["decode_GBps"].get<double>() / (bw / 1e9);
  }
  if (a.json) {
    fmt::print("{}\n", j.dump());
  } else {
    // For people: 4 significant digits, not 15; JSON (--json) keeps full precision.
    for (const auto& [k, v] : j.items())
      fmt::print("{:<28} {}\n", k, v.is_number_float() ? fmt::format("{:.4g}", v.get<double>()) : v.dump());
  }
  return 0;
}

}  // namespace

void RegisterBench(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("bench", "Measure prefill and decode speed of a model");
  AddModelRef(cmd, "model", &a->model, &a->models_dir)->required();
  cmd->add_option("-p,--prompt-tokens", a->n_prompt, "Prompt tokens")->capture_default_str();
  cmd->add_option("-n,--gen-tokens", a->n_gen, "Generated tokens")->capture_default_str();
  cmd->add_option("-r,--reps", a->reps, "Repetitions (best is reported)")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->add_flag("--no-bandwidth", a->no_bw, "Skip the memory bandwidth measurement");
  cmd->add_flag("--profile", a->profile,
                "CPU: also time each phase of the forward pass (matrix products with their GB/s, attention, "
                "norms, ...) per decode token and per prompt token");
  AddLoadFlags(cmd, &a->load);
  AddLoraFlag(cmd, &a->lora);
  cmd->add_option("--lora-seqs", a->lora_seqs,
                  "With --lora: also N concurrent sequences sharing the adapter vs N different adapters")
      ->check(CLI::Range(2, 64));
  cmd->callback([=] { *exit_code = Run(*a); });
}

}  // namespace qwenmux::apps
