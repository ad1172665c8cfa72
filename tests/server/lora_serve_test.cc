// LoRA adapters over HTTP (serve --adapter): a request names "<base>:<adapter>" in the OpenAI and
// Ollama dialects and gets the tokens engine::Model::Generate gives with the same adapter
// in-process (not the base's); different adapters and none share the batch with the tokens each
// gets alone; lora_scale (0 is the base); listing in /v1/models and /api/tags, loaded adapters in
// /api/ps; errors: an unknown adapter (404 listing what exists), a bad lora_scale (400), a file
// that went bad after startup (an error naming it, the server keeps serving), bad files at
// startup (App::Create fails naming the file).
#include <future>
#include <map>
#include <mutex>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "engine/lora.h"
#include "lora/lora_util.h"
#include "server/app.h"
#include "server/generation.h"
#include "server/http_client.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::kLoraBase;
using qwenmux::testing::kLoraGguf;
using qwenmux::testing::kLoraPeft;
using qwenmux::testing::LoraTempDir;

const char* kPrompt = "The adapter says";
constexpr int kTokens = 8;

void WriteSynthAdapter(const std::string& path, const std::string& base = kLoraBase) {
  auto f = gguf::File::Open(base);
  ASSERT_TRUE(f.ok());
  auto mc = model::ReadConfig(*f);
  ASSERT_TRUE(mc.ok());
  auto t = engine::SynthLora(*f, *mc, 8, 400.0f, 11);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_TRUE(engine::WriteLoraGguf(*t, path).ok());
}

// Options of a small server: the given model and adapter flags, 64 tokens of context, one thread.
AppOptions AdapterAppOptions(std::vector<std::string> adapters, std::vector<std::string> models = {kLoraBase + "=tiny"}) {
  AppOptions o;
  o.model_flags = std::move(models);
  o.adapter_flags = std::move(adapters);
  o.http.port = 0;
  o.models.n_ctx = 64;
  o.models.threads = 1;
  return o;
}

class LoraServe : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new LoraTempDir();
    WriteSynthAdapter(*tmp_ / "synth.gguf");
    qwenmux::testing::WriteBytes(*tmp_ / "flaky.gguf", qwenmux::testing::ReadBytes(kLoraGguf));
    AppOptions o;
    o.model_flags = {kLoraBase + "=tiny"};
    o.adapter_flags = {"gguf=" + kLoraGguf, "peft=" + kLoraPeft + "@tiny:0.5", "synth=" + (*tmp_ / "synth.gguf") + "@tiny",
                       "flaky=" + (*tmp_ / "flaky.gguf")};
    o.http.port = 0;
    o.models.n_ctx = 256;
    o.models.parallel = 4;
    o.models.threads = 1;
    auto app = App::Create(std::move(o), [](const std::string&) {});
    ASSERT_TRUE(app.ok()) << app.status().ToString();
    app_ = std::move(*app).release();
    app_->service().SetGenerationObserver([](const orchestrator::GenerationResult& g) {
      std::lock_guard lk(mu_);
      seen_[g.model] = g.tokens;
    });
    ASSERT_TRUE(app_->Start().ok());
  }
  static void TearDownTestSuite() {
    delete app_;
    app_ = nullptr;
    delete tmp_;
    tmp_ = nullptr;
  }
  static uint16_t port() { return app_->port(); }

  // In-process reference: Model::Generate with the adapter file at `scale` (none: "").
  static std::vector<int32_t> Reference(const std::string& adapter_file, float scale = 1.0f) {
    auto m = qwenmux::testing::LoadLoraBase();
    engine::GenerateOptions o;
    o.max_tokens = kTokens;
    o.sampler.temperature = 0;
    if (!adapter_file.empty()) {
      auto id = m->LoadAdapter(adapter_file);
      EXPECT_TRUE(id.ok()) << id.status().ToString();
      o.adapter = *id;
      o.adapter_scale = scale;
    }
    auto r = m->Generate(m->tokenizer().Encode(kPrompt), o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->tokens : std::vector<int32_t>{};
  }

  static json Completion(const std::string& model, std::optional<double> lora_scale = std::nullopt) {
    json b{{"model", model}, {"prompt", kPrompt}, {"max_tokens", kTokens}, {"temperature", 0}};
    if (lora_scale) b["lora_scale"] = *lora_scale;
    return b;
  }
  // Tokens the server generated for `body` (through the generation observer), by served name.
  static std::vector<int32_t> Tokens(const json& body, const std::string& served) {
    auto r = Call(port(), "POST", "/v1/completions", body.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status == 200) {
      EXPECT_EQ(json::parse(r.body)["model"], served);
    }
    std::lock_guard lk(mu_);
    return seen_[served];
  }

  static App* app_;
  static LoraTempDir* tmp_;
  static std::mutex mu_;
  static std::map<std::string, std::vector<int32_t>> seen_;
};
App* LoraServe::app_ = nullptr;
LoraTempDir* LoraServe::tmp_ = nullptr;
std::mutex LoraServe::mu_;
std::map<std::string, std::vector<int32_t>> LoraServe::seen_;

