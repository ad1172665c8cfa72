#include "finetune/train.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <fmt/format.h>

#include "engine/lora.h"
#include "finetune/peft.h"
#include "finetune/rng.h"
#include "finetune/step.h"

namespace qwenmux::finetune {

namespace {

constexpr char kMagic[8] = {'Q', 'M', 'F', 'T', 'C', 'K', '0', '1'};

std::string Duration(double s) {
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, t / 60 % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

// The order of the training examples in epoch `e`.
std::vector<size_t> EpochOrder(size_t n, uint64_t seed, int64_t e) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  SplitMix64 rng(MixSeed(seed, static_cast<uint64_t>(e) + 1));
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng.Next() % i]);
  return order;
}

template <class T>
void Put(std::ofstream& f, const T& v) {
  f.write(reinterpret_cast<const char*>(&v), sizeof(T));
}
void PutVec(std::ofstream& f, const std::vector<float>& v) {
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
}
template <class T>
bool Get(std::ifstream& f, T* v) {
  return static_cast<bool>(f.read(reinterpret_cast<char*>(v), sizeof(T)));
}
bool GetVec(std::ifstream& f, std::vector<float>* v) {
  return static_cast<bool>(f.read(reinterpret_cast<char*>(v->data()), static_cast<std::streamsize>(v->size() * sizeof(float))));
}

}  // namespace

nlohmann::json TrainReport::ToJson() const {
  nlohmann::json j;
  j["first_step"] = first_step;
  j["steps_done"] = steps_done;
  j["losses"] = losses;
  j["final_loss"] = losses.empty() ? nlohmann::json(nullptr) : nlohmann::json(losses.back());
  j["valid_loss"] = valid_loss < 0 ? nlohmann::json(nullptr) : nlohmann::json(valid_loss);
  j["tokens_per_s"] = tokens_per_s;
  j["seconds"] = seconds;
  if (exact_match >= 0) j["exact_match"] = exact_match;
  if (exact_match_before >= 0) j["exact_match_before"] = exact_match_before;
  j["stopped_early"] = stopped_early;
  j["early_stopped"] = early_stopped;
  j["data"] = {{"lines", data.lines},     {"train", data.train.size()}, {"valid", data.valid.size()},
               {"skipped", data.skipped.size()}, {"truncated", data.truncated}, {"dropped_long", data.dropped_long},
               {"tokens", data.tokens},   {"labels", data.labels}};
  nlohmann::json sk = nlohmann::json::array();
  for (const DataIssue& i : data.skipped) sk.push_back({{"line", i.line}, {"reason", i.message}});
  j["data"]["skipped_lines"] = sk;
  return j;
}

Status SaveCheckpoint(const std::string& path, int64_t step, const LoraParams& p) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return Error(StatusCode::kIo, "finetune: cannot write checkpoint {}", tmp);
    f.write(kMagic, sizeof(kMagic));
    Put(f, step);
    Put(f, p.alpha);
    Put(f, static_cast<int64_t>(p.pairs.size()));
    for (const LoraParam& q : p.pairs) {
      Put(f, q.layer);
      Put(f, static_cast<int32_t>(q.target));
      Put(f, q.rank);
      Put(f, q.in);
      Put(f, q.out);
      for (const auto* v : {&q.a, &q.b, &q.ma, &q.va, &q.mb, &q.vb}) PutVec(f, *v);
    }
    f.flush();
    if (!f) return Error(StatusCode::kIo, "finetune: error writing checkpoint {}", tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Error(StatusCode::kIo, "finetune: cannot rename {} to {}: {}", tmp, path, ec.message());
  return Status::Ok();
}

Result<int64_t> CheckpointStep(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Error(StatusCode::kNotFound, "finetune: cannot open checkpoint {}", path);
  char magic[8];
  int64_t step = 0;
  if (!f.read(magic, sizeof(magic)) || std::memcmp(magic, kMagic, sizeof(kMagic)) != 0 || !Get(f, &step) || step < 0) {
    return Error(StatusCode::kInvalidArgument, "finetune: {} is not a qwenmux finetune checkpoint", path);
  }
  return step;
}

