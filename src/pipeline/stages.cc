// What each stage does to a batch of documents (see job.h for the flow and job_internal.h).
#include <algorithm>
#include <cctype>
#include <filesystem>

#include <fmt/format.h>

#include "pipeline/job_internal.h"
#include "base/ascii.h"
#include "pipeline/model_ops.h"
#include "pipeline/schema.h"
#include "rag/backend_model.h"
#include "rag/embedder.h"
#include "rag/ingest.h"
#include "structured/structured.h"

namespace qwenmux::pipeline {

namespace {

double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Cuts at a UTF-8 character boundary at or before max bytes.
std::string CutUtf8(std::string s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
  return s;
}

std::string DocumentText(const rag::ParsedDocument& p) {
  std::string t;
  for (const rag::Block& b : p.blocks) {
    if (!t.empty()) t += "\n\n";
    if (b.heading_level > 0) t += std::string(static_cast<size_t>(b.heading_level), '#') + " ";
    t += b.text;
  }
  return t;
}

// String leaves of an extracted object: ("a.b", value).
void StringLeaves(const Json& v, const std::string& path, std::vector<std::pair<std::string, std::string>>* out) {
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) StringLeaves(it.value(), path.empty() ? it.key() : path + "." + it.key(), out);
  } else if (v.is_string()) {
    out->emplace_back(path, v.get<std::string>());
  } else if (v.is_number()) {
    out->emplace_back(path, v.dump());
  }
}

// The end-of-answer token every label / verdict continuation ends with.
std::vector<int32_t> Answer(const tokenizer::Tokenizer& tok, std::string_view text) {
  std::vector<int32_t> ids = tok.Encode(text);
  if (auto end = tok.TokenId("<|im_end|>")) ids.push_back(*end);
  return ids;
}

constexpr const char* kClassifySystem = "You are a document classifier. Answer with exactly one label.";
constexpr const char* kExtractSystem = "You extract structured data from documents. Answer with JSON only.";
constexpr const char* kValidateSystem = "You check extracted data against its source document. Answer yes or no.";

}  // namespace

void Job::Impl::RunRead(size_t stage, DocPtr d) {
  const StageDef& st = def.stages[stage];
  const auto t0 = std::chrono::steady_clock::now();
  auto parsed = rag::ReadDocument(d->path);
  if (!parsed.ok()) {
    const std::string msg = parsed.status().message();
    const bool unsupported = parsed.status().code() == StatusCode::kUnsupported ||
                             msg.find("unsupported") != std::string::npos || msg.find("not a format") != std::string::npos;
    Fail(stage, d, unsupported ? "unsupported format" : "corrupt or unreadable", msg);
  } else {
    d->parsed = std::move(*parsed);
    d->text = CutUtf8(DocumentText(d->parsed), static_cast<size_t>(st.max_chars));
    if (d->text.find_first_not_of(" \t\r\n") == std::string::npos) {
      // Nothing to process: a "skipped" result line, not a failure (a rerun does not redo it).
      d->skipped = true;
      d->fail_stage = st.name;
      d->reason = "empty document";
      d->error = "no text in the document";
    }
  }
  AddStats(stage, 1, Since(t0), 0);
  Forward(stage, std::move(d));
}

void Job::Impl::RunChunk(size_t stage, std::vector<DocPtr>& batch) {
  const StageDef& st = def.stages[stage];
  const auto t0 = std::chrono::steady_clock::now();
  rag::ChunkOptions co;
  co.max_tokens = st.chunk_tokens;
  co.overlap_tokens = st.chunk_overlap;
  auto chunk_all = [&](const rag::TokenCounter& count) {
    for (DocPtr& d : batch) {
      if (d->failed) continue;
      d->chunks = rag::ChunkDocument(d->parsed, co, count);
      if (d->chunks.empty()) Fail(stage, d, "no chunks", "the document gave no chunks");
    }
  };
  if (st.model.empty()) {
    chunk_all(rag::ApproxTokens);
  } else {
    // Only the tokenizer is used: hold the lease, not the model's lock.
    const std::string file = stage_model.at(st.name);
    auto lease = manager->Acquire(spec_name.at(file));
    if (!lease.ok()) {
      for (DocPtr& d : batch) Fail(stage, d, "model load failed", lease.status().message());
    } else {

      for (DocPtr& d : batch) d->models[st.name] = file;
      const tokenizer::Tokenizer& tok = lease->model().tokenizer();
      chunk_all([&tok](std::string_view s) { return static_cast<int32_t>(tok.Encode(s).size()); });
    }
  }
  AddStats(stage, static_cast<int64_t>(batch.size()), Since(t0), 0);
  for (DocPtr& d : batch) Forward(stage, d);
}

