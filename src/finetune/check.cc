#include "finetune/check.h"

#include <chrono>
#include <cmath>
#include <fstream>

#include <fmt/format.h>

#include "engine/lora.h"
#include "finetune/step.h"

namespace qwenmux::finetune {

namespace {

double RelErr(double x, double ref) { return std::abs(x - ref) / std::max(std::abs(ref), 1e-30); }

// ‖g − ref‖ / ‖ref‖ (Frobenius, double).
double FrobRelErr(const std::vector<float>& g, std::span<const float> ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double d = static_cast<double>(g[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

Result<nlohmann::json> LoadSection(const CheckOptions& o) {
  std::ifstream in(o.ref);
  if (!in) return Error(StatusCode::kNotFound, "finetune check: cannot open reference {}", o.ref);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return Error(StatusCode::kInvalidArgument, "finetune check: {} is not valid JSON", o.ref);
  if (!j.contains(o.section)) {
    return Error(StatusCode::kInvalidArgument, "finetune check: {} has no section \"{}\"", o.ref, o.section);
  }
  nlohmann::json s = j[o.section];
  for (const char* key : {"examples", "hyperparameters", "step0", "losses"}) {
    if (!s.contains(key)) {
      return Error(StatusCode::kInvalidArgument, "finetune check: {} section {} has no \"{}\"", o.ref, o.section, key);
    }
  }
  return s;
}

}  // namespace

nlohmann::json CheckReport::ToJson() const {
  nlohmann::json j;
  j["loss0"] = loss0;
  j["loss0_ref"] = loss0_ref;
  j["loss0_rel_err"] = loss0_rel_err;
  j["grad_max_rel_err"] = grad_max_rel_err;
  j["grad_worst"] = grad_worst;
  j["grad_rel_err"] = grad_rel_err;
  j["losses"] = losses;
  j["losses_ref"] = losses_ref;
  j["curve_max_rel_err"] = curve_max_rel_err;
  j["bars"] = {{"loss0_rel_err", kLoss0Bar}, {"grad_max_rel_err", kGradBar}, {"curve_max_rel_err", kCurveBar}};
  j["seconds"] = seconds;
  j["pass"] = pass;
  return j;
}

std::string CheckReport::ToText() const {
  std::string s;
  s += fmt::format("loss0 {:.9g} (ref {:.9g})  loss0_rel_err {:.3e}  (bar {:.0e})\n", loss0, loss0_ref, loss0_rel_err,
                   kLoss0Bar);
  if (!grad_rel_err.empty()) {
    s += fmt::format("grad_max_rel_err {:.3e} ({})  (bar {:.0e}, {} tensors)\n", grad_max_rel_err, grad_worst,
                     kGradBar, grad_rel_err.size());
  }
  s += fmt::format("curve_max_rel_err {:.3e} over {} steps  (bar {:.0e})\n", curve_max_rel_err, losses.size(),
                   kCurveBar);
  for (size_t i = 0; i < losses.size(); ++i) {
    s += fmt::format("  step {:2}  loss {:.9g}  ref {:.9g}\n", i, losses[i], losses_ref[i]);
  }
  s += fmt::format("{} ({:.1f} s)\n", pass ? "PASS" : "FAIL", seconds);
  return s;
}

Result<CheckReport> RunCheck(const CheckOptions& o, ThreadPool* pool) {
  const auto t0 = std::chrono::steady_clock::now();
  QM_ASSIGN_OR_RETURN(nlohmann::json s, LoadSection(o));
  QM_ASSIGN_OR_RETURN(std::unique_ptr<TrainModel> model, TrainModel::Open(o.base, pool));
  QM_ASSIGN_OR_RETURN(engine::LoraTensors init, engine::ReadLora(o.lora));
  QM_ASSIGN_OR_RETURN(LoraParams params, ParamsFromTensors(init, model->config()));

  std::vector<Example> examples;
  try {
    for (const auto& e : s["examples"]) {
      Example ex;
      ex.ids = e.at("ids").get<std::vector<int32_t>>();
      ex.mask = e.at("loss_mask").get<std::vector<uint8_t>>();
      examples.push_back(std::move(ex));
    }
  } catch (const nlohmann::json::exception& e) {
    return Error(StatusCode::kInvalidArgument, "finetune check: {} {}: bad example: {}", o.ref, o.section, e.what());
  }
  const auto& h = s["hyperparameters"];
  OptimConfig oc;
  int64_t steps = 0, batch = 0, accum = 1;
  try {
    oc.lr = h.at("lr").get<float>();
    oc.beta1 = h.at("betas").at(0).get<float>();
    oc.beta2 = h.at("betas").at(1).get<float>();
    oc.eps = h.at("eps").get<float>();
    oc.weight_decay = h.value("weight_decay", 0.0f);
    oc.grad_clip = h.contains("grad_clip") && !h["grad_clip"].is_null() ? h["grad_clip"].get<float>() : 0.0f;
    steps = h.at("steps").get<int64_t>();
    batch = h.value("batch_size", static_cast<int64_t>(examples.size()));
    accum = h.value("grad_accumulation", int64_t{1});
    if (h.contains("lora_scale")) {
      const double want = h["lora_scale"].get<double>();
      for (const LoraParam& p : params.pairs) {
        if (std::abs(params.Factor(p) - want) > 1e-6 * want) {
          return Error(StatusCode::kInvalidArgument,
                       "finetune check: adapter {} has alpha/rank {} on {}, the reference's lora_scale is {}", o.lora,
                       params.Factor(p), p.Name(true), want);
        }
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return Error(StatusCode::kInvalidArgument, "finetune check: {} {}: bad hyperparameters: {}", o.ref, o.section,
                 e.what());
  }
  oc.total_steps = steps;
  const int64_t per_step = std::max<int64_t>(1, batch * accum);
  CheckReport r;
  r.loss0_ref = s["step0"].at("loss").get<double>();
  r.losses_ref = s["losses"].get<std::vector<double>>();
  if (static_cast<int64_t>(r.losses_ref.size()) < steps) steps = static_cast<int64_t>(r.losses_ref.size());

  for (int64_t step = 0; step < steps; ++step) {
    std::vector<const Example*> batch_ex;
    for (int64_t i = 0; i < per_step; ++i) {
      batch_ex.push_back(&examples[static_cast<size_t>((step * per_step + i) % static_cast<int64_t>(examples.size()))]);
    }
    QM_ASSIGN_OR_RETURN(StepResult g, ComputeGradients(*model, params, batch_ex, Dropout{}));
    r.losses.push_back(g.loss);
    if (step == 0) {
      r.loss0 = g.loss;
      r.loss0_rel_err = RelErr(g.loss, r.loss0_ref);
      if (!o.grads.empty()) {
        QM_ASSIGN_OR_RETURN(engine::LoraTensors ref, engine::ReadLoraGguf(o.grads));
        for (const LoraParam& p : params.pairs) {
          const engine::LoraTensors::Pair* found = nullptr;
          for (const auto& q : ref.pairs)
            if (q.layer == p.layer && q.target == p.target) found = &q;
          if (found == nullptr || found->p.a.size() != p.ga.size() || found->p.b.size() != p.gb.size()) {
            return Error(StatusCode::kInvalidArgument, "finetune check: gradients {} have no {} of the adapter's shape",
                         o.grads, p.Name(true));
          }
          for (bool is_a : {true, false}) {
            const double e = FrobRelErr(is_a ? p.ga : p.gb, is_a ? found->p.a : found->p.b);
            r.grad_rel_err[p.Name(is_a)] = e;
            if (e >= r.grad_max_rel_err) r.grad_max_rel_err = e, r.grad_worst = p.Name(is_a);
          }
        }
      }
    }
    ClipGrads(params, oc);
    AdamWStep(params, oc, step + 1, LearningRate(oc, step));
  }
  for (size_t i = 0; i < r.losses.size(); ++i) {
    r.curve_max_rel_err = std::max(r.curve_max_rel_err, RelErr(r.losses[i], r.losses_ref[i]));
  }
  r.pass = r.loss0_rel_err <= kLoss0Bar && r.grad_max_rel_err <= kGradBar && r.curve_max_rel_err <= kCurveBar;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace qwenmux::finetune
