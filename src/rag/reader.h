// Document readers: plain text, Markdown (libcmark), HTML (gumbo) and PDF (poppler-cpp), all
// reduced to the same shape: a title and a list of blocks (headings with their level, and
// paragraphs of body text) that the chunker packs into chunks.
//
// Bad input (binary data, invalid UTF-8 in a text format, a damaged or encrypted PDF) gives a
// Corrupt/Unsupported error naming the file; nothing here throws or aborts.
//
// Thread-safety: pure functions (poppler's error hook is installed once, process-wide).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace qwenmux::rag {

struct Block {
  int heading_level = 0;  // 1..6 for a heading, 0 for body text
  std::string text;       // whitespace-normalised, UTF-8
};

struct ParsedDocument {
  std::string format;  // "txt", "md", "html", "pdf"
  std::string title;   // first top heading, <title>, PDF Title, else the file name
  std::vector<Block> blocks;
};

// The format a file name implies ("txt", "md", "html", "pdf"), or "" if not one we read.
std::string FormatOfPath(std::string_view path);

// Parses `bytes` as `format`; `name` is used in errors and as the fallback title.
Result<ParsedDocument> ParseDocument(std::string_view bytes, std::string_view format, std::string_view name);

// Reads and parses a file (format from its extension).
Result<ParsedDocument> ReadDocument(const std::string& path);

// Whether `s` is valid UTF-8 without NUL bytes.
bool IsTextUtf8(std::string_view s);

// Text formats with more than this share of control bytes (C0 other than \t \n \r \f \v, and
// DEL) are refused as binary data (kCorrupt).
inline constexpr double kMaxControlShare = 0.10;
size_t CountControlBytes(std::string_view s);

}  // namespace qwenmux::rag
