// LoRA adapters in the model manager: loaded on first use into the leased model, counted in the
// memory figure and Snapshot(), evicted least-recently-used under the budget (never while leased),
// reloaded on the next use with the same output; and the `adapters:` key of qwenmux.yaml and
// serve's --adapter flag.
#include <gtest/gtest.h>

#include <mutex>

#include "engine/lora.h"
#include "lora/lora_util.h"
#include "orchestrator/config/config.h"
#include "orchestrator/manager/model_manager.h"
#include "orchestrator/manager_test_util.h"
#include "orchestrator/setup/setup.h"

namespace qwenmux::orchestrator {
namespace {

using qwenmux::testing::kLoraGguf;
using qwenmux::testing::LoraTempDir;
using test::FakeClock;
using test::TestOptions;
using test::TinySpec;

// A second adapter for the tiny model (random, rank 8 on all seven projections) in `path`.
void WriteSynthAdapter(const std::string& path) {
  auto f = gguf::File::Open(TinySpec("x").path);
  ASSERT_TRUE(f.ok());
  auto mc = model::ReadConfig(*f);
  ASSERT_TRUE(mc.ok());
  auto t = engine::SynthLora(*f, *mc, 8, 400.0f, 7);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_TRUE(engine::WriteLoraGguf(*t, path).ok());
}

std::vector<int32_t> Greedy(engine::Model& m, int32_t adapter) {
  engine::GenerateOptions o;
  o.max_tokens = 6;
  o.sampler.temperature = 0;
  o.adapter = adapter;
  auto r = m.Generate(m.tokenizer().Encode("The adapter says"), o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r->tokens : std::vector<int32_t>{};
}

struct Events {
  std::mutex mu;
  std::vector<ModelEvent> all;
  std::function<void(const ModelEvent&)> Sink() {
    return [this](const ModelEvent& e) {
      std::lock_guard lk(mu);
      all.push_back(e);
    };
  }
  int Count(const std::string& kind, const std::string& name, const std::string& reason = "") {
    std::lock_guard lk(mu);
    int n = 0;
    for (const auto& e : all) n += e.kind == kind && e.name == name && (reason.empty() || e.reason == reason);
    return n;
  }
};

TEST(LoraResidency, LoadsOnFirstUseCountsBytesEvictsLruAndReloads) {
  LoraTempDir tmp;
  WriteSynthAdapter(tmp / "synth.gguf");
  // Sizes, measured in a manager without a budget.
  uint64_t model_bytes = 0, gguf_bytes = 0, synth_bytes = 0;
  std::vector<int32_t> base_tokens, gguf_tokens, synth_tokens;
  {
    Metrics metrics;
    ModelManager probe(TestOptions(0, &metrics), {TinySpec("tiny")});
    ASSERT_TRUE(probe.RegisterAdapter({"gguf", "tiny", kLoraGguf, 1.0f, false}).ok());
    ASSERT_TRUE(probe.RegisterAdapter({"synth", "tiny", tmp / "synth.gguf", 1.0f, false}).ok());
    auto lease = probe.Acquire("tiny");
    ASSERT_TRUE(lease.ok());
    model_bytes = probe.in_use_bytes();
    // Registered, not loaded: nothing in the snapshot until first use.
    EXPECT_TRUE(probe.Snapshot().at(0).adapters.empty());
    {
      auto g = probe.AcquireAdapter(*lease, "gguf");
      ASSERT_TRUE(g.ok()) << g.status().ToString();
      gguf_bytes = lease->model().adapter(g->id())->bytes();
      EXPECT_EQ(probe.in_use_bytes(), model_bytes + gguf_bytes);
      const auto snap = probe.Snapshot();
      ASSERT_EQ(snap.at(0).adapters.size(), 1u);
      EXPECT_EQ(snap[0].adapters[0].name, "gguf");
      EXPECT_EQ(snap[0].adapters[0].base, "tiny");
      EXPECT_EQ(snap[0].adapters[0].bytes, gguf_bytes);
      EXPECT_EQ(snap[0].adapters[0].in_use, 1);
      gguf_tokens = Greedy(lease->model(), g->id());
      auto s = probe.AcquireAdapter(*lease, "synth");
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      synth_bytes = lease->model().adapter(s->id())->bytes();
      synth_tokens = Greedy(lease->model(), s->id());
    }
    base_tokens = Greedy(lease->model(), -1);
    EXPECT_NE(gguf_tokens, base_tokens);
    EXPECT_NE(synth_tokens, base_tokens);
    auto unknown = probe.AcquireAdapter(*lease, "nope");
    EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
    EXPECT_NE(unknown.status().message().find("tiny:gguf, tiny:synth"), std::string::npos) << unknown.status().message();
  }
  ASSERT_GT(gguf_bytes, 0u);
  ASSERT_GT(synth_bytes, 0u);

  // A budget with room for the model and one adapter, not both.
  Metrics metrics;
  FakeClock clock;
  Events events;
  ManagerOptions o = TestOptions(model_bytes + std::max(gguf_bytes, synth_bytes) + std::min(gguf_bytes, synth_bytes) / 2,
                                 &metrics, &clock);
  o.on_event = events.Sink();
  ModelManager mgr(o, {TinySpec("tiny")});
  ASSERT_TRUE(mgr.RegisterAdapter({"gguf", "tiny", kLoraGguf, 1.0f, false}).ok());
  ASSERT_TRUE(mgr.RegisterAdapter({"synth", "tiny", tmp / "synth.gguf", 1.0f, false}).ok());
  auto lease = mgr.Acquire("tiny");
  ASSERT_TRUE(lease.ok());
  int32_t first_id = -1;
  {
    auto g = mgr.AcquireAdapter(*lease, "gguf");
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    first_id = g->id();
    // While gguf is leased, synth cannot fit: a clear error naming the adapter, gguf stays.
    clock.Advance(std::chrono::seconds(1));
    auto s = mgr.AcquireAdapter(*lease, "synth");
    ASSERT_EQ(s.status().code(), StatusCode::kResourceExhausted) << s.status().ToString();
    EXPECT_NE(s.status().message().find("adapter tiny:synth"), std::string::npos) << s.status().message();
    EXPECT_EQ(mgr.in_use_bytes(), model_bytes + gguf_bytes);
    EXPECT_EQ(Greedy(lease->model(), g->id()), gguf_tokens);
  }
  // Released: synth's load evicts gguf (least recently used), and the figure follows.
  clock.Advance(std::chrono::seconds(1));
  {
    auto s = mgr.AcquireAdapter(*lease, "synth");
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_EQ(events.Count("adapter_unload", "tiny:gguf", "lru"), 1);
    EXPECT_EQ(lease->model().adapter(first_id), nullptr);
    EXPECT_EQ(mgr.in_use_bytes(), model_bytes + synth_bytes);
    const auto snap = mgr.Snapshot();
    ASSERT_EQ(snap.at(0).adapters.size(), 1u);
    EXPECT_EQ(snap[0].adapters[0].name, "synth");
    EXPECT_EQ(Greedy(lease->model(), s->id()), synth_tokens);
  }
  // gguf again: reloaded under a new id (the old one is never reused), same output.
  clock.Advance(std::chrono::seconds(1));
  {
    auto g = mgr.AcquireAdapter(*lease, "gguf");
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    EXPECT_NE(g->id(), first_id);
    EXPECT_EQ(events.Count("adapter_load", "tiny:gguf"), 2);
    EXPECT_EQ(events.Count("adapter_unload", "tiny:synth", "lru"), 1);
    EXPECT_EQ(Greedy(lease->model(), g->id()), gguf_tokens);
    EXPECT_EQ(mgr.in_use_bytes(), model_bytes + gguf_bytes);
  }
  // Unloading the model unloads its adapters and frees their bytes.
  lease->Release();
  ASSERT_TRUE(mgr.Unload("tiny").ok());
  EXPECT_EQ(mgr.in_use_bytes(), 0u);
  EXPECT_EQ(events.Count("adapter_unload", "tiny:gguf", "explicit"), 1);
}

TEST(LoraResidency, RegistrationErrorsAndPreload) {
  Metrics metrics;
  Events events;
  ManagerOptions o = TestOptions(0, &metrics);
  o.on_event = events.Sink();
  ModelManager mgr(o, {TinySpec("tiny")});
  EXPECT_EQ(mgr.RegisterAdapter({"a", "nope", kLoraGguf, 1.0f, false}).code(), StatusCode::kNotFound);
  EXPECT_FALSE(mgr.RegisterAdapter({"a:b", "tiny", kLoraGguf, 1.0f, false}).ok());
  EXPECT_FALSE(mgr.RegisterAdapter({"", "tiny", kLoraGguf, 1.0f, false}).ok());
  ASSERT_TRUE(mgr.RegisterAdapter({"pre", "tiny", kLoraGguf, 0.5f, true}).ok());
  EXPECT_FALSE(mgr.RegisterAdapter({"pre", "tiny", kLoraGguf, 1.0f, false}).ok());
  EXPECT_TRUE(mgr.HasAdapter("tiny", "pre"));
  ASSERT_TRUE(mgr.Start().ok());
  // preload: loaded at Start (its base with it), before any request.
  EXPECT_EQ(events.Count("adapter_load", "tiny:pre"), 1);
  const auto snap = mgr.Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  ASSERT_EQ(snap[0].adapters.size(), 1u);
  EXPECT_EQ(snap[0].adapters[0].in_use, 0);
  mgr.Stop();
}

TEST(LoraResidency, BadAdapterFileAtFirstUseNamesItAndTheModelKeepsWorking) {
  LoraTempDir tmp;
  const std::string bytes = qwenmux::testing::ReadBytes(kLoraGguf);
  qwenmux::testing::WriteBytes(tmp / "trunc.gguf", bytes.substr(0, bytes.size() / 2));
  Metrics metrics;
  ModelManager mgr(TestOptions(0, &metrics), {TinySpec("tiny")});
  ASSERT_TRUE(mgr.RegisterAdapter({"bad", "tiny", tmp / "trunc.gguf", 1.0f, false}).ok());
  auto lease = mgr.Acquire("tiny");
  ASSERT_TRUE(lease.ok());
  auto a = mgr.AcquireAdapter(*lease, "bad");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("trunc.gguf"), std::string::npos) << a.status().message();
  EXPECT_NE(a.status().message().find("tiny:bad"), std::string::npos) << a.status().message();
  EXPECT_FALSE(Greedy(lease->model(), -1).empty());
}

TEST(LoraConfig, AdaptersUnderAModel) {
  auto c = ParseConfig(R"(
models:
  - name: tiny
    file: /m/tiny.gguf
    adapters:
      - name: support
        file: /a/support.gguf
        scale: 0.5
        preload: true
      - name: legal
        file: /a/legal-peft
pipelines:
  docs:
    extract: tiny:legal
)", "q.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->models[0].adapters.size(), 2u);
  EXPECT_EQ(c->models[0].adapters[0].name, "support");
  EXPECT_EQ(c->models[0].adapters[0].scale, 0.5f);
  EXPECT_TRUE(c->models[0].adapters[0].preload);
  EXPECT_EQ(c->models[0].adapters[1].file, "/a/legal-peft");
  EXPECT_EQ(c->FindAdapter("tiny:legal"), &c->models[0].adapters[1]);
  EXPECT_EQ(c->FindAdapter("tiny:nope"), nullptr);