Result<int64_t> LoadCheckpoint(const std::string& path, const model::ModelConfig& c, LoraParams* p) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Error(StatusCode::kNotFound, "finetune: cannot open checkpoint {}", path);
  char magic[8];
  if (!f.read(magic, sizeof(magic)) || std::memcmp(magic, kMagic, sizeof(kMagic)) != 0) {
    return Error(StatusCode::kInvalidArgument, "finetune: {} is not a qwenmux finetune checkpoint", path);
  }
  int64_t step = 0, n = 0;
  LoraParams out;
  if (!Get(f, &step) || !Get(f, &out.alpha) || !Get(f, &n) || step < 0 || n < 0 || n > 7 * 4096) {
    return Error(StatusCode::kInvalidArgument, "finetune: checkpoint {}: bad header", path);
  }
  for (int64_t i = 0; i < n; ++i) {
    LoraParam q;
    int32_t target = 0;
    if (!Get(f, &q.layer) || !Get(f, &target) || !Get(f, &q.rank) || !Get(f, &q.in) || !Get(f, &q.out) ||
        target < 0 || target >= runtime::kLoraTargets || q.layer < 0 || q.layer >= static_cast<int32_t>(c.n_layer) ||
        q.rank <= 0 || q.rank > 65536) {
      return Error(StatusCode::kInvalidArgument, "finetune: checkpoint {}: bad pair {}", path, i);
    }
    q.target = static_cast<runtime::LoraTarget>(target);
    int64_t in = 0, out_dim = 0;
    ProjectionShape(c, q.target, &in, &out_dim);
    if (in != q.in || out_dim != q.out) {
      return Error(StatusCode::kInvalidArgument, "finetune: checkpoint {}: {} does not fit this model", path, q.Name(true));
    }
    q.a.resize(static_cast<size_t>(q.rank * q.in));
    q.b.resize(static_cast<size_t>(q.out * q.rank));
    q.ma.resize(q.a.size()), q.va.resize(q.a.size()), q.mb.resize(q.b.size()), q.vb.resize(q.b.size());
    for (auto* v : {&q.a, &q.b, &q.ma, &q.va, &q.mb, &q.vb}) {
      if (!GetVec(f, v)) return Error(StatusCode::kInvalidArgument, "finetune: checkpoint {}: truncated", path);
    }
    out.pairs.push_back(std::move(q));
  }
  // Reindex resets the moments; keep them.
  std::vector<LoraParam> saved = out.pairs;
  out.Reindex(static_cast<int32_t>(c.n_layer));
  for (LoraParam& q : out.pairs) {
    for (const LoraParam& s : saved) {
      if (s.layer == q.layer && s.target == q.target) q.ma = s.ma, q.va = s.va, q.mb = s.mb, q.vb = s.vb;
    }
  }
  *p = std::move(out);
  return step;
}

Result<double> ExactMatch(TrainModel& m, LoraParams& p, const std::vector<Example>& examples) {
  if (examples.empty()) return 0.0;
  std::vector<const Example*> v;
  for (const Example& e : examples) v.push_back(&e);
  QM_ASSIGN_OR_RETURN(std::vector<SeqResult> res, m.RunBatch(v, p, 1.0f, false));
  int64_t ok = 0;
  for (const SeqResult& r : res) ok += r.n_correct == r.n_labels;
  return static_cast<double>(ok) / static_cast<double>(examples.size());
}