void Job::Impl::RunEmbed(size_t stage, std::vector<DocPtr>& batch) {
  const StageDef& st = def.stages[stage];
  const auto t0 = std::chrono::steady_clock::now();
  int64_t tokens = 0, items = 0;
  const std::string& file = stage_model.at(st.name);
  auto embed_all = [&](rag::Embedder& embedder) {
    for (DocPtr& d : batch) {
      if (d->failed || d->chunks.empty()) continue;
      d->models[st.name] = file;
      std::vector<std::string> texts;
      texts.reserve(d->chunks.size());
      for (const rag::Chunk& c : d->chunks) texts.push_back(rag::ChunkEmbedText(c.heading, c.text));
      auto vectors = embedder.EmbedDocuments(texts, static_cast<size_t>(st.batch), &tokens);
      if (!vectors.ok()) {
        Fail(stage, d, embedder.is_backend() ? "backend error" : "embedding failed",
             fmt::format("stage '{}': {}", st.name, vectors.status().message()));
        continue;
      }
      items += static_cast<int64_t>(texts.size());
      d->embedding_dim = embedder.dim();
      if (!st.collection.empty()) {
        Status stored = StoreDocument(st.collection, embedder.id(), *d, std::move(*vectors));
        if (!stored.ok()) {
          Fail(stage, d, "store refused", stored.message());
          continue;
        }
        d->collection = st.collection;
      }
    }
  };
  Status s;
  if (backend_stage.count(st.name)) {
    Result<rag::Embedder> embedder = rag::Embedder::CreateBackend(options.backend, file);
    if (embedder.ok()) embed_all(*embedder);
    else s = embedder.status();
  } else {
    s = WithModel(stage, "", [&](engine::Model& model) -> Status {
      QM_ASSIGN_OR_RETURN(rag::Embedder embedder, rag::Embedder::Create(&model, file));
      embed_all(embedder);
      return Status::Ok();
    });
  }
  if (!s.ok()) {
    for (DocPtr& d : batch) {
      if (!d->failed)
        Fail(stage, d, backend_stage.count(st.name) ? "backend error" : "model load failed",
             fmt::format("stage '{}': {}", st.name, s.message()));
    }
  }
  AddStats(stage, items, Since(t0), tokens);
  for (DocPtr& d : batch) Forward(stage, d);
}

Status Job::Impl::StoreDocument(const std::string& collection, const std::string& embed_id, const Doc& d,
                                std::vector<std::vector<float>> vectors) {
  if (vectors.size() != d.chunks.size() || vectors.empty()) {
    return Error(StatusCode::kInternal, "{} vectors for {} chunks", vectors.size(), d.chunks.size());
  }
  rag::DocumentRecord doc;
  doc.doc_id = rag::DocumentId(d.path);
  doc.source = d.path;
  doc.title = d.parsed.title;
  doc.format = rag::FormatOfPath(d.path);
  doc.content_hash = d.hash;  // SHA-256 of the file, as `qwenmux ingest` records it
  std::error_code ec;
  doc.bytes = static_cast<int64_t>(std::filesystem::file_size(d.path, ec));
  std::vector<rag::NewChunk> rows(d.chunks.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i] = {d.chunks[i].heading, d.chunks[i].text, d.chunks[i].n_tokens, std::move(vectors[i])};
  }
  std::lock_guard<std::mutex> lk(store_mu);
  QM_ASSIGN_OR_RETURN(rag::CollectionInfo c,
                      store->OpenCollection(collection, embed_id, static_cast<int32_t>(rows[0].embedding.size())));
  QM_RETURN_IF_ERROR(store->PutDocument(c, doc, rows).status());
  if (Since(store_saved) >= 10) {
    QM_RETURN_IF_ERROR(store->Flush());
    store_saved = std::chrono::steady_clock::now();
  }
  return Status::Ok();
}