  auto err = [](const std::string& yaml) {
    auto r = ParseConfig(yaml, "q.yaml");
    return r.ok() ? std::string("ok") : r.status().message();
  };
  EXPECT_NE(err("models:\n  - name: t\n    file: f\n    adapters:\n      - name: a:b\n        file: x\n").find("no ':'"),
            std::string::npos);
  EXPECT_NE(err("models:\n  - name: t\n    file: f\n    adapters:\n      - name: a\n").find("file"), std::string::npos);
  EXPECT_NE(err("models:\n  - name: t\n    file: f\n    adapters:\n      - name: a\n        file: x\n        scale: nan\n")
                .find("not a finite number"),
            std::string::npos);
  EXPECT_NE(err("models:\n  - name: t\n    file: f\n    adapters:\n      - name: a\n        file: x\n        color: red\n")
                .find("color"),
            std::string::npos);
  // "t:a" would be both the adapter and a model's alias.
  EXPECT_NE(err("models:\n  - name: t\n    file: f\n    adapters:\n      - name: a\n        file: x\n"
                "  - name: u\n    file: g\n    aliases: [\"t:a\"]\n")
                .find("clashes"),
            std::string::npos);
}

TEST(LoraConfig, AdapterFlag) {
  auto f = ParseAdapterFlag("support=/a/s.gguf@qwen3:0.6b:0.25");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->name, "support");
  EXPECT_EQ(f->file, "/a/s.gguf");
  EXPECT_EQ(f->base, "qwen3:0.6b");
  EXPECT_EQ(f->scale, 0.25f);
  f = ParseAdapterFlag("support=/a/s.gguf@qwen3:0.6b");  // "0.6b" is no scale: part of the base
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->base, "qwen3:0.6b");
  EXPECT_FALSE(f->scale.has_value());
  f = ParseAdapterFlag("x=dir/peft");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->file, "dir/peft");
  EXPECT_TRUE(f->base.empty());
  f = ParseAdapterFlag("x=a.gguf:2");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->scale, 2.0f);
  EXPECT_FALSE(ParseAdapterFlag("a.gguf").ok());
  EXPECT_FALSE(ParseAdapterFlag("=a.gguf").ok());
  EXPECT_FALSE(ParseAdapterFlag("x=").ok());
  EXPECT_FALSE(ParseAdapterFlag("x=a.gguf:inf").ok());
  EXPECT_FALSE(ParseAdapterFlag("x:y=a.gguf").ok());
}

}  // namespace
}  // namespace qwenmux::orchestrator