Result<TrainReport> Train(const TrainOptions& o, ThreadPool* pool, std::FILE* progress) {
  const auto t_start = std::chrono::steady_clock::now();
  if (o.steps <= 0 || o.batch <= 0 || o.accum <= 0) {
    return Error(StatusCode::kInvalidArgument, "finetune: steps, batch and accumulation must be positive");
  }
  if (o.dropout < 0 || o.dropout >= 1) return Error(StatusCode::kInvalidArgument, "finetune: dropout {} not in [0, 1)", o.dropout);
  QM_ASSIGN_OR_RETURN(std::unique_ptr<TrainModel> model, TrainModel::Open(o.base, pool));
  model->set_checkpointing(o.checkpointing);
  QM_ASSIGN_OR_RETURN(tokenizer::Tokenizer tok, tokenizer::Tokenizer::FromGguf(model->file()));
  TrainReport rep;
  if (o.valid_data.empty()) {
    QM_ASSIGN_OR_RETURN(rep.data, LoadJsonl(o.data, tok, o.data_options));
  } else {  // every line of `data` trains, every line of `valid_data` validates
    DataOptions dopt = o.data_options;
    dopt.valid_fraction = 0;
    QM_ASSIGN_OR_RETURN(rep.data, LoadJsonl(o.data, tok, dopt));
    QM_ASSIGN_OR_RETURN(Dataset v, LoadJsonl(o.valid_data, tok, dopt));
    rep.data.valid = std::move(v.train);
    rep.data.lines += v.lines;
    rep.data.truncated += v.truncated;
    rep.data.dropped_long += v.dropped_long;
    rep.data.tokens += v.tokens;
    rep.data.labels += v.labels;
    rep.data.max_len = std::max(rep.data.max_len, v.max_len);
    for (DataIssue& i : v.skipped) {
      i.message = "validation file: " + i.message;
      rep.data.skipped.push_back(std::move(i));
    }
  }
  if (o.epochs < 0 || !std::isfinite(o.epochs)) return Error(StatusCode::kInvalidArgument, "finetune: epochs {} must be positive", o.epochs);
  const int64_t total_steps =
      o.epochs > 0 ? std::max<int64_t>(1, static_cast<int64_t>(std::ceil(o.epochs * static_cast<double>(rep.data.train.size()) /
                                                                          static_cast<double>(o.batch * o.accum))))
                   : o.steps;
  if (progress) std::fputs(rep.data.Summary().c_str(), progress);

  LoraParams params;
  const std::string ckpt = o.checkpoint.empty() ? o.out + ".ckpt" : o.checkpoint;
  int64_t step = 0;
  if (o.resume && std::filesystem::exists(ckpt)) {
    QM_ASSIGN_OR_RETURN(step, LoadCheckpoint(ckpt, model->config(), &params));
    if (progress) std::fprintf(progress, "resuming from %s at step %lld\n", ckpt.c_str(), static_cast<long long>(step));
  } else if (!o.init.empty()) {
    QM_ASSIGN_OR_RETURN(engine::LoraTensors t, engine::ReadLora(o.init));
    QM_ASSIGN_OR_RETURN(params, ParamsFromTensors(t, model->config()));
  } else {
    if (o.rank <= 0) return Error(StatusCode::kInvalidArgument, "finetune: rank {} must be positive", o.rank);
    QM_ASSIGN_OR_RETURN(std::vector<runtime::LoraTarget> targets, ParseTargets(o.targets));
    QM_ASSIGN_OR_RETURN(targets, TrainableTargets(model->config(), targets, o.targets == "all"));
    params = InitParams(model->config(), o.rank, o.alpha, targets, o.seed);
  }
  if (o.exact_match) {
    QM_ASSIGN_OR_RETURN(rep.exact_match_before, ExactMatch(*model, params, rep.data.train));
  }
  OptimConfig oc = o.optim;
  oc.total_steps = total_steps;
  rep.first_step = step;
  std::unique_ptr<std::ofstream> log;
  if (!o.log_json.empty()) {
    log = std::make_unique<std::ofstream>(o.log_json, std::ios::app);
    if (!*log) return Error(StatusCode::kIo, "finetune: cannot write log {}", o.log_json);
  }

  const size_t n_train = rep.data.train.size();
  const int64_t per_step = o.batch * o.accum;
  int64_t cached_epoch = -1;
  double best_valid = INFINITY;
  int64_t bad_evals = 0;
  std::vector<size_t> order;
  int64_t tokens = 0;
  const auto t_loop = std::chrono::steady_clock::now();
  auto validate = [&](int64_t at) -> Status {
    if (rep.data.valid.empty()) return Status::Ok();
    std::vector<const Example*> v;
    for (const Example& e : rep.data.valid) v.push_back(&e);
    QM_ASSIGN_OR_RETURN(StepResult r, Evaluate(*model, params, v));
    rep.valid_loss = r.loss;
    if (progress) std::fprintf(progress, "eval  step %lld  valid_loss %.4f  ppl %.3f\n", static_cast<long long>(at), r.loss, std::exp(r.loss));
    const nlohmann::json rec{{"step", at}, {"valid_loss", r.loss}};
    if (log) *log << rec.dump() << std::endl;
    if (o.on_record) o.on_record(rec);
    return Status::Ok();
  };
  while (step < total_steps) {
    if (o.cancel && o.cancel->load()) {
      QM_RETURN_IF_ERROR(SaveCheckpoint(ckpt, step, params));
      if (progress) std::fprintf(progress, "cancelled at step %lld (checkpoint %s)\n", static_cast<long long>(step), ckpt.c_str());
      return Error(StatusCode::kCancelled, "finetune: cancelled at step {} of {}", step, total_steps);
    }
    std::vector<const Example*> batch;
    for (int64_t i = 0; i < per_step; ++i) {
      const int64_t g = step * per_step + i;
      const int64_t epoch = g / static_cast<int64_t>(n_train);
      if (epoch != cached_epoch) order = EpochOrder(n_train, o.seed, epoch), cached_epoch = epoch;
      batch.push_back(&rep.data.train[order[static_cast<size_t>(g % static_cast<int64_t>(n_train))]]);
    }
    Dropout d{o.dropout, MixSeed(o.seed, static_cast<uint64_t>(step) + 0x100000)};
    QM_ASSIGN_OR_RETURN(StepResult r, TrainStep(*model, params, batch, oc, step, d));
    ++step;
    tokens += r.n_tokens;
    rep.losses.push_back(r.loss);
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_loop).count();
    const double tps = el > 0 ? static_cast<double>(tokens) / el : 0;
    const int64_t done_here = step - rep.first_step;
    const double eta = done_here > 0 ? el / static_cast<double>(done_here) * static_cast<double>(total_steps - step) : 0;
    if (progress) {
      std::fprintf(progress, "step %lld/%lld  loss %.4f  lr %.3g  grad_norm %.3f  %.0f tok/s  ETA %s\n",
                   static_cast<long long>(step), static_cast<long long>(total_steps), r.loss, r.lr, r.grad_norm, tps,
                   Duration(eta).c_str());
    }
    if (log) {
      *log << nlohmann::json({{"step", step}, {"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm},
                              {"tokens", r.n_tokens}})
                  .dump()
           << std::endl;  // flushed: a kill after the next checkpoint loses no record before it
    }
    if (o.on_record) {
      o.on_record({{"step", step}, {"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm}, {"tokens", r.n_tokens},
                   {"total_steps", total_steps}, {"tokens_per_s", tps}});
    }
    if (o.eval_every > 0 && step % o.eval_every == 0 && step < total_steps) {
      QM_RETURN_IF_ERROR(validate(step));
      if (rep.valid_loss >= 0 && rep.valid_loss < best_valid) {
        best_valid = rep.valid_loss;
        bad_evals = 0;
      } else if (rep.valid_loss >= 0 && o.early_stop > 0 && ++bad_evals >= o.early_stop) {
        if (progress) {
          std::fprintf(progress, "early stop at step %lld: validation loss has not improved on %.4f for %lld evaluations\n",
                       static_cast<long long>(step), best_valid, static_cast<long long>(bad_evals));
        }
        rep.early_stopped = true;
        break;
      }
    }
    const bool stop = o.stop_after > 0 && step >= o.stop_after && step < total_steps;
    if ((o.checkpoint_every > 0 && step % o.checkpoint_every == 0) || stop) {
      QM_RETURN_IF_ERROR(SaveCheckpoint(ckpt, step, params));
    }
    if (stop) {
      rep.stopped_early = true;
      break;
    }
  }
  rep.steps_done = step;
  const double loop_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_loop).count();
  rep.tokens_per_s = loop_s > 0 ? static_cast<double>(tokens) / loop_s : 0;
  if (!rep.stopped_early) {
    if (!rep.early_stopped) QM_RETURN_IF_ERROR(validate(step));  // (an early stop has just validated)
    QM_RETURN_IF_ERROR(engine::WriteLoraGguf(ParamsToTensors(params, model->config().arch_name), o.out));
    if (progress) std::fprintf(progress, "wrote %s (%lld parameters)\n", o.out.c_str(), static_cast<long long>(params.n_params()));
    if (!o.peft_dir.empty()) {
      QM_RETURN_IF_ERROR(WritePeftDir(params, o.dropout, o.peft_dir));
      if (progress) std::fprintf(progress, "wrote %s/ (PEFT)\n", o.peft_dir.c_str());
    }
    if (o.exact_match) {
      QM_ASSIGN_OR_RETURN(rep.exact_match, ExactMatch(*model, params, rep.data.train));
    }
  }
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return rep;
}

}  // namespace qwenmux::finetune