void Job::Impl::FlushStore() {
  std::lock_guard<std::mutex> lk(store_mu);
  if (store) (void)store->Flush();  // a lagging index is repaired from SQLite on the next open
}

Result<std::pair<int32_t, float>> Job::Impl::LoadStageAdapter(const StageDef& st, const std::string& file,
                                                                engine::Model& model) {
  const auto sa = stage_adapter.find(st.name);
  if (sa == stage_adapter.end() || file != stage_model.at(st.name)) return std::pair<int32_t, float>{-1, 1.0f};
  Result<int32_t> id = model.LoadAdapter(sa->second.file);
  if (!id.ok()) return id.status().WithContext(fmt::format("stage '{}': adapter {}", st.name, sa->second.file));
  return std::pair<int32_t, float>{*id, sa->second.scale};
}

void Job::Impl::RunClassify(size_t stage, std::vector<DocPtr>& batch) {
  const StageDef& st = def.stages[stage];
  const auto t0 = std::chrono::steady_clock::now();
  int64_t tokens = 0;
  std::vector<DocPtr> work;
  for (DocPtr& d : batch) {
    if (!d->failed) work.push_back(d);
  }
  std::string labels;
  for (const LabelDef& l : st.labels) labels += fmt::format("- {}{}{}\n", l.name, l.description.empty() ? "" : ": ", l.description);
  const std::string instruction = st.prompt.empty() ? "Classify the document into one of the labels." : st.prompt;
  const std::string before = fmt::format("{}\n\nLabels:\n{}\nDocument:\n", instruction, labels);
  const std::string after = "\n\nAnswer with the label only.";
  const StageDef* ext = def.Find(StageType::kExtract);
  auto set_label = [&](const DocPtr& d, size_t best, const std::vector<double>& p) {
    d->label = st.labels[best].name;
    d->confidence = p[best];
    d->scores = Json::object();
    for (size_t k = 0; k < p.size(); ++k) d->scores[st.labels[k].name] = p[k];
    d->schema = !st.labels[best].schema.is_null() ? &st.labels[best].schema : (ext && !ext->schema.is_null() ? &ext->schema : nullptr);
  };
  if (backend_stage.count(st.name)) {
    // A backend gives no log-probabilities: the label comes from an answer constrained to the
    // label set; it has confidence 1 (scores 1 / 0).
    const std::string& ref = stage_model.at(st.name);
    Json names = Json::array();
    for (const LabelDef& l : st.labels) names.push_back(l.name);
    const Json schema = {{"type", "object"},
                         {"properties", {{"label", {{"type", "string"}, {"enum", names}}}}},
                         {"required", {"label"}}};
    rag::BackendChatOptions bo;
    bo.max_tokens = 64;
    bo.json_schema = &schema;
    for (const DocPtr& d : work) {
      d->models[st.name] = ref;
      Result<rag::BackendChatResult> r = rag::BackendChat(options.backend, ref, kClassifySystem, before + d->text + after, bo);
      if (!r.ok()) {
        Fail(stage, d, "backend error", fmt::format("stage '{}': {}", st.name, r.status().message()));
        continue;
      }
      tokens += r->prompt_tokens + r->completion_tokens;
      const Json j = Json::parse(r->text, nullptr, false);
      const std::string label = j.is_object() && j.contains("label") && j["label"].is_string() ? j["label"].get<std::string>() : "";
      size_t best = st.labels.size();
      for (size_t k = 0; k < st.labels.size(); ++k) {
        if (st.labels[k].name == label) best = k;
      }
      if (best == st.labels.size()) {
        Fail(stage, d, "invalid label", fmt::format("stage '{}': backend model {} answered {}, not one of the labels {}",
                                                    st.name, ref, r->text, names.dump()));
        continue;
      }
      std::vector<double> p(st.labels.size(), 0.0);
      p[best] = 1.0;
      set_label(d, best, p);
    }
    AddStats(stage, static_cast<int64_t>(work.size()), Since(t0), tokens);
    for (DocPtr& d : batch) Forward(stage, d);
    return;
  }
  Status s = WithModel(stage, "", [&](engine::Model& model) -> Status {
    const auto& tok = model.tokenizer();
    std::vector<std::vector<int32_t>> prompts, conts;
    for (const DocPtr& d : work) prompts.push_back(ChatPrompt(tok, kClassifySystem, before, d->text, after));
    for (const LabelDef& l : st.labels) conts.push_back(Answer(tok, l.name));
    QM_ASSIGN_OR_RETURN(const auto adapter, LoadStageAdapter(st, stage_model.at(st.name), model));
    Result<std::vector<ScoreOutput>> scored =
        ScoreContinuations(model, prompts, conts, &tokens, adapter.first, adapter.second);
    if (adapter.first >= 0) (void)model.UnloadAdapter(adapter.first);  // its batch is over
    QM_ASSIGN_OR_RETURN(std::vector<ScoreOutput> out, std::move(scored));
    for (size_t i = 0; i < work.size(); ++i) {
      DocPtr& d = work[i];
      d->models[st.name] = stage_model.at(st.name);
      if (!out[i].status.ok()) {
        Fail(stage, d, "prompt too long", out[i].status.message());
        continue;
      }
      const std::vector<double> p = Softmax(out[i].logprobs);
      set_label(d, static_cast<size_t>(std::max_element(p.begin(), p.end()) - p.begin()), p);
    }
    return Status::Ok();
  });
  if (!s.ok()) {
    for (DocPtr& d : work) {
      if (!d->failed) Fail(stage, d, "model error", s.message());
    }
  }
  AddStats(stage, static_cast<int64_t>(work.size()), Since(t0), tokens);
  for (DocPtr& d : batch) Forward(stage, d);
}

