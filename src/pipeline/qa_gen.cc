#include "pipeline/qa_gen.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>

#include "pipeline/job_internal.h"  // ChatPrompt
#include "pipeline/model_ops.h"
#include "structured/structured.h"

namespace qwenmux::pipeline {

namespace {

using json = nlohmann::ordered_json;

constexpr const char* kQaSystem =
    "You write training data. Using only facts stated in the text, write question and answer pairs. "
    "Each question must be answerable from the text alone; each answer states the fact in the "
    "text's own words.";

// The words of s: runs of ASCII letters/digits (lower-cased) or of non-ASCII bytes, 3+ bytes.
std::vector<std::string> Words(std::string_view s) {
  std::vector<std::string> out;
  std::string w;
  auto flush = [&] {
    if (w.size() >= 3) out.push_back(w);
    w.clear();
  };
  for (unsigned char ch : s) {
    if (std::isalnum(ch) && ch < 0x80) {
      w.push_back(static_cast<char>(std::tolower(ch)));
    } else if (ch >= 0x80) {
      w.push_back(static_cast<char>(ch));
    } else {
      flush();
    }
  }
  flush();
  return out;
}

json Schema(const QaGenOptions& o) {
  const int32_t pairs = o.pairs_per_chunk;
  const json pair = {{"type", "object"},
                     {"properties",
                      {{"question", {{"type", "string"}, {"minLength", 5}, {"maxLength", o.max_question_chars}}},
                       {"answer", {{"type", "string"}, {"minLength", 1}, {"maxLength", o.max_answer_chars}}}}},
                     {"required", {"question", "answer"}}};
  return {{"type", "object"},
          {"properties", {{"pairs", {{"type", "array"}, {"items", pair}, {"minItems", 1}, {"maxItems", pairs}}}}},
          {"required", {"pairs"}}};
}

// The "source" ids and normalised questions already in the output file (resume, dedup).
Status ReadExisting(const std::string& path, std::set<std::string>* sources, std::set<std::string>* questions) {
  std::ifstream in(path);
  if (!in) return Status::Ok();  // a new file
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return Error(StatusCode::kInvalidArgument, "finetune prepare: {} line {} is not a JSON object (not an output of "
                   "this command?)", path, n);
    }
    if (j.contains("source") && j["source"].is_string()) sources->insert(j["source"].get<std::string>());
    if (j.contains("messages") && j["messages"].is_array()) {
      for (const json& m : j["messages"]) {  // the bare question (beside a content with context)
        if (!m.is_object() || m.value("role", "") != "user") continue;
        const json& q = m.contains("question") ? m["question"] : m.value("content", json());
        if (q.is_string()) questions->insert(NormalizedWords(q.get<std::string>()));
      }
    }
  }
  return Status::Ok();
}

}  // namespace

double Grounding(std::string_view answer, std::string_view text) {
  const std::vector<std::string> aw = Words(answer);
  if (aw.empty()) return 1.0;
  const std::vector<std::string> tw = Words(text);
  const std::set<std::string> have(tw.begin(), tw.end());
  const auto found = std::count_if(aw.begin(), aw.end(), [&](const std::string& w) { return have.count(w) > 0; });
  return static_cast<double>(found) / static_cast<double>(aw.size());
}

std::string NormalizedWords(std::string_view s) {
  std::string out;
  for (const std::string& w : Words(s)) out += (out.empty() ? "" : " ") + w;
  return out;
}

std::string QaGenReport::ToJson() const {
  return json{{"chunks", chunks},
              {"skipped_done", skipped_done},
              {"pairs_generated", pairs_generated},
              {"kept", kept},
              {"dropped_ungrounded", dropped_ungrounded},
              {"dropped_duplicate", dropped_duplicate},
              {"dropped_empty", dropped_empty},
              {"chunks_failed", chunks_failed},
              {"tokens", tokens}}
      .dump();
}

