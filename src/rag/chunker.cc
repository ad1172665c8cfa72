#include "rag/chunker.h"

#include <algorithm>

namespace qwenmux::rag {

Status ChunkOptions::Validate() const {
  if (max_tokens < 16 || max_tokens > 32768)
    return Error(StatusCode::kInvalidArgument, "chunk size {} tokens: must be in 16..32768", max_tokens);
  if (overlap_tokens < 0 || overlap_tokens >= max_tokens / 2)
    return Error(StatusCode::kInvalidArgument, "chunk overlap {} tokens: must be in 0..{}", overlap_tokens,
                 max_tokens / 2 - 1);
  return Status::Ok();
}

int32_t ApproxTokens(std::string_view s) { return static_cast<int32_t>((s.size() + 3) / 4); }

std::string ChunkEmbedText(std::string_view heading, std::string_view text) {
  if (heading.empty()) return std::string(text);
  std::string out(heading);
  out += '\n';
  out.append(text);
  return out;
}

namespace {

struct Piece {
  std::string text;
  int32_t tokens;
  bool paragraph_start;  // first piece of its paragraph
};

bool IsUtf8Continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// Where to cut `s` near its middle: after a sentence end, else at a space, else at a character
// boundary. Never 0 or s.size() for s of two or more characters.
size_t SplitPoint(std::string_view s) {
  const size_t mid = s.size() / 2;
  auto nearest = [&](auto pred) -> size_t {
    for (size_t d = 0; d < mid; ++d) {
      if (mid + d < s.size() && pred(mid + d)) return mid + d;
      if (mid >= d + 1 && mid - d > 0 && pred(mid - d)) return mid - d;
    }
    return 0;
  };
  auto sentence_end = [&](size_t i) {
    return i > 0 && i < s.size() && s[i] == ' ' && (s[i - 1] == '.' || s[i - 1] == '!' || s[i - 1] == '?');
  };
  // Look for a sentence end within the middle half, else a space in the middle half.
  size_t p = nearest(sentence_end);
  if (p > s.size() / 4 && p < s.size() * 3 / 4) return p + 1;
  p = nearest([&](size_t i) { return s[i] == ' '; });
  if (p > 0 && p < s.size()) return p + 1;
  p = mid;
  while (p > 0 && IsUtf8Continuation(s[p])) --p;
  if (p == 0) {
    p = mid;
    while (p < s.size() && IsUtf8Continuation(s[p])) ++p;
  }
  return p;
}

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && s[b] == ' ') ++b;
  while (e > b && s[e - 1] == ' ') --e;
  return std::string(s.substr(b, e - b));
}

// Sentences of `t`: cut after ". ", "! ", "? " (the space stays with the next sentence).
std::vector<std::string_view> Sentences(std::string_view t) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t i = 1; i + 1 < t.size(); ++i) {
    if (t[i + 1] == ' ' && (t[i] == '.' || t[i] == '!' || t[i] == '?')) {
      out.push_back(t.substr(start, i + 1 - start));
      start = i + 1;
    }
  }
  out.push_back(t.substr(start));
  return out;
}

// Pieces of at most `budget` tokens: the whole text if it fits, else its sentences, and a
// sentence that is still too long is halved (at a space, else a character boundary).
void SplitToFit(std::string_view s, int32_t budget, const TokenCounter& count, int depth, std::vector<Piece>* out) {
  const std::string t = Trim(s);
  if (t.empty()) return;
  const int32_t n = count(t);
  if (n <= budget || depth > 40) {
    out->push_back({t, n, false});
    return;
  }
  const auto sentences = Sentences(t);
  if (sentences.size() > 1) {
    for (std::string_view part : sentences) SplitToFit(part, budget, count, depth + 1, out);
    return;
  }
  const size_t cut = SplitPoint(t);
  if (cut == 0 || cut >= t.size()) {
    out->push_back({t, n, false});
    return;
  }
  SplitToFit(std::string_view(t).substr(0, cut), budget, count, depth + 1, out);
  SplitToFit(std::string_view(t).substr(cut), budget, count, depth + 1, out);
}

}  // namespace

std::vector<Chunk> ChunkDocument(const ParsedDocument& doc, const ChunkOptions& options, const TokenCounter& count) {
  std::vector<Chunk> chunks;
  std::vector<std::pair<int, std::string>> headings;  // (level, text) stack
  std::string heading_path;
  int32_t budget = options.max_tokens;
  std::vector<Piece> cur;
  int32_t cur_tokens = 0;

  auto emit = [&] {
    if (cur.empty()) return;
    Chunk c;
    c.heading = heading_path;
    for (size_t i = 0; i < cur.size(); ++i) {
      if (i > 0) c.text += cur[i].paragraph_start ? "\n\n" : " ";
      c.text += cur[i].text;
    }
    c.n_tokens = count(c.text);
    chunks.push_back(std::move(c));
  };
  auto close_section = [&] {
    emit();
    cur.clear();
    cur_tokens = 0;
  };

  for (const Block& b : doc.blocks) {
    if (b.heading_level > 0) {
      close_section();
      while (!headings.empty() && headings.back().first >= b.heading_level) headings.pop_back();
      headings.emplace_back(b.heading_level, b.text);
      heading_path.clear();
      for (const auto& [level, text] : headings) heading_path += (heading_path.empty() ? "" : " > ") + text;
      // The heading path rides along with every chunk of the section; keep room for the body.
      budget = std::max(options.max_tokens / 2, options.max_tokens - count(heading_path) - 1);
      continue;
    }
    std::vector<Piece> pieces;
    SplitToFit(b.text, budget, count, 0, &pieces);
    if (!pieces.empty()) pieces.front().paragraph_start = true;
    for (Piece& p : pieces) {
      if (!cur.empty() && cur_tokens + p.tokens + 1 > budget) {
        emit();
        // Overlap: trailing pieces of the chunk just emitted, up to overlap_tokens.
        std::vector<Piece> tail;
        int32_t tail_tokens = 0;
        for (size_t i = cur.size(); i-- > 0;) {
          if (tail_tokens + cur[i].tokens > options.overlap_tokens) break;
          tail_tokens += cur[i].tokens + 1;
          tail.insert(tail.begin(), cur[i]);
        }
        if (tail_tokens + p.tokens + 1 > budget) tail.clear(), tail_tokens = 0;
        cur = std::move(tail);
        cur_tokens = tail_tokens;
      }
      cur_tokens += p.tokens + (cur.empty() ? 0 : 1);
      cur.push_back(std::move(p));
    }
  }
  close_section();
  return chunks;
}

}  // namespace qwenmux::rag
