// Unloading a LoRA adapter from a model (engine::Model::UnloadAdapter): refused while a running
// sequence of an engine batch uses it, its id never names another adapter afterwards, and the
// adapter table is counted in adapter_bytes().
#include <gtest/gtest.h>

#include "engine/batch.h"
#include "engine/engine.h"
#include "lora/lora_util.h"

namespace qwenmux::engine {
namespace {

using qwenmux::testing::kLoraGguf;
using qwenmux::testing::kLoraPeft;
using qwenmux::testing::LoadLoraBase;

SequenceRequest Request(const Model& m, int32_t adapter) {
  SequenceRequest r;
  r.prompt = m.tokenizer().Encode("Hello there");
  r.options.max_tokens = 4;
  r.options.sampler.temperature = 0;
  r.adapter = adapter;
  return r;
}

TEST(LoraUnload, RefusedWhileASequenceUsesItAndIdsAreNeverReused) {
  auto m = LoadLoraBase(2);
  ASSERT_TRUE(m);
  auto a = m->LoadAdapter(kLoraGguf);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  const uint64_t bytes = m->adapter(*a)->bytes();
  EXPECT_GT(bytes, 0u);
  EXPECT_EQ(m->adapter_bytes(), bytes);
  {
    Batch batch(*m);
    auto seq = batch.Admit(Request(*m, *a));
    ASSERT_TRUE(seq.ok()) << seq.status().ToString();
    EXPECT_EQ(m->adapter_users(*a), 1);
    Status busy = m->UnloadAdapter(*a);
    EXPECT_EQ(busy.code(), StatusCode::kUnavailable) << busy.ToString();
    EXPECT_NE(busy.message().find("running sequence"), std::string::npos) << busy.message();
    batch.Remove(*seq);
    EXPECT_EQ(m->adapter_users(*a), 0);
    // A batch destroyed with a sequence still in it counts it out too.
    ASSERT_TRUE(batch.Admit(Request(*m, *a)).ok());
    EXPECT_EQ(m->adapter_users(*a), 1);
  }
  EXPECT_EQ(m->adapter_users(*a), 0);
  ASSERT_TRUE(m->UnloadAdapter(*a).ok());
  EXPECT_EQ(m->adapter(*a), nullptr);
  EXPECT_EQ(m->adapter_bytes(), 0u);
  EXPECT_EQ(m->UnloadAdapter(*a).code(), StatusCode::kNotFound);

  // A new adapter gets a new id; the old id stays empty (a request holding it fails, never runs
  // with another adapter).
  auto b = m->LoadAdapter(kLoraPeft);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_NE(*b, *a);
  Batch batch(*m);
  auto stale = batch.Admit(Request(*m, *a));
  EXPECT_FALSE(stale.ok());
  EXPECT_EQ(batch.active(), 0);

  // Generation with the reloaded adapter equals the one before the unload (same weights).
  GenerateOptions o;
  o.max_tokens = 6;
  o.sampler.temperature = 0;
  o.adapter = *b;
  auto with_b = m->Generate(m->tokenizer().Encode("Hello there"), o);
  ASSERT_TRUE(with_b.ok());
  auto again = m->LoadAdapter(kLoraGguf);
  ASSERT_TRUE(again.ok());
  o.adapter = *again;
  auto with_again = m->Generate(m->tokenizer().Encode("Hello there"), o);
  ASSERT_TRUE(with_again.ok());
  EXPECT_EQ(with_b->tokens, with_again->tokens);  // PEFT and GGUF copies give identical logits
}

}  // namespace
}  // namespace qwenmux::engine
