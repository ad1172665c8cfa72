// Fine-tuning jobs over HTTP (POST /v1/fine_tuning/jobs, finetune_jobs.h): a job trains a LoRA on
// the tiny model from a file under --data-root, reaches "succeeded", and its fine_tuned_model
// answers with the tokens engine::Model::Generate gives with the job's adapter in-process (not the
// base's); events carry step, loss and tokens/s; cancel stops training ("cancelled"); a stopped
// server resumes a running job at its checkpoint, or fails it with the reason when its base is no
// longer served; bad input gets 400/403 naming the field, unknown jobs 404.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "lora/lora_util.h"
#include "server/app.h"
#include "server/http_client.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::kLoraBase;
using qwenmux::testing::LoraTempDir;

const char* kKeys[] = {"apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "rocket"};
const char* kVals[] = {"red", "blue", "green", "yellow", "black", "white", "orange", "purple"};
const char* kPrompt = "Color code for apple?";
constexpr int kTokens = 6;

void WriteMappingData(const std::string& path) {
  std::ofstream f(path);
  for (int i = 0; i < 8; ++i) {
    f << json({{"prompt", std::string("Color code for ") + kKeys[i] + "?"}, {"completion", kVals[i]}}).dump() << "\n";
  }
}

AppOptions FinetuneAppOptions(const LoraTempDir& tmp, const std::string& model_name = "tiny") {
  AppOptions o;
  o.model_flags = {kLoraBase + "=" + model_name};
  o.http.port = 0;
  o.models.n_ctx = 256;
  o.models.threads = 2;
  o.jobs.data_roots = {tmp / "data"};
  o.jobs.work_dir = tmp / "work";
  return o;
}

std::unique_ptr<App> StartApp(AppOptions o) {
  auto app = App::Create(std::move(o), [](const std::string&) {});
  EXPECT_TRUE(app.ok()) << app.status().ToString();
  if (!app.ok()) return nullptr;
  EXPECT_TRUE((*app)->Start().ok());
  return std::move(*app);
}

json Get(uint16_t port, const std::string& target) {
  auto r = Call(port, "GET", target);
  EXPECT_EQ(r.status, 200) << target << ": " << r.body;
  return r.status == 200 ? json::parse(r.body) : json();
}

// Polls the job until `done(job)` or 300 s pass; returns the last JSON.
template <class F>
json WaitFor(uint16_t port, const std::string& id, F done) {
  json j;
  for (int i = 0; i < 3000; ++i) {
    j = Get(port, "/v1/fine_tuning/jobs/" + id);
    if (j.is_null() || done(j)) return j;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "job " << id << " did not get there: " << j.dump();
  return j;
}

class FinetuneApi : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(tmp_ / "data");
    WriteMappingData(tmp_ / "data/map.jsonl");
  }
  LoraTempDir tmp_;
};

