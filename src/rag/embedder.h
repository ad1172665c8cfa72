// Qwen3-Embedding use of an engine::Model: documents are embedded as they are, queries with the
// instruction prefix "Instruct: {task}\nQuery:{query}" (docs/qwen3-reference.md §6.1); last-token
// pooling, L2 normalisation and the optional shorter (MRL) dimension come from Model::Embed.
// Inputs longer than the model's context are cut to fit.
//
// A backend's embedding model ("NAME/MODEL", issue 18; rag/backend_model.h) is wrapped the same
// way: the same texts go to the backend's embeddings endpoint (queries with the same prefix);
// the dimension is learnt from one probe at creation; token counts are approximate
// (ApproxTokens); inputs are not cut (the backend enforces its own limits).
//
// Thread-safety: like the Model it wraps (one thread at a time).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "engine/engine.h"
#include "rag/backend_model.h"

namespace qwenmux::rag {

inline constexpr std::string_view kDefaultRetrievalTask =
    "Given a web search query, retrieve relevant passages that answer the query";

class Embedder {
 public:
  // `path` names the model in the collection's identity; dims = 0 keeps the full dimension.
  static Result<Embedder> Create(engine::Model* model, const std::string& path, int32_t dims = 0);
  // The backend model `ref` ("NAME/MODEL"); id "NAME/MODEL:E<dim>". Errors: the probe's.
  static Result<Embedder> CreateBackend(const BackendAccess& backend, const std::string& ref, int32_t dims = 0);

  int32_t dim() const { return dim_; }
  // "<name or file stem>:L<layers>-E<width>", the identity a collection records.
  const std::string& id() const { return id_; }
  // null for a backend model
  engine::Model* model() { return model_; }
  bool is_backend() const { return !backend_ref_.empty(); }

  int32_t CountTokens(std::string_view text) const;
  // Embeds texts in batches of `batch` (each batch shares forward passes across KV sequences).
  // `tokens`, if given, gets the tokens run through the model added to it (each input's ids
  // plus the appended end token).
  Result<std::vector<std::vector<float>>> EmbedDocuments(const std::vector<std::string>& texts, size_t batch = 32,
                                                         int64_t* tokens = nullptr);
  Result<std::vector<float>> EmbedQuery(std::string_view query, std::string_view task = kDefaultRetrievalTask);

 private:
  std::vector<int32_t> Tokens(std::string_view text) const;
  engine::Model* model_ = nullptr;
  BackendAccess backend_;    // with backend_ref_ (model_ null)
  std::string backend_ref_;
  int32_t dims_ = 0, dim_ = 0;
  std::string id_;
};

}  // namespace qwenmux::rag
