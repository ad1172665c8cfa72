// qwenmux refcheck MODEL REF.json [--json] [--pair] [--dump OUT.json] [--section NAME] [--lora FILE[:SCALE]]
//   [--min-top1 X] [--max-probe-rms X] [--min-greedy X] [--min-embedding-cos X] [--max-rerank-diff X] [--no-bars]
// Prints the figures, then a verdict against the bars (defaults: ../shared/testdata/README.md's
// "How close an implementation must be"); exit 3 when a figure misses its bar, naming which.
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/mapped_file.h"
#include "commands.h"
#include "model_ref_flag.h"
#include "engine/refcheck.h"
#include "engine_flags.h"

namespace qwenmux::apps {

namespace {

struct Args {
  std::string model, models_dir, ref, dump, section;
  LoraFlag lora;
  bool json = false, pair = false, no_bars = false;
  // Bars; negative: the default (testdata README: dense top1 >= 0.98 (0.97 with an adapter),
  // probe_rms <= 0.12 (0.35 MoE), greedy >= 90/96; embeddings cos >= 0.999, rerank diff <= 0.01).
  double min_top1 = -1, max_probe_rms = -1, min_greedy = -1, min_embedding_cos = -1, max_rerank_diff = -1;
  engine::LoadOptions load;
};

// The figures of `r` that miss their bar, one phrase each ("top1 0.950 < 0.980"); empty: all pass.
std::vector<std::string> MissedBars(const Args& a, const engine::RefCheckResult& r, bool moe) {
  const double top1 = a.min_top1 >= 0 ? a.min_top1 : a.lora.path.empty() ? 0.98 : 0.97;
  const double rms = a.max_probe_rms >= 0 ? a.max_probe_rms : moe ? 0.35 : 0.12;
  const double greedy = a.min_greedy >= 0 ? a.min_greedy : 90.0 / 96.0;
  const double cos = a.min_embedding_cos >= 0 ? a.min_embedding_cos : 0.999;
  const double rerank = a.max_rerank_diff >= 0 ? a.max_rerank_diff : 0.01;
  std::vector<std::string> out;
  if (r.positions > 0 && r.top1 < top1) out.push_back(fmt::format("top1 {:.4f} < {}", r.top1, top1));
  if (r.positions > 0 && r.probe_rms > rms) out.push_back(fmt::format("probe_rms {:.4f} > {}", r.probe_rms, rms));
  if (r.greedy_total > 0 && r.greedy_match < greedy * r.greedy_total)
    out.push_back(fmt::format("greedy {}/{} < {:.4f} of the tokens", r.greedy_match, r.greedy_total, greedy));
  if (r.embeddings > 0 && r.embedding_min_cos < cos)
    out.push_back(fmt::format("embedding_min_cos {:.6f} < {}", r.embedding_min_cos, cos));
  if (r.reranks > 0 && r.rerank_max_diff > rerank)
    out.push_back(fmt::format("rerank_max_diff {:.4f} > {}", r.rerank_max_diff, rerank));
  return out;
}

// A figure for people: 4 significant digits, not 15 ("0.9865", "6.1e-06").
std::string Figure(const nlohmann::json& v) {
  if (v.is_number_float()) return fmt::format("{:.4g}", v.get<double>());
  return v.dump();
}

int Run(Args a) {
  if (Status r = ResolveModelRefs({&a.model}, a.models_dir); !r.ok()) return ReportError(r);
  auto text = ReadFileToString(a.ref);
  if (!text.ok()) {
    return ReportError(text.status());
  }
  auto ref = nlohmann::json::parse(*text, nullptr, false);
  if (ref.is_discarded()) {
    fmt::print(stderr, "error: {}: not valid JSON\n", a.ref);
    return 1;
  }
  if (!a.section.empty()) {
    if (!ref.is_object() || !ref.contains(a.section) || !ref[a.section].is_object()) {
      fmt::print(stderr, "error: {}: no section \"{}\"\n", a.ref, a.section);
      return 1;
    }
    nlohmann::json sub = std::move(ref[a.section]);
    ref = std::move(sub);
  }
  engine::LoadOptions load = a.load;
  if (a.pair) load.n_seq = std::max(load.n_seq, 2);
  std::string device_why;  // --json: in the JSON, so stdout stays one document
  if (Status d = ResolveLoadDevice(&load, a.json ? &device_why : nullptr); !d.ok()) return ReportError(d);
  auto model = engine::Model::Load(a.model, load);
  if (!model.ok()) {
    return ReportError(model.status());
  }
  auto lora = LoadLoraFlag(**model, a.lora, a.json);
  if (!lora.ok()) return ReportError(lora.status());
  engine::RefCheckOptions opt;
  opt.pair = a.pair;
  opt.adapter = *lora;
  opt.adapter_scale = a.lora.scale;
  auto r = engine::RunRefCheck(**model, ref, opt);
  if (!r.ok()) {
    return ReportError(r.status());
  }
  if (!a.dump.empty()) {
    std::ofstream out(a.dump);
    out << r->dump.dump() << "\n";
    if (!out) {
      fmt::print(stderr, "error: cannot write {}\n", a.dump);
      return 1;
    }
  }
  nlohmann::json j = r->ToJson();
  if (!device_why.empty() && a.json) j["device_why"] = device_why;
  const std::vector<std::string> missed =
      a.no_bars ? std::vector<std::string>{} : MissedBars(a, *r, (*model)->config().n_expert > 0);
  if (!a.no_bars) {
    j["pass"] = missed.empty();
    j["missed"] = missed;
  }
  if (a.json) {
    fmt::print("{}\n", j.dump());
  } else {
    for (const auto& [k, v] : j.items()) {
      if (k == "pass" || k == "missed") continue;
      fmt::print("{:<20} {}\n", k, Figure(v));
    }
    if (!a.no_bars) {
      if (missed.empty()) {
        fmt::print("verdict: pass (every figure meets its bar)\n");
      } else {
        std::string list;
        for (const std::string& m : missed) list += (list.empty() ? "" : "; ") + m;
        fmt::print("verdict: FAIL: {}\n", list);
      }
    }
  }
  if (!missed.empty()) {
    std::string list;
    for (const std::string& m : missed) list += (list.empty() ? "" : "; ") + m;
    if (a.json) fmt::print(stderr, "refcheck: figures miss the bars: {}\n", list);
    return 3;
  }
  return 0;
}

}  // namespace

void RegisterRefcheck(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("refcheck", "Compare the engine's outputs with a reference JSON file");
  AddModelRef(cmd, "model", &a->model, &a->models_dir)->required();
  cmd->add_option("ref", a->ref, "Reference JSON (see ../shared/testdata/README.md)")->required();
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->add_flag("--pair", a->pair, "Run sequences two at a time sharing each batch");
  cmd->add_option("--dump", a->dump, "Write our own outputs in the reference format");
  cmd->add_option("--section", a->section, "Compare with this top-level section of the reference (e.g. inference_q8_0_base)");
  cmd->add_option("--min-top1", a->min_top1, "Bar: share of top-1 matches (default 0.98; 0.97 with --lora)");
  cmd->add_option("--max-probe-rms", a->max_probe_rms, "Bar: probe-logit RMS difference (default 0.12; 0.35 for MoE)");
  cmd->add_option("--min-greedy", a->min_greedy, "Bar: share of greedy tokens matched (default 90/96)");
  cmd->add_option("--min-embedding-cos", a->min_embedding_cos, "Bar: embeddings' least cosine (default 0.999)");
  cmd->add_option("--max-rerank-diff", a->max_rerank_diff, "Bar: rerank score difference (default 0.01)");
  cmd->add_flag("--no-bars", a->no_bars, "Print the figures only; no verdict (exit 0)");
  AddLoadFlags(cmd, &a->load);
  AddLoraFlag(cmd, &a->lora);
  cmd->callback([=] { *exit_code = Run(*a); });
}

}  // namespace qwenmux::apps