void Job::Impl::RunExtract(size_t stage, std::vector<DocPtr>& batch) {
  const StageDef& st = def.stages[stage];
  const auto t0 = std::chrono::steady_clock::now();
  int64_t tokens = 0, items = 0;
  const bool has_classify = def.Find(StageType::kClassify) != nullptr;
  // Group the documents to extract by model file (retries run on the next tier).
  std::map<std::string, std::vector<DocPtr>> by_file;
  for (DocPtr& d : batch) {
    if (d->failed) continue;
    if (!d->schema && !has_classify && !st.schema.is_null()) d->schema = &st.schema;
    if (!d->schema) continue;  // its class has no schema: passes through
    by_file[d->retry ? RetryFile(d) : stage_model.at(st.name)].push_back(d);
  }
  const std::string instruction = st.prompt.empty() ? "Extract the fields of the schema from the document." : st.prompt;
  for (auto& [file, docs] : by_file) {
    if (backend_stage.count(st.name) && file == stage_model.at(st.name)) {
      // The backend constrains the answer to the schema (response_format), greedy.
      for (DocPtr& d : docs) {
        ++d->attempts;
        d->extract_model = file;
        d->models[st.name] = file;
        ++items;
        rag::BackendChatOptions bo;
        bo.max_tokens = st.max_tokens;
        bo.json_schema = d->schema;
        const std::string before = fmt::format("{}\n\nJSON schema:\n{}\n\nDocument:\n", instruction, d->schema->dump());
        Result<rag::BackendChatResult> r =
            rag::BackendChat(options.backend, file, kExtractSystem, before + d->text + "\n\nThe JSON object:", bo);
        if (!r.ok()) {
          Fail(stage, d, "backend error", fmt::format("stage '{}': {}", st.name, r.status().message()));
          continue;
        }
        tokens += r->prompt_tokens + r->completion_tokens;
        if (r->finish_reason == "length") {
          Fail(stage, d, "incomplete output",
               fmt::format("stage '{}': backend model {} stopped at max_tokens {}: {}", st.name, file, st.max_tokens, r->text));
          continue;
        }
        auto j = Json::parse(r->text, nullptr, false);
        if (j.is_discarded()) {
          Fail(stage, d, "invalid JSON", "output does not parse: " + r->text);
          continue;
        }
        d->extracted = std::move(j);
      }
      continue;
    }
    Status s = WithModel(stage, file, [&](engine::Model& model) -> Status {
      const auto& tok = model.tokenizer();
      const auto vocab = structured::VocabIndex::Shared(tok);
      std::vector<std::vector<int32_t>> prompts;
      std::vector<std::unique_ptr<engine::LogitProcessor>> procs;
      for (const DocPtr& d : docs) {
        structured::Constraint c;
        {
          std::lock_guard<std::mutex> lk(mu);
          c = constraints[{file, d->schema}];
        }
        if (!c) {  // compiled once per (model file, schema)
          QM_ASSIGN_OR_RETURN(c, structured::CompileJsonSchema(*d->schema, vocab));
          std::lock_guard<std::mutex> lk(mu);
          constraints[{file, d->schema}] = c;
        }
        const std::string before = fmt::format("{}\n\nJSON schema:\n{}\n\nDocument:\n", instruction, d->schema->dump());
        prompts.push_back(ChatPrompt(tok, kExtractSystem, before, d->text, "\n\nThe JSON object:"));
        procs.push_back(c->NewProcessor());
      }
      // The stage's LoRA adapter (not on retries, which run on the next tier): loaded for this
      // batch, unloaded after it.
      QM_ASSIGN_OR_RETURN(const auto adapter, LoadStageAdapter(st, file, model));
      Result<std::vector<ConstrainedOutput>> generated =
          GenerateConstrained(model, prompts, std::move(procs), st.max_tokens, &tokens, adapter.first, adapter.second);
      if (adapter.first >= 0) (void)model.UnloadAdapter(adapter.first);  // its batch is over: nothing uses it
      QM_ASSIGN_OR_RETURN(std::vector<ConstrainedOutput> out, std::move(generated));
      for (size_t i = 0; i < docs.size(); ++i) {
        DocPtr& d = docs[i];
        ++d->attempts;
        d->extract_model = file;
        d->models[st.name] = file;
        ++items;
        if (!out[i].status.ok()) {
          Fail(stage, d, out[i].status.code() == StatusCode::kOutOfRange ? "incomplete output" : "generation failed", out[i].status.message());
          continue;
        }
        auto j = Json::parse(out[i].text, nullptr, false);
        if (j.is_discarded()) {
          Fail(stage, d, "invalid JSON", "output does not parse: " + out[i].text);
          continue;
        }
        d->extracted = std::move(j);
      }
      return Status::Ok();
    });
    if (!s.ok()) {
      for (DocPtr& d : docs) {
        if (!d->failed) Fail(stage, d, "model error", s.message());
      }
    }
  }
  AddStats(stage, items, Since(t0), tokens);
  for (DocPtr& d : batch) {
    if (d->failed && d->fail_stage == st.name && d->attempts == 1 && !RetryFile(d).empty() && !cancelled) {
      d->failed = false;  // retried once on the next tier up
      d->retry = true;
      d->extracted = Json();
      d->validation = Json();
      queues[stage]->Push(d);
      continue;
    }
    Forward(stage, d);
  }
}