TEST_F(LoraServe, AdapterTokensEqualInProcessGenerateAndDifferFromTheBase) {
  const auto base = Reference("");
  const auto gguf = Reference(kLoraGguf);
  ASSERT_EQ(gguf.size(), static_cast<size_t>(kTokens));
  EXPECT_NE(gguf, base);
  EXPECT_EQ(Tokens(Completion("tiny"), "tiny"), base);
  EXPECT_EQ(Tokens(Completion("tiny:gguf"), "tiny:gguf"), gguf);
  // The PEFT directory at its configured scale 0.5; a request's lora_scale replaces it.
  EXPECT_EQ(Tokens(Completion("tiny:peft"), "tiny:peft"), Reference(kLoraPeft, 0.5f));
  EXPECT_EQ(Tokens(Completion("tiny:peft", 1.0), "tiny:peft"), gguf);
  // lora_scale 0 is the base model.
  EXPECT_EQ(Tokens(Completion("tiny:gguf", 0.0), "tiny:gguf"), base);

  // Ollama dialect: the same name, options.lora_scale.
  json g{{"model", "tiny:gguf"}, {"prompt", kPrompt}, {"raw", true}, {"stream", false},
         {"options", {{"temperature", 0}, {"num_predict", kTokens}}}};
  auto r = Call(port(), "POST", "/api/generate", g.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["model"], "tiny:gguf");
  {
    std::lock_guard lk(mu_);
    EXPECT_EQ(seen_["tiny:gguf"], gguf);
  }
  g["options"]["lora_scale"] = 0;
  r = Call(port(), "POST", "/api/generate", g.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  std::lock_guard lk(mu_);
  EXPECT_EQ(seen_["tiny:gguf"], base);
}

TEST_F(LoraServe, DifferentAdaptersAndNoneShareTheBatch) {
  const auto alone_gguf = Tokens(Completion("tiny:gguf"), "tiny:gguf");
  const auto alone_synth = Tokens(Completion("tiny:synth"), "tiny:synth");
  const auto alone_base = Tokens(Completion("tiny"), "tiny");
  EXPECT_NE(alone_gguf, alone_synth);
  EXPECT_EQ(alone_synth, Reference(*tmp_ / "synth.gguf"));
  for (int round = 0; round < 2; ++round) {
    std::vector<std::future<qwenmux::testing::HttpResult>> rs;
    for (const char* m : {"tiny:gguf", "tiny:synth", "tiny"}) {
      rs.push_back(std::async(std::launch::async, [m] { return Call(port(), "POST", "/v1/completions", Completion(m).dump()); }));
    }
    for (auto& f : rs) ASSERT_EQ(f.get().status, 200);
    std::lock_guard lk(mu_);
    EXPECT_EQ(seen_["tiny:gguf"], alone_gguf);
    EXPECT_EQ(seen_["tiny:synth"], alone_synth);
    EXPECT_EQ(seen_["tiny"], alone_base);
  }
}

TEST_F(LoraServe, ListingAndPs) {
  auto models = Call(port(), "GET", "/v1/models");
  ASSERT_EQ(models.status, 200);
  bool found = false;
  const json models_json = json::parse(models.body);
  for (const json& m : models_json["data"]) {
    if (m["id"] == "tiny:gguf") {
      found = true;
      EXPECT_EQ(m["parent"], "tiny");
      EXPECT_EQ(m["adapter"]["base"], "tiny");
    }
  }
  EXPECT_TRUE(found) << models.body;
  auto one = Call(port(), "GET", "/v1/models/tiny%3Apeft");
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(json::parse(one.body)["adapter"]["scale"], 0.5);
  auto tags = Call(port(), "GET", "/api/tags");
  ASSERT_EQ(tags.status, 200);
  found = false;
  const json tags_json = json::parse(tags.body);
  for (const json& m : tags_json["models"]) {
    if (m["name"] == "tiny:synth") {
      found = true;
      EXPECT_EQ(m["details"]["parent_model"], "tiny");
    }
  }
  EXPECT_TRUE(found) << tags.body;

  // Loaded after a request: /api/ps shows it with its base and its bytes (as the manager counts them).
  ASSERT_EQ(Call(port(), "POST", "/v1/completions", Completion("tiny:gguf").dump()).status, 200);
  auto ps = Call(port(), "GET", "/api/ps");
  ASSERT_EQ(ps.status, 200);
  uint64_t listed = 0, model_bytes = 0;
  const json ps_json = json::parse(ps.body);
  for (const json& m : ps_json["models"]) {
    if (m["name"] == "tiny:gguf") {
      EXPECT_EQ(m["qwenmux"]["base"], "tiny");
      listed = m["size"].get<uint64_t>();
    } else if (m["name"] == "tiny") {
      model_bytes = m["qwenmux"]["ram_bytes"].get<uint64_t>();
    }
  }
  uint64_t adapters = 0;
  for (const auto& info : app_->service().manager().Snapshot()) {
    for (const auto& a : info.adapters) {
      adapters += a.bytes;
      if (a.name == "gguf") {
        EXPECT_EQ(a.bytes, listed);
      }
    }
  }
  EXPECT_GT(listed, 0u) << ps.body;
  EXPECT_GE(app_->service().manager().in_use_bytes(), model_bytes + adapters);
}

TEST_F(LoraServe, ErrorsAndTheServerKeepsServing) {
  // Unknown adapter: 404 listing the model's adapters, both dialects.
  auto r = Call(port(), "POST", "/v1/completions", Completion("tiny:nope").dump());
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_NE(r.body.find("tiny:gguf"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("tiny:synth"), std::string::npos) << r.body;
  r = Call(port(), "POST", "/api/generate", json{{"model", "tiny:nope"}, {"prompt", "x"}, {"stream", false}}.dump());
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_NE(r.body.find("tiny:gguf"), std::string::npos) << r.body;
  // An unknown base is an unknown model.
  r = Call(port(), "POST", "/v1/completions", Completion("other:gguf").dump());
  EXPECT_EQ(r.status, 404) << r.body;

  // lora_scale: a number within range, on an adapter model only.
  json bad = Completion("tiny:gguf");
  bad["lora_scale"] = "high";
  r = Call(port(), "POST", "/v1/completions", bad.dump());
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("lora_scale"), std::string::npos) << r.body;
  r = Call(port(), "POST", "/v1/completions", R"({"model":"tiny:gguf","prompt":"x","lora_scale":1e300})");
  EXPECT_EQ(r.status, 400) << r.body;
  r = Call(port(), "POST", "/v1/completions", Completion("tiny", 0.5).dump());
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("not an adapter"), std::string::npos) << r.body;
  r = Call(port(), "POST", "/api/generate",
           json{{"model", "tiny:gguf"}, {"prompt", "x"}, {"stream", false}, {"options", {{"lora_scale", "x"}}}}.dump());
  EXPECT_EQ(r.status, 400) << r.body;
  // Adapters generate; they do not embed.
  r = Call(port(), "POST", "/v1/embeddings", json{{"model", "tiny:gguf"}, {"input", "x"}}.dump());
  EXPECT_EQ(r.status, 400) << r.body;

  // A file that went bad after startup: the request fails naming it, the server keeps serving.
  const std::string bytes = qwenmux::testing::ReadBytes(kLoraGguf);
  qwenmux::testing::WriteBytes(*tmp_ / "flaky.gguf", bytes.substr(0, bytes.size() / 3));
  r = Call(port(), "POST", "/v1/completions", Completion("tiny:flaky").dump());
  EXPECT_GE(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("flaky.gguf"), std::string::npos) << r.body;
  EXPECT_EQ(Call(port(), "POST", "/v1/completions", Completion("tiny:gguf").dump()).status, 200);
  EXPECT_EQ(Call(port(), "POST", "/v1/completions", Completion("tiny").dump()).status, 200);
  qwenmux::testing::WriteBytes(*tmp_ / "flaky.gguf", bytes);
  EXPECT_EQ(Call(port(), "POST", "/v1/completions", Completion("tiny:flaky").dump()).status, 200);
}

