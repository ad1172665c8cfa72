#include "orchestrator/store/model_store.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "base/sha256.h"
#include "orchestrator/temp_dir.h"

namespace qwenmux::orchestrator {
namespace {

namespace fs = std::filesystem;

// Puts `bytes` into the store as a blob and returns a StoredModel for it.
StoredModel PutBlob(const ModelStore& store, const std::string& name, const std::string& bytes) {
  StoredModel m;
  m.name = name;
  m.sha256 = Sha256Hex(bytes.data(), bytes.size());
  m.size = bytes.size();
  m.quantization = "Q8_0";
  std::ofstream(store.BlobPath(m.sha256), std::ios::binary) << bytes;
  return m;
}

TEST(OrchestratorSha256, KnownVectors) {
  // FIPS 180-2 test vectors.
  EXPECT_EQ(Sha256Hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 h;
  std::string a(1000000, 'a');
  h.Update(a.data(), 500000);
  h.Update(a.data(), 500000);
  EXPECT_EQ(h.HexDigest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT_TRUE(IsSha256Hex("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
  EXPECT_FALSE(IsSha256Hex("CDC76E5C9914FB9281A1C7E284D73E67F1809A48A497200E046D39CCC7112CD0"));
  EXPECT_FALSE(IsSha256Hex("abc"));
}

TEST(OrchestratorStore, AddListFindTagRemove) {
  testing::TempDir tmp;
  ModelStore store = *ModelStore::Open(tmp / "models");
  EXPECT_TRUE(store.List()->empty());
  StoredModel a = PutBlob(store, "qwen3:8b-q8_0", "model a bytes");
  ASSERT_TRUE(store.Add(a).ok());
  StoredModel b = PutBlob(store, "hf:x/y/b.gguf", "model b bytes");
  ASSERT_TRUE(store.Add(b).ok());

  // A second handle on the same directory sees the same manifest.
  ModelStore again = *ModelStore::Open(tmp / "models");
  ASSERT_EQ(again.List()->size(), 2u);
  EXPECT_EQ(again.Find("qwen3:8b-q8_0")->sha256, a.sha256);

  ASSERT_TRUE(store.Tag("qwen3:8b-q8_0", "qwen3-balanced").ok());
  EXPECT_EQ(store.Find("qwen3-balanced")->name, "qwen3:8b-q8_0");
  // Tagging again is a no-op; tagging another model moves the alias.
  ASSERT_TRUE(store.Tag("qwen3-balanced", "qwen3-balanced").ok());
  EXPECT_EQ(store.Find("qwen3:8b-q8_0")->aliases.size(), 1u);
  ASSERT_TRUE(store.Tag("hf:x/y/b.gguf", "qwen3-balanced").ok());
  EXPECT_EQ(store.Find("qwen3-balanced")->name, "hf:x/y/b.gguf");
  EXPECT_TRUE(store.Find("qwen3:8b-q8_0")->aliases.empty());

  // Errors.
  Status s = store.Tag("ghost", "x");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_NE(s.message().find("no model \"ghost\""), std::string::npos) << s.message();
  EXPECT_EQ(store.Tag("qwen3:8b-q8_0", "hf:x/y/b.gguf").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Tag("qwen3:8b-q8_0", "../evil").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Tag("qwen3:8b-q8_0", "has space").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Remove("ghost").code(), StatusCode::kNotFound);
  EXPECT_EQ(store.Find("ghost").status().code(), StatusCode::kNotFound);

  // rm of an alias removes only the alias.
  std::string what;
  ASSERT_TRUE(store.Remove("qwen3-balanced", &what).ok());
  EXPECT_NE(what.find("alias"), std::string::npos);
  EXPECT_TRUE(fs::exists(store.BlobPath(b.sha256)));
  // rm of a name removes the entry and the blob.
  ASSERT_TRUE(store.Remove("qwen3:8b-q8_0").ok());
  EXPECT_FALSE(fs::exists(store.BlobPath(a.sha256)));
  EXPECT_EQ(store.List()->size(), 1u);
  EXPECT_FALSE(fs::exists(tmp / "models/manifest.json.tmp"));
}

TEST(OrchestratorStore, SharedBlobStaysUntilLastNameGoes) {
  testing::TempDir tmp;
  ModelStore store = *ModelStore::Open(tmp.path());
  StoredModel a = PutBlob(store, "one", "same bytes");
  StoredModel b = a;
  b.name = "two";
  ASSERT_TRUE(store.Add(a).ok());
  ASSERT_TRUE(store.Add(b).ok());
  ASSERT_TRUE(store.Remove("one").ok());
  EXPECT_TRUE(fs::exists(store.BlobPath(a.sha256)));
  ASSERT_TRUE(store.Remove("two").ok());
  EXPECT_FALSE(fs::exists(store.BlobPath(a.sha256)));
}

TEST(OrchestratorStore, AddRefusesMissingBlobAndBadNames) {
  testing::TempDir tmp;
  ModelStore store = *ModelStore::Open(tmp.path());
  StoredModel m;
  m.name = "x";
  m.sha256 = std::string(64, 'a');
  m.size = 10;
  EXPECT_FALSE(store.Add(m).ok());
  StoredModel ok = PutBlob(store, "/abs", "z");
  EXPECT_EQ(store.Add(ok).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(store.List()->empty());
}

TEST(OrchestratorStore, CorruptManifestIsReportedNotCrashed) {
  testing::TempDir tmp;
  for (const char* text : {"{not json", "[]", "{\"version\": 2, \"models\": []}",
                           "{\"version\": 1, \"models\": [{\"name\": \"x\"}]}",
                           "{\"version\": 1, \"models\": [{\"name\": \"x\", \"sha256\": \"zz\", \"size\": 1}]}",
                           "{\"version\": 1, \"models\": [{\"name\": \"x\", \"sha256\": \"" 
                           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", \"size\": -1}]}"}) {
    std::ofstream(tmp / "manifest.json") << text;
    Result<ModelStore> s = ModelStore::Open(tmp.path());
    ASSERT_FALSE(s.ok()) << text;
    EXPECT_EQ(s.status().code(), StatusCode::kCorrupt) << text;
    EXPECT_NE(s.status().message().find("manifest.json"), std::string::npos);
  }
}

TEST(OrchestratorStore, DefaultDirFollowsQwenmuxHome) {
  std::string why;
  const char* old = std::getenv("QWENMUX_HOME");
  std::string saved = old ? old : "";
  setenv("QWENMUX_HOME", "/srv/qm", 1);
  EXPECT_EQ(DefaultModelsDir(&why), "/srv/qm/models");
  EXPECT_EQ(why, "$QWENMUX_HOME/models");
  unsetenv("QWENMUX_HOME");
  EXPECT_TRUE(DefaultModelsDir(&why).ends_with("/.qwenmux/models"));
  if (old) setenv("QWENMUX_HOME", saved.c_str(), 1);
}

}  // namespace
}  // namespace qwenmux::orchestrator
