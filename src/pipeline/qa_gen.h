// Fine-tuning data from a RAG collection (`qwenmux finetune prepare --collection`): a stage model
// writes question/answer pairs about each chunk of the collection, as JSON constrained by a schema
// (so every answer parses, whatever the model), and only pairs that pass the checks are kept:
//   - grounded: at least min_grounding of the answer's words (runs of ASCII letters and digits,
//     case-folded, or of non-ASCII UTF-8; 3+ bytes) occur among the chunk's words;
//   - not empty, and not a copy of the question;
//   - deduplicated: a question whose normalised text (case-folded words) was kept before, in this
//     run or in the output file already, is dropped.
// Each kept pair is one JSONL line of the `messages` shape finetune::LoadJsonl reads, with the
// chunk's stable id in "source":
//   {"messages": [{"role": "user", "content": Q}, {"role": "assistant", "content": A}], "source": "doc:3"}
// With with_context the user turn carries the chunk before the question (training for RAG-style
// prompts); with a system prompt, a system turn comes first.
//
// Resumable: lines are appended and flushed one chunk at a time, and chunks whose id already
// appears as a "source" in the output file are skipped, so a stopped run continues where it was.
//
// Thread-safety: uses the model and the store exclusively.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "engine/engine.h"
#include "rag/store.h"

namespace qwenmux::pipeline {

struct QaGenOptions {
  std::string collection;
  int32_t pairs_per_chunk = 2;   // asked of the model (1..8)
  int64_t max_chunks = 0;        // chunks to use, in stored order (0: all)
  int32_t max_tokens = 512;      // generation budget per chunk
  int32_t max_question_chars = 300, max_answer_chars = 600;  // schema bounds of the strings
  double min_grounding = 0.5;    // share of the answer's words found in the chunk
  bool with_context = false;     // the user turn carries the chunk before the question
  std::string system;            // system turn of every example ("": none)
  int32_t batch = 4;             // chunks generated together (engine sequences)
};

struct QaGenReport {
  int64_t chunks = 0;              // chunks of the collection considered
  int64_t skipped_done = 0;        // already in the output file (resume)
  int64_t pairs_generated = 0;     // pairs the model wrote
  int64_t kept = 0;
  int64_t dropped_ungrounded = 0, dropped_duplicate = 0, dropped_empty = 0;
  int64_t chunks_failed = 0;       // no parseable answer (a generation cut at max_tokens)
  int64_t tokens = 0;              // tokens run through the model

  std::string ToJson() const;
};

// Share of `answer`'s words that occur in `text` (1 when the answer has no words).
double Grounding(std::string_view answer, std::string_view text);
// Case-folded words of `s` joined by one space (the dedup key of a question).
std::string NormalizedWords(std::string_view s);

Result<QaGenReport> GenerateQaPairs(engine::Model& model, rag::Store& store, const QaGenOptions& o,
                                    const std::string& out_path);

}  // namespace qwenmux::pipeline
