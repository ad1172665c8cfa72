// Pipeline definitions (YAML): the stages a document goes through, the model (or tier) of each
// stage, its prompt, labels or schema, batch size and concurrency. See
// examples/pipelines/document-processing.yaml for a documented example.
//
//   name: document-processing
//   context: 4096                 # KV positions per sequence of every model the pipeline loads
//   stages:
//     - {name: read, type: read, max_chars: 6000}
//     - name: classify            # the fast model picks one label; routes to the label's schema
//       type: classify
//       model: qwen3-fast
//       prompt: "Classify the document."
//       labels:
//         invoice: {description: "a bill", schema: {type: object, properties: {...}}}
//         other: {description: "anything else"}     # no schema: no extraction
//     - {name: extract, type: extract, model: qwen3-quality, max_tokens: 384}
//     - {name: validate, type: validate, model: qwen3-balanced, threshold: 0.5}
//
// Stage types: read (file -> text), chunk (token-budgeted chunks), embed (vectors of the chunks;
// with `collection:` stored in the RAG store, so `qwenmux ask` can answer from the documents),
// classify, extract, validate. Order rules: read comes first; chunk before embed; classify and
// chunk after read; extract needs a schema (its own, or the classify labels'); validate after
// extract. Schemas use the subset extraction can constrain (see schema.h).
//
// Every error names the file, the line and the key: `doc.yaml:14: stages[1].labels: ...`.
// Unknown keys are errors.
//
// Thread-safety: plain data; the parser is a pure function.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace qwenmux::pipeline {

enum class StageType { kRead, kChunk, kEmbed, kClassify, kExtract, kValidate };
const char* StageTypeName(StageType t);

struct LabelDef {
  std::string name;
  std::string description;
  nlohmann::ordered_json schema;  // null: documents of this class are not extracted
};

struct StageDef {
  std::string name;
  StageType type = StageType::kRead;
  std::string model;    // a tier ("qwen3-fast", "fast") or model name; "" for read (and chunk: approx. tokens)
  std::string prompt;   // instruction (classify/extract/validate); a default per type when empty
  std::vector<LabelDef> labels;    // classify
  nlohmann::ordered_json schema;   // extract: schema for every document (when no classify labels)
  int32_t batch = 4;               // documents (chunks for embed) per model call
  int32_t concurrency = 1;         // worker threads of the stage (model calls still serialise per model)
  int32_t max_tokens = 384;        // extract: generated tokens per document
  int32_t max_chars = 6000;        // read: document text kept for prompts
  int32_t chunk_tokens = 256, chunk_overlap = 32;  // chunk
  double threshold = 0.5;          // validate: P(supported) needed to pass
  bool require_grounded = false;   // validate: every string field must occur in the source text
  std::string collection;          // embed: store chunks + vectors in this collection of the RAG
                                   // store (RunOptions::store_dir), searchable by `qwenmux ask`
  int line = 0;
};

struct PipelineDef {
  std::string name;
  std::string description;
  std::string source;       // file it came from
  int32_t context = 4096;   // n_ctx of every model the pipeline loads
  std::vector<StageDef> stages;

  const StageDef* Find(StageType t) const;  // first stage of that type, or nullptr
};

Result<PipelineDef> ParsePipeline(std::string_view yaml_text, std::string_view file_name);
Result<PipelineDef> LoadPipeline(const std::string& path);

// Tier ladder used for retries: fast < balanced < quality < max. Returns the short tier name of a
// model reference ("qwen3-quality" or "quality" -> "quality"), or "" when it is not a tier.
std::string TierOf(std::string_view model_ref);
// The next tier up ("quality" -> "max"), or "" at the top / for non-tiers.
std::string NextTier(std::string_view tier);

}  // namespace qwenmux::pipeline