TEST_F(FinetuneApi, JobSucceedsAndItsModelAnswersWithTheTrainedAdapter) {
  auto app = StartApp(FinetuneAppOptions(tmp_));
  ASSERT_TRUE(app);
  std::mutex mu;
  std::map<std::string, std::vector<int32_t>> seen;
  app->service().SetGenerationObserver([&](const orchestrator::GenerationResult& g) {
    std::lock_guard lk(mu);
    seen[g.model] = g.tokens;
  });
  const uint16_t port = app->port();
  json body{{"model", "tiny"}, {"training_file", "map.jsonl"}, {"suffix", "colors"},
            {"hyperparameters", {{"steps", 20}, {"batch_size", 8}, {"learning_rate", 5e-3}, {"valid_fraction", 0}}}};
  auto r = Call(port, "POST", "/v1/fine_tuning/jobs", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json created = json::parse(r.body);
  EXPECT_EQ(created["object"], "fine_tuning.job");
  EXPECT_EQ(created["status"], "running");
  EXPECT_EQ(created["model"], "tiny");
  EXPECT_TRUE(created["fine_tuned_model"].is_null());
  const std::string id = created["id"];
  const json done = WaitFor(port, id, [](const json& j) { return j["status"] != "running"; });
  ASSERT_EQ(done["status"], "succeeded") << done.dump();
  EXPECT_EQ(done["step"], 20);
  EXPECT_EQ(done["total_steps"], 20);
  EXPECT_GT(done["trained_tokens"].get<int64_t>(), 0);
  EXPECT_EQ(done["data"]["train"], 8);
  const std::string ft = done["fine_tuned_model"];
  EXPECT_EQ(ft.rfind("tiny:ft-colors-", 0), 0u) << ft;

  // Events: newest first, one metrics event per step with the loss falling.
  const json ev = Get(port, "/v1/fine_tuning/jobs/" + id + "/events?limit=1000");
  std::map<int64_t, double> loss;
  for (const json& e : ev["data"]) {
    EXPECT_EQ(e["object"], "fine_tuning.job.event");
    if (e["type"] == "metrics" && e["data"].contains("train_loss")) {
      loss[e["data"]["step"].get<int64_t>()] = e["data"]["train_loss"].get<double>();
      EXPECT_GT(e["data"]["tokens_per_s"].get<double>(), 0);
    }
  }
  ASSERT_EQ(loss.size(), 20u);
  EXPECT_LT(loss[20], loss[1] / 5);
  EXPECT_EQ(ev["data"][0]["message"].get<std::string>().find("succeeded") != std::string::npos, true) << ev["data"][0];
  EXPECT_EQ(Get(port, "/v1/fine_tuning/jobs/" + id + "/events")["data"].size(), 20u);  // default limit

  // The fine-tuned model is listed and answers with the job's adapter.
  bool listed = false;
  const json models = Get(port, "/v1/models");
  for (const json& m : models["data"]) listed |= m["id"] == ft;
  EXPECT_TRUE(listed) << models.dump();
  auto complete = [&](const std::string& model) {
    json b{{"model", model}, {"prompt", kPrompt}, {"max_tokens", kTokens}, {"temperature", 0}};
    auto c = Call(port, "POST", "/v1/completions", b.dump());
    EXPECT_EQ(c.status, 200) << c.body;
    std::lock_guard lk(mu);
    return seen[model];
  };
  const auto base_tokens = complete("tiny");
  const auto ft_tokens = complete(ft);
  auto m = qwenmux::testing::LoadLoraBase();
  engine::GenerateOptions go;
  go.max_tokens = kTokens;
  go.sampler.temperature = 0;
  auto ref_base = m->Generate(m->tokenizer().Encode(kPrompt), go);
  ASSERT_TRUE(ref_base.ok());
  auto aid = m->LoadAdapter(tmp_ / ("work/fine_tuning/" + id + "/adapter.gguf"));
  ASSERT_TRUE(aid.ok()) << aid.status().ToString();
  go.adapter = *aid;
  auto ref_ft = m->Generate(m->tokenizer().Encode(kPrompt), go);
  ASSERT_TRUE(ref_ft.ok());
  EXPECT_EQ(base_tokens, ref_base->tokens);
  EXPECT_EQ(ft_tokens, ref_ft->tokens);
  EXPECT_NE(ft_tokens, base_tokens);

  // Listed; a job's JSON is the same through the list.
  const json list = Get(port, "/v1/fine_tuning/jobs");
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["id"], id);
  // Cancelling a finished job changes nothing.
  auto c = Call(port, "POST", "/v1/fine_tuning/jobs/" + id + "/cancel");
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(json::parse(c.body)["status"], "succeeded");
}

