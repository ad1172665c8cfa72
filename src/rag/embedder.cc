#include "rag/embedder.h"

#include <algorithm>
#include <filesystem>

#include "rag/chunker.h"

namespace qwenmux::rag {

Result<Embedder> Embedder::Create(engine::Model* model, const std::string& path, int32_t dims) {
  if (!model) return Error(StatusCode::kInvalidArgument, "embedder: no model");
  const auto& c = model->config();
  if (dims < 0 || dims > static_cast<int32_t>(c.n_embd))
    return Error(StatusCode::kInvalidArgument, "embedder: dimension {} not in 1..{} ({})", dims, c.n_embd, path);
  Embedder e;
  e.model_ = model;
  e.dims_ = dims;
  e.dim_ = dims > 0 ? dims : static_cast<int32_t>(c.n_embd);
  const std::string name = c.name.empty() ? std::filesystem::path(path).stem().string() : c.name;
  e.id_ = fmt::format("{}:L{}-E{}", name, c.n_layer, c.n_embd);
  return e;
}

Result<Embedder> Embedder::CreateBackend(const BackendAccess& backend, const std::string& ref, int32_t dims) {
  if (dims < 0) return Error(StatusCode::kInvalidArgument, "embedder: dimension {} is negative ({})", dims, ref);
  QM_ASSIGN_OR_RETURN(auto probe, BackendEmbed(backend, ref, {"dimension probe"}, dims));
  Embedder e;
  e.backend_ = backend;
  e.backend_ref_ = ref;
  e.dims_ = dims;
  e.dim_ = static_cast<int32_t>(probe.front().size());
  if (dims > 0 && e.dim_ != dims)
    return Error(StatusCode::kInvalidArgument, "embedder: backend model {} gave {} dimensions for {} asked", ref, e.dim_, dims);
  e.id_ = fmt::format("{}:E{}", ref, e.dim_);
  return e;
}

int32_t Embedder::CountTokens(std::string_view text) const {
  if (is_backend()) return ApproxTokens(text);
  return static_cast<int32_t>(model_->tokenizer().Encode(text).size());
}

std::vector<int32_t> Embedder::Tokens(std::string_view text) const {
  std::vector<int32_t> ids = model_->tokenizer().Encode(text);
  const size_t room = static_cast<size_t>(std::max(1, model_->n_ctx() - 1));  // <|endoftext|> is appended
  if (ids.size() > room) ids.resize(room);
  return ids;
}

Result<std::vector<std::vector<float>>> Embedder::EmbedDocuments(const std::vector<std::string>& texts, size_t batch,
                                                                 int64_t* tokens) {
  std::vector<std::vector<float>> out;
  out.reserve(texts.size());
  batch = std::max<size_t>(1, batch);
  if (is_backend()) {
    for (size_t b = 0; b < texts.size(); b += batch) {
      const std::vector<std::string> part(texts.begin() + static_cast<ptrdiff_t>(b),
                                          texts.begin() + static_cast<ptrdiff_t>(std::min(texts.size(), b + batch)));
      QM_ASSIGN_OR_RETURN(auto vecs, BackendEmbed(backend_, backend_ref_, part, dims_, tokens));
      for (auto& v : vecs) out.push_back(std::move(v));
    }
    return out;
  }
  for (size_t b = 0; b < texts.size(); b += batch) {
    std::vector<std::vector<int32_t>> inputs;
    for (size_t i = b; i < std::min(texts.size(), b + batch); ++i) {
      inputs.push_back(Tokens(texts[i]));
      if (tokens) *tokens += static_cast<int64_t>(inputs.back().size()) + 1;
    }
    QM_ASSIGN_OR_RETURN(auto vecs, model_->Embed(inputs, dims_));
    for (auto& v : vecs) out.push_back(std::move(v));
  }
  return out;
}

Result<std::vector<float>> Embedder::EmbedQuery(std::string_view query, std::string_view task) {
  std::string text = "Instruct: ";
  text.append(task).append("\nQuery:").append(query);
  if (is_backend()) {
    QM_ASSIGN_OR_RETURN(auto vecs, BackendEmbed(backend_, backend_ref_, {text}, dims_));
    return std::move(vecs.front());
  }
  QM_ASSIGN_OR_RETURN(auto vecs, model_->Embed({Tokens(text)}, dims_));
  return std::move(vecs.front());
}

}  // namespace qwenmux::rag