void Job::Impl::RunValidate(size_t stage, std::vector<DocPtr>& batch) {
  const StageDef& st = def.stages[stage];
  const auto t0 = std::chrono::steady_clock::now();
  int64_t tokens = 0;
  std::vector<DocPtr> work;
  for (DocPtr& d : batch) {
    if (!d->failed && d->schema && !d->extracted.is_null()) work.push_back(d);
  }
  const std::string question = st.prompt.empty()
      ? "Is every value in the extracted data stated in, or directly supported by, the source document? Answer yes or no."
      : st.prompt;
  Status s = WithModel(stage, "", [&](engine::Model& model) -> Status {
    const auto& tok = model.tokenizer();
    std::vector<std::vector<int32_t>> prompts;
    for (const DocPtr& d : work) {
      prompts.push_back(ChatPrompt(tok, kValidateSystem, "Source document:\n", d->text,
                                   fmt::format("\n\nExtracted data:\n{}\n\n{}", d->extracted.dump(), question)));
    }
    const std::vector<std::vector<int32_t>> conts = {Answer(tok, "yes"), Answer(tok, "no")};
    QM_ASSIGN_OR_RETURN(const auto adapter, LoadStageAdapter(st, stage_model.at(st.name), model));
    Result<std::vector<ScoreOutput>> scored =
        ScoreContinuations(model, prompts, conts, &tokens, adapter.first, adapter.second);
    if (adapter.first >= 0) (void)model.UnloadAdapter(adapter.first);  // its batch is over
    QM_ASSIGN_OR_RETURN(std::vector<ScoreOutput> out, std::move(scored));
    for (size_t i = 0; i < work.size(); ++i) {
      DocPtr& d = work[i];
      d->models[st.name] = stage_model.at(st.name);
      const std::vector<std::string> schema_errors = ValidateJson(*d->schema, d->extracted);
      Json reasons = Json::array();
      for (const std::string& e : schema_errors) reasons.push_back("schema: " + e);
      double p_yes = -1;
      bool model_ok = false;
      if (out[i].status.ok()) {
        p_yes = Softmax(out[i].logprobs)[0];
        model_ok = p_yes >= st.threshold;
        reasons.push_back(fmt::format("model: P(supported) = {:.3f} {} threshold {}", p_yes, model_ok ? ">=" : "<", st.threshold));
      } else {
        reasons.push_back("model: " + out[i].status.message());
      }
      std::vector<std::pair<std::string, std::string>> leaves;
      StringLeaves(d->extracted, "", &leaves);
      const std::string source = AsciiLower(d->text);
      bool grounded = true;
      for (const auto& [field, value] : leaves) {
        if (value.empty() || source.find(AsciiLower(value)) != std::string::npos) continue;
        grounded = false;
        reasons.push_back(fmt::format("grounding: {} = \"{}\" does not occur in the source text", field, CutUtf8(value, 80)));
      }
      const bool pass = schema_errors.empty() && model_ok && (grounded || !st.require_grounded);
      d->validation = {{"verdict", pass ? "pass" : "fail"},
                       {"schema_valid", schema_errors.empty()},
                       {"score", p_yes},
                       {"grounded", grounded},
                       {"reasons", reasons}};
      if (!pass) {
        Fail(stage, d, !schema_errors.empty() ? "schema invalid" : !model_ok ? "model rejected" : "not grounded",
             fmt::format("validation failed: {}", reasons.dump()));
      }
    }
    return Status::Ok();
  });
  if (!s.ok()) {
    for (DocPtr& d : work) {
      if (!d->failed) Fail(stage, d, "model error", s.message());
    }
  }
  AddStats(stage, static_cast<int64_t>(work.size()), Since(t0), tokens);
  size_t extract_stage = 0;
  for (size_t i = 0; i < def.stages.size(); ++i) {
    if (def.stages[i].type == StageType::kExtract) extract_stage = i;
  }
  for (DocPtr& d : batch) {
    if (d->failed && d->fail_stage == st.name && d->attempts == 1 && !RetryFile(d).empty() && !cancelled) {
      d->failed = false;  // retried once: extraction again on the next tier up, then validation
      d->retry = true;
      d->extracted = Json();
      d->validation = Json();
      queues[extract_stage]->Push(d);
      continue;
    }
    Forward(stage, d);
  }
}

}  // namespace qwenmux::pipeline