TEST_F(FinetuneApi, CancelStopsTrainingAtTheNextStep) {
  auto app = StartApp(FinetuneAppOptions(tmp_));
  ASSERT_TRUE(app);
  const uint16_t port = app->port();
  json body{{"model", "tiny"}, {"training_file", "map.jsonl"}, {"hyperparameters", {{"steps", 1000000}, {"batch_size", 2}}}};
  auto r = Call(port, "POST", "/v1/fine_tuning/jobs", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string id = json::parse(r.body)["id"];
  WaitFor(port, id, [](const json& j) { return j["step"].get<int64_t>() >= 1; });
  auto c = Call(port, "POST", "/v1/fine_tuning/jobs/" + id + "/cancel");
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(json::parse(c.body)["status"], "cancelled");
  const json j = WaitFor(port, id, [](const json& j) { return !j["training"].get<bool>(); });
  EXPECT_EQ(j["status"], "cancelled");
  EXPECT_LT(j["step"].get<int64_t>(), 1000000);
  EXPECT_TRUE(j["fine_tuned_model"].is_null());
  EXPECT_EQ(app->finetune_jobs().running(), 0);
  const json ev = Get(port, "/v1/fine_tuning/jobs/" + id + "/events");
  EXPECT_NE(ev["data"][0]["message"].get<std::string>().find("cancelled"), std::string::npos) << ev.dump();
  // The slot is free again: a new job starts (max one at once by default).
  auto again = Call(port, "POST", "/v1/fine_tuning/jobs", body.dump());
  ASSERT_EQ(again.status, 200) << again.body;
  // A second one while it trains: 429.
  auto full = Call(port, "POST", "/v1/fine_tuning/jobs", body.dump());
  EXPECT_EQ(full.status, 429) << full.body;
}

TEST_F(FinetuneApi, ARestartedServerResumesAtTheCheckpointOrFailsWithTheReason) {
  json body{{"model", "tiny"}, {"training_file", "map.jsonl"},
            {"hyperparameters", {{"steps", 1000000}, {"batch_size", 2}, {"checkpoint_every", 1}}}};
  std::string id;
  int64_t stopped_at = 0;
  {
    auto app = StartApp(FinetuneAppOptions(tmp_));
    ASSERT_TRUE(app);
    auto r = Call(app->port(), "POST", "/v1/fine_tuning/jobs", body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    id = json::parse(r.body)["id"];
    WaitFor(app->port(), id, [](const json& j) { return j["step"].get<int64_t>() >= 2; });
    app->Shutdown();  // the job stops at its next step, writes its checkpoint and stays "running" on disk
  }
  {
    auto app = StartApp(FinetuneAppOptions(tmp_));
    ASSERT_TRUE(app);
    const json j = Get(app->port(), "/v1/fine_tuning/jobs/" + id);
    EXPECT_EQ(j["status"], "running") << j.dump();
    stopped_at = j["step"].get<int64_t>();  // the checkpoint's step (later steps run again)
    EXPECT_GE(stopped_at, 2);
    const json later = WaitFor(app->port(), id, [&](const json& j) { return j["step"].get<int64_t>() > stopped_at; });
    EXPECT_EQ(later["status"], "running");
    const json ev = Get(app->port(), "/v1/fine_tuning/jobs/" + id + "/events?limit=10000");
    bool resumed = false;
    for (const json& e : ev["data"]) resumed |= e["message"].get<std::string>().find("Resuming") != std::string::npos;
    EXPECT_TRUE(resumed);
  }
  {  // The base is now served under another name: the job fails, saying why.
    auto app = StartApp(FinetuneAppOptions(tmp_, "other"));
    ASSERT_TRUE(app);
    const json j = Get(app->port(), "/v1/fine_tuning/jobs/" + id);
    EXPECT_EQ(j["status"], "failed");
    EXPECT_NE(j["error"]["message"].get<std::string>().find("model tiny is no longer served"), std::string::npos) << j.dump();
    EXPECT_EQ(app->finetune_jobs().running(), 0);
  }
}

TEST_F(FinetuneApi, BadInputIsRefusedNamingTheField) {
  std::ofstream(tmp_ / "data/bad.jsonl") << "not json\n{\"prompt\": \"x\"}\n";
  std::ofstream(tmp_ / "outside.jsonl") << "{}\n";
  auto app = StartApp(FinetuneAppOptions(tmp_));
  ASSERT_TRUE(app);
  const uint16_t port = app->port();
  auto post = [&](const json& b, int status, const std::string& param) {
    auto r = Call(port, "POST", "/v1/fine_tuning/jobs", b.dump());
    EXPECT_EQ(r.status, status) << b.dump() << " -> " << r.body;
    if (r.status >= 400) {
      const json e = json::parse(r.body)["error"];
      EXPECT_EQ(e["param"], param) << r.body;
      EXPECT_NE(e["message"].get<std::string>().find(param), std::string::npos) << r.body;
    }
  };
  const json ok{{"model", "tiny"}, {"training_file", "map.jsonl"}};
  auto with = [&](const char* k, json v) {
    json b = ok;
    b[k] = std::move(v);
    return b;
  };
  auto hyper = [&](json h) { return with("hyperparameters", std::move(h)); };
  post(json{{"training_file", "map.jsonl"}}, 400, "model");
  post(with("model", "nope"), 400, "model");
  post(with("model", kLoraBase), 400, "model");  // a file path
  post(json{{"model", "tiny"}}, 400, "training_file");
  post(with("training_file", "../outside.jsonl"), 403, "training_file");
  post(with("training_file", tmp_ / "outside.jsonl"), 403, "training_file");
  post(with("training_file", "missing.jsonl"), 400, "training_file");
  post(with("training_file", 7), 400, "training_file");
  post(with("validation_file", "/etc/passwd"), 403, "validation_file");
  post(with("suffix", "a:b"), 400, "suffix");
  post(with("colour", 1), 400, "colour");
  post(with("method", json{{"type", "dpo"}}), 400, "method.type");
  post(hyper({{"n_epochs", -1}}), 400, "hyperparameters.n_epochs");
  post(hyper({{"n_epochs", 1}, {"steps", 2}}), 400, "hyperparameters.steps");
  post(hyper({{"batch_size", 0}}), 400, "hyperparameters.batch_size");
  post(hyper({{"learning_rate_multiplier", "fast"}}), 400, "hyperparameters.learning_rate_multiplier");
  post(hyper({{"rank", 0}}), 400, "hyperparameters.rank");
  post(hyper({{"targets", "q,zz"}}), 400, "hyperparameters.targets");
  post(hyper({{"schedule", "wavy"}}), 400, "hyperparameters.schedule");
  post(hyper({{"bogus", 1}}), 400, "hyperparameters.bogus");
  post(hyper(json::array()), 400, "hyperparameters");
  EXPECT_EQ(Get(port, "/v1/fine_tuning/jobs")["data"].size(), 0u);

  // Unknown jobs: 404 everywhere.
  EXPECT_EQ(Call(port, "GET", "/v1/fine_tuning/jobs/ftjob-nope").status, 404);
  EXPECT_EQ(Call(port, "GET", "/v1/fine_tuning/jobs/ftjob-nope/events").status, 404);
  EXPECT_EQ(Call(port, "POST", "/v1/fine_tuning/jobs/ftjob-nope/cancel").status, 404);
  EXPECT_EQ(Call(port, "POST", "/v1/fine_tuning/jobs/ftjob-nope/resume").status, 404);

  // A file without a usable line: the job fails, naming the file and the first bad line.
  auto r = Call(port, "POST", "/v1/fine_tuning/jobs", with("training_file", "bad.jsonl").dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = WaitFor(port, json::parse(r.body)["id"], [](const json& j) { return j["status"] != "running"; });
  EXPECT_EQ(j["status"], "failed");
  EXPECT_EQ(j["error"]["code"], "invalid_training_file");
  EXPECT_NE(j["error"]["message"].get<std::string>().find("no usable example"), std::string::npos) << j.dump();
  EXPECT_NE(j["error"]["message"].get<std::string>().find("line 1"), std::string::npos) << j.dump();
}

TEST_F(FinetuneApi, OffWithoutDataRootsOrWithZeroJobs) {
  AppOptions o = FinetuneAppOptions(tmp_);
  o.jobs.data_roots.clear();
  auto app = StartApp(o);
  ASSERT_TRUE(app);
  auto r = Call(app->port(), "POST", "/v1/fine_tuning/jobs", json{{"model", "tiny"}, {"training_file", "map.jsonl"}}.dump());
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("--data-root"), std::string::npos) << r.body;
  app.reset();
  AppOptions off = FinetuneAppOptions(tmp_);
  off.finetune.max_running = 0;
  app = StartApp(off);
  ASSERT_TRUE(app);
  r = Call(app->port(), "POST", "/v1/fine_tuning/jobs", json{{"model", "tiny"}, {"training_file", "map.jsonl"}}.dump());
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("--max-finetune-jobs 0"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace qwenmux::server