// Bad adapter files given to serve stop it at startup with an error naming the file.
TEST(LoraServeStartup, BadFilesAreNamed) {
  LoraTempDir tmp;
  const std::string bytes = qwenmux::testing::ReadBytes(kLoraGguf);
  qwenmux::testing::WriteBytes(tmp / "trunc.gguf", bytes.substr(0, bytes.size() - 1000));
  // An adapter for the tiny MoE model: another architecture.
  WriteSynthAdapter(tmp / "moe.gguf", qwenmux::testing::ModelPath("tiny-moe.q4_k_m.gguf"));
  // The test adapter with one projection's input halved: the wrong base shape.
  auto t = engine::ReadLoraGguf(kLoraGguf);
  ASSERT_TRUE(t.ok());
  auto& p = t->pairs[0].p;
  p.in /= 2;
  p.a = p.a.first(static_cast<size_t>(p.rank * p.in));
  ASSERT_TRUE(engine::WriteLoraGguf(*t, tmp / "shape.gguf").ok());
  auto create = [](std::vector<std::string> adapters, std::vector<std::string> models = {kLoraBase + "=tiny"}) {
    auto app = App::Create(AdapterAppOptions(std::move(adapters), std::move(models)), [](const std::string&) {});
    return app.ok() ? std::string("ok") : app.status().ToString();
  };
  for (const char* f : {"trunc.gguf", "moe.gguf", "shape.gguf", "missing.gguf"}) {
    const std::string e = create({"a=" + (tmp / f)});
    EXPECT_NE(e.find(tmp / f), std::string::npos) << e;
    EXPECT_NE(e.find("--adapter"), std::string::npos) << e;
  }
  EXPECT_NE(create({"a=" + kLoraGguf + "@nope"}).find("not served"), std::string::npos);
  // Two chat models: the base must be named.
  EXPECT_NE(create({"a=" + kLoraGguf}, {kLoraBase + "=tiny", kLoraBase + "=tiny2"}).find("@BASE"), std::string::npos);
  // "tiny:a" is already a model's name.
  EXPECT_NE(create({"a=" + kLoraGguf + "@tiny"}, {kLoraBase + "=tiny", kLoraBase + "=tiny:a"}).find("clashes"),
            std::string::npos);
  EXPECT_EQ(create({"a=" + kLoraGguf + "@tiny:0.5", "b=" + kLoraPeft}), "ok");
}

