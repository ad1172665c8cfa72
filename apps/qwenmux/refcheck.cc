// qwenmux refcheck MODEL.gguf REF.json [--json] [--pair] [--dump OUT.json] [--section NAME] [--lora FILE[:SCALE]]
#include <fstream>
#include <memory>

#include <fmt/format.h>

#include "base/mapped_file.h"
#include "commands.h"
#include "engine/refcheck.h"
#include "engine_flags.h"

namespace qwenmux::apps {

namespace {

struct Args {
  std::string model, ref, dump, section;
  LoraFlag lora;
  bool json = false, pair = false;
  engine::LoadOptions load;
};

int Run(const Args& a) {
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
  if (a.json) {
    fmt::print("{}\n", j.dump());
  } else {
    for (const auto& [k, v] : j.items()) fmt::print("{:<20} {}\n", k, v.dump());
  }
  return 0;
}

}  // namespace

void RegisterRefcheck(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("refcheck", "Compare the engine's outputs with a reference JSON file");
  cmd->add_option("model", a->model, "GGUF model file")->required();
  cmd->add_option("ref", a->ref, "Reference JSON (see ../shared/testdata/README.md)")->required();
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->add_flag("--pair", a->pair, "Run sequences two at a time sharing each batch");
  cmd->add_option("--dump", a->dump, "Write our own outputs in the reference format");
  cmd->add_option("--section", a->section, "Compare with this top-level section of the reference (e.g. inference_q8_0_base)");
  AddLoadFlags(cmd, &a->load);
  AddLoraFlag(cmd, &a->lora);
  cmd->callback([=] { *exit_code = Run(*a); });
}

}  // namespace qwenmux::apps