Result<QaGenReport> GenerateQaPairs(engine::Model& model, rag::Store& store, const QaGenOptions& o,
                                    const std::string& out_path) {
  if (o.pairs_per_chunk < 1 || o.pairs_per_chunk > 8) {
    return Error(StatusCode::kInvalidArgument, "finetune prepare: pairs per chunk {} not in 1..8", o.pairs_per_chunk);
  }
  if (!(o.min_grounding >= 0 && o.min_grounding <= 1)) {
    return Error(StatusCode::kInvalidArgument, "finetune prepare: min grounding {} not in 0..1", o.min_grounding);
  }
  if (o.max_question_chars < 5 || o.max_answer_chars < 1) {
    return Error(StatusCode::kInvalidArgument, "finetune prepare: string bounds {} / {} too small", o.max_question_chars,
                 o.max_answer_chars);
  }
  if (o.batch < 1 || o.max_tokens < 16) {
    return Error(StatusCode::kInvalidArgument, "finetune prepare: batch {} / max tokens {} too small", o.batch, o.max_tokens);
  }
  QM_ASSIGN_OR_RETURN(rag::CollectionInfo c, store.GetCollection(o.collection));
  QM_ASSIGN_OR_RETURN(std::vector<int64_t> ids, store.ChunkIds(c));
  if (o.max_chunks > 0 && static_cast<int64_t>(ids.size()) > o.max_chunks) ids.resize(static_cast<size_t>(o.max_chunks));
  QaGenReport r;
  r.chunks = static_cast<int64_t>(ids.size());
  std::set<std::string> done, questions;
  QM_RETURN_IF_ERROR(ReadExisting(out_path, &done, &questions));
  std::ofstream out(out_path, std::ios::app);
  if (!out) return Error(StatusCode::kIo, "finetune prepare: cannot write {}", out_path);

  const auto& tok = model.tokenizer();
  QM_ASSIGN_OR_RETURN(auto constraint, structured::CompileJsonSchema(Schema(o),
                                                                     structured::VocabIndex::Shared(tok)));
  const std::string before =
      fmt::format("Write up to {} question and answer pairs about this text.\n\nText:\n", o.pairs_per_chunk);
  for (size_t b = 0; b < ids.size(); b += static_cast<size_t>(o.batch)) {
    const std::span<const int64_t> group(ids.data() + b, std::min(ids.size() - b, static_cast<size_t>(o.batch)));
    QM_ASSIGN_OR_RETURN(std::vector<rag::ChunkRecord> chunks, store.GetChunks(group));
    std::erase_if(chunks, [&](const rag::ChunkRecord& ch) {
      const bool skip = done.count(ch.chunk_id) > 0;
      r.skipped_done += skip;
      return skip;
    });
    if (chunks.empty()) continue;
    std::vector<std::vector<int32_t>> prompts;
    std::vector<std::unique_ptr<engine::LogitProcessor>> procs;
    for (const rag::ChunkRecord& ch : chunks) {
      prompts.push_back(ChatPrompt(tok, kQaSystem, before, ch.text, "\n\nThe JSON object:"));
      procs.push_back(constraint->NewProcessor());
    }
    QM_ASSIGN_OR_RETURN(std::vector<ConstrainedOutput> gen,
                        GenerateConstrained(model, prompts, std::move(procs), o.max_tokens, &r.tokens));
    for (size_t i = 0; i < chunks.size(); ++i) {
      const rag::ChunkRecord& ch = chunks[i];
      json j = gen[i].status.ok() && gen[i].complete ? json::parse(gen[i].text, nullptr, false) : json();
      if (!j.is_object() || !j.contains("pairs")) {
        ++r.chunks_failed;
        continue;
      }
      for (const json& p : j["pairs"]) {
        ++r.pairs_generated;
        const std::string q = p["question"].get<std::string>(), a = p["answer"].get<std::string>();
        const std::string key = NormalizedWords(q);
        if (key.empty() || NormalizedWords(a).empty() || key == NormalizedWords(a)) {
          ++r.dropped_empty;
          continue;
        }
        if (Grounding(a, ch.text) < o.min_grounding) {
          ++r.dropped_ungrounded;
          continue;
        }
        if (!questions.insert(key).second) {
          ++r.dropped_duplicate;
          continue;
        }
        json messages = json::array();
        if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
        const std::string user = o.with_context ? fmt::format("Context:\n{}\n\nQuestion: {}", ch.text, q) : q;
        messages.push_back({{"role", "user"}, {"content", user}, {"question", q}});
        messages.push_back({{"role", "assistant"}, {"content", a}});
        out << json{{"messages", messages}, {"source", ch.chunk_id}}.dump() << '\n';
        ++r.kept;
      }
      done.insert(ch.chunk_id);
    }
    out.flush();
    if (!out) return Error(StatusCode::kIo, "finetune prepare: writing {} failed", out_path);
  }
  return r;
}

}  // namespace qwenmux::pipeline