// Under a budget with room for the model and one adapter: using the second evicts the first
// (least recently used; /api/ps shows the change), and the first reloads on its next use with
// the same tokens.
TEST(LoraServeEviction, SmallBudgetEvictsAndReloads) {
  LoraTempDir tmp;
  WriteSynthAdapter(tmp / "synth.gguf");
  auto options = [&](const std::string& budget) {
    AppOptions o;
    o.model_flags = {kLoraBase + "=tiny"};
    o.adapter_flags = {"gguf=" + kLoraGguf, "synth=" + (tmp / "synth.gguf")};
    o.memory_budget = budget;
    o.http.port = 0;
    o.models.n_ctx = 256;
    o.models.parallel = 2;
    o.models.threads = 1;
    return o;
  };
  std::mutex mu;
  std::map<std::string, std::vector<int32_t>> seen;
  auto start = [&](AppOptions o) {
    auto app = App::Create(std::move(o), [](const std::string&) {});
    EXPECT_TRUE(app.ok()) << app.status().ToString();
    if (!app.ok()) return std::unique_ptr<App>();
    (*app)->service().SetGenerationObserver([&](const orchestrator::GenerationResult& g) {
      std::lock_guard lk(mu);
      seen[g.model] = g.tokens;
    });
    EXPECT_TRUE((*app)->Start().ok());
    return std::move(*app);
  };
  auto use = [&](App& app, const std::string& model) {
    auto r = Call(app.port(), "POST", "/v1/completions",
                  json{{"model", model}, {"prompt", kPrompt}, {"max_tokens", kTokens}, {"temperature", 0}}.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    std::lock_guard lk(mu);
    return seen[model];
  };
  auto loaded = [](App& app) {
    std::vector<std::string> names;
    const json ps = json::parse(Call(app.port(), "GET", "/api/ps").body);
    for (const json& m : ps["models"]) {
      if (m.contains("qwenmux") && m["qwenmux"].value("adapter", false)) names.push_back(m["name"]);
    }
    return names;
  };
  // Sizes, from a server without a budget of its own.
  uint64_t model_bytes = 0, gguf_bytes = 0, synth_bytes = 0;
  std::vector<int32_t> gguf_tokens;
  {
    auto app = start(options(""));
    ASSERT_TRUE(app);
    gguf_tokens = use(*app, "tiny:gguf");
    use(*app, "tiny:synth");
    for (const auto& info : app->service().manager().Snapshot()) {
      model_bytes = info.bytes;
      for (const auto& a : info.adapters) (a.name == "gguf" ? gguf_bytes : synth_bytes) = a.bytes;
    }
  }
  ASSERT_GT(gguf_bytes, 0u);
  ASSERT_GT(synth_bytes, 0u);
  // Compiled constraints of earlier tests in this process count against the budget too.
  const uint64_t budget = model_bytes + ConstraintCacheBytes() + std::max(gguf_bytes, synth_bytes) +
                          std::min(gguf_bytes, synth_bytes) / 2;
  if (budget < orchestrator::MemoryConfig::kMinBudgetBytes) GTEST_SKIP() << "the tiny model is below the minimum budget";
  auto app = start(options(std::to_string(budget)));
  ASSERT_TRUE(app);
  EXPECT_EQ(use(*app, "tiny:gguf"), gguf_tokens);
  EXPECT_EQ(loaded(*app), std::vector<std::string>{"tiny:gguf"});
  use(*app, "tiny:synth");
  EXPECT_EQ(loaded(*app), std::vector<std::string>{"tiny:synth"});
  EXPECT_EQ(use(*app, "tiny:gguf"), gguf_tokens);  // reloaded
  EXPECT_EQ(loaded(*app), std::vector<std::string>{"tiny:gguf"});
  EXPECT_LE(app->service().manager().in_use_bytes(), budget);
}

// Ollama-style "name:tag" models: the whole name is a model first; "<name:tag>:<adapter>" splits at
// the last ':' (so the base keeps its tag).
TEST(LoraServeNames, TagStyleModelNames) {
  auto app = App::Create(AdapterAppOptions({"gguf=" + kLoraGguf + "@qwen3:tiny"}, {kLoraBase + "=qwen3:tiny"}),
                         [](const std::string&) {});
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  ASSERT_TRUE((*app)->Start().ok());
  auto ask = [&](const std::string& model) {
    return Call((*app)->port(), "POST", "/v1/completions",
                json{{"model", model}, {"prompt", "x"}, {"max_tokens", 1}}.dump());
  };
  auto r = ask("qwen3:tiny");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["model"], "qwen3:tiny");
  r = ask("qwen3:tiny:gguf");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["model"], "qwen3:tiny:gguf");
  r = ask("qwen3:gguf");  // "qwen3" is no model: not an adapter either
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_NE(r.body.find("qwen3:tiny:gguf"), std::string::npos) << r.body;  // listed among what exists
}

// `qwenmux ps` (the binary, against a server in this process) lists a loaded adapter as its own
// row "<base>:<adapter>" naming its base.
TEST(LoraServeCli, PsShowsLoadedAdapters) {
  auto app = App::Create(AdapterAppOptions({"gguf=" + kLoraGguf}), [](const std::string&) {});
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  ASSERT_TRUE((*app)->Start().ok());
  const uint16_t port = (*app)->port();
  auto r = Call(port, "POST", "/v1/completions", json{{"model", "tiny:gguf"}, {"prompt", "x"}, {"max_tokens", 1}}.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string cmd = ::qwenmux::testing::QwenmuxBinary() + " ps --port " + std::to_string(port);
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof(buf), p)) out += buf;
  EXPECT_EQ(pclose(p), 0);
  EXPECT_NE(out.find("tiny:gguf"), std::string::npos) << out;
  EXPECT_NE(out.find("with tiny"), std::string::npos) << out;
}

}  // namespace
}  // namespace qwenmux::server
