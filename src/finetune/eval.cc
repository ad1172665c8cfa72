#include "finetune/eval.h"

#include <cmath>

#include <fmt/format.h>

#include "engine/lora.h"
#include "finetune/step.h"

namespace qwenmux::finetune {

namespace {

Result<EvalSide> Side(TrainModel& m, LoraParams& p, const std::vector<const Example*>& v) {
  QM_ASSIGN_OR_RETURN(std::vector<SeqResult> res, m.RunBatch(v, p, 1.0f, false));
  double sum = 0;
  int64_t labels = 0, exact = 0;
  for (const SeqResult& r : res) {
    sum += r.loss_sum;
    labels += r.n_labels;
    exact += r.n_correct == r.n_labels;
  }
  EvalSide s;
  s.loss = labels > 0 ? sum / static_cast<double>(labels) : 0;
  s.ppl = std::exp(s.loss);
  s.exact_match = v.empty() ? 0 : static_cast<double>(exact) / static_cast<double>(v.size());
  return s;
}

}  // namespace

nlohmann::json EvalReport::ToJson() const {
  auto side = [](const EvalSide& s) {
    return nlohmann::json{{"loss", s.loss}, {"ppl", s.ppl}, {"exact_match", s.exact_match}};
  };
  return {{"split", split},         {"examples", examples}, {"labels", labels},
          {"base", side(base)},     {"adapter", side(adapter)},
          {"adapter_better", adapter.loss < base.loss}};
}

std::string EvalReport::ToText() const {
  std::string s = fmt::format("split {}: {} examples, {} labels\n", split, examples, labels);
  s += fmt::format("{:<8} {:>10} {:>12} {:>12}\n", "", "loss", "perplexity", "exact match");
  s += fmt::format("{:<8} {:>10.4f} {:>12.5g} {:>11.1f}%\n", "base", base.loss, base.ppl, 100 * base.exact_match);
  s += fmt::format("{:<8} {:>10.4f} {:>12.5g} {:>11.1f}%\n", "adapter", adapter.loss, adapter.ppl,
                   100 * adapter.exact_match);
  return s;
}

Result<EvalReport> RunEval(const EvalOptions& o, ThreadPool* pool) {
  if (o.split != "valid" && o.split != "train" && o.split != "all") {
    return Error(StatusCode::kInvalidArgument, "finetune eval: unknown split \"{}\" (valid, train or all)", o.split);
  }
  QM_ASSIGN_OR_RETURN(std::unique_ptr<TrainModel> model, TrainModel::Open(o.base, pool));
  QM_ASSIGN_OR_RETURN(tokenizer::Tokenizer tok, tokenizer::Tokenizer::FromGguf(model->file()));
  QM_ASSIGN_OR_RETURN(Dataset d, LoadJsonl(o.data, tok, o.data_options));
  std::vector<const Example*> v;
  if (o.split != "train") for (const Example& e : d.valid) v.push_back(&e);
  if (o.split != "valid") for (const Example& e : d.train) v.push_back(&e);
  if (v.empty()) {
    return Error(StatusCode::kInvalidArgument, "finetune eval: {}: the {} split is empty (see --valid)", o.data, o.split);
  }
  QM_ASSIGN_OR_RETURN(engine::LoraTensors t, engine::ReadLora(o.lora));
  QM_ASSIGN_OR_RETURN(LoraParams adapter, ParamsFromTensors(t, model->config()));
  LoraParams none;
  none.Reindex(static_cast<int32_t>(model->config().n_layer));
  EvalReport r;
  r.split = o.split;
  r.examples = static_cast<int64_t>(v.size());
  for (const Example* e : v) r.labels += CountLabels(*e);
  QM_ASSIGN_OR_RETURN(r.base, Side(*model, none, v));
  QM_ASSIGN_OR_RETURN(r.adapter, Side(*model, adapter, v));
  return r;
}

}  // namespace qwenmux::finetune
