// Token-budgeted chunking that follows the document's structure.
//
// A heading closes the current chunk and becomes part of the heading path ("Guide > Install >
// Debian") carried by every chunk below it. Paragraphs are packed whole into chunks of at most
// max_tokens (the heading path counts against the budget); a paragraph too long for one chunk is
// split at sentence ends, else at spaces, else at a UTF-8 character boundary, into pieces that
// fit. Consecutive chunks of one section share up to overlap_tokens of trailing pieces.
// Output is a pure function of the input, so chunk ordinals (and the ids built from them) are
// stable across runs.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "rag/reader.h"

namespace qwenmux::rag {

struct ChunkOptions {
  int32_t max_tokens = 256;
  int32_t overlap_tokens = 32;
  Status Validate() const;
};

struct Chunk {
  std::string heading;  // heading path, may be empty
  std::string text;     // body text (paragraphs separated by blank lines)
  int32_t n_tokens = 0; // tokens of text (by the counter)
};

using TokenCounter = std::function<int32_t(std::string_view)>;

// A rough counter for when no tokenizer is at hand: about 4 bytes per token.
int32_t ApproxTokens(std::string_view s);

std::vector<Chunk> ChunkDocument(const ParsedDocument& doc, const ChunkOptions& options, const TokenCounter& count);

// The text a chunk is embedded and reranked as: heading path, newline, body.
std::string ChunkEmbedText(std::string_view heading, std::string_view text);

}  // namespace qwenmux::rag
