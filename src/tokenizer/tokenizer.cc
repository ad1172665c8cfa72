#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <queue>
#include <unordered_map>

#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode.h"

namespace qwenmux::tokenizer {
namespace {

constexpr uint32_t kNoRank = 0xFFFFFFFFu;

// Open-addressing hash map (left id, right id) -> (merge rank, merged id). Built once, read-only.
class PairTable {
 public:
  struct Entry {
    uint32_t rank;
    int32_t merged;
  };

  void Reserve(size_t n) {
    bits_ = 4;
    while ((size_t{1} << bits_) * 6 / 10 < n + 1) ++bits_;
    slots_.assign(size_t{1} << bits_, Slot{kEmpty, {kNoRank, -1}});
  }

  // Inserts unless the pair is present (the first, lowest rank wins). Returns false if present.
  bool Insert(int32_t left, int32_t right, Entry e) {
    const uint64_t key = Key(left, right);
    for (size_t i = Hash(key);; i = (i + 1) & Mask()) {
      if (slots_[i].key == key) return false;
      if (slots_[i].key == kEmpty) {
        slots_[i] = {key, e};
        return true;
      }
    }
  }

  Entry Find(int32_t left, int32_t right) const {
    const uint64_t key = Key(left, right);
    for (size_t i = Hash(key);; i = (i + 1) & Mask()) {
      const Slot& s = slots_[i];
      if (s.key == key) return s.e;
      if (s.key == kEmpty) return {kNoRank, -1};
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Slot {
    uint64_t key;
    Entry e;
  };
  static uint64_t Key(int32_t l, int32_t r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
  }
  size_t Mask() const { return slots_.size() - 1; }
  size_t Hash(uint64_t key) const {
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> (64 - bits_));
  }
  int bits_ = 0;
  std::vector<Slot> slots_;
};

// Per-call working memory of the BPE.
struct BpeScratch {
  std::vector<int32_t> id;
  std::vector<int32_t> prev, next;
  std::vector<uint32_t> rank;  // rank of the pair (k, next[k]); kNoRank if none
  std::vector<int32_t> merged;
};

}  // namespace

struct Tokenizer::Impl {
  std::vector<std::string> strings;  // as in GGUF
  std::vector<std::string> bytes;    // decoded
  std::vector<TokenType> types;
  int32_t byte_token[256];
  PairTable pairs;
  std::unordered_map<std::string, int32_t> by_text;
  // Added tokens for parse_special, longest first; and which bytes can start one.
  std::vector<std::pair<std::string, int32_t>> added;
  bool added_first_byte[256] = {};
  std::vector<int32_t> special_ids;

  void EncodeOrdinary(std::string_view text, std::vector<int32_t>* ids) const;
  void EncodePiece(std::string_view piece, BpeScratch* s, std::vector<int32_t>* ids) const;
  void MergeLinear(int32_t n, BpeScratch* s) const;
  void MergeHeap(int32_t n, BpeScratch* s) const;
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Result<Tokenizer> Tokenizer::Create(std::vector<std::string> tokens, std::vector<int32_t> types,
                                    std::vector<std::string> merges) {
  if (tokens.empty()) return Error(StatusCode::kInvalidArgument, "tokenizer: empty vocabulary");
  if (tokens.size() != types.size()) {
    return Error(StatusCode::kInvalidArgument,
                 "tokenizer: {} tokens but {} token types (the arrays must have equal length)",
                 tokens.size(), types.size());
  }
  if (tokens.size() > 0x7FFFFFFF) {
    return Error(StatusCode::kInvalidArgument, "tokenizer: vocabulary too large");
  }
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  const auto n = static_cast<int32_t>(tokens.size());
  m.bytes.resize(n);
  m.types.resize(n);
  std::fill(std::begin(m.byte_token), std::end(m.byte_token), -1);
  std::unordered_map<std::string_view, int32_t> by_string;  // GGUF string -> id
  by_string.reserve(tokens.size());
  for (int32_t id = 0; id < n; ++id) {
    const int32_t t = types[id];
    if (t < 0 || t > 6) {
      return Error(StatusCode::kInvalidArgument, "tokenizer: token {} has unknown type {}", id, t);
    }
    m.types[id] = static_cast<TokenType>(t);
    const std::string& s = tokens[id];
    const TokenType type = m.types[id];
    if (type == TokenType::kNormal) {
      if (!ByteLevelToBytes(s, &m.bytes[id])) {
        return Error(StatusCode::kInvalidArgument,
                     "tokenizer: normal token {} ('{}') is not in the byte-level alphabet", id,
                     ToValidUtf8(s));
      }
      if (m.bytes[id].empty()) {
        return Error(StatusCode::kInvalidArgument, "tokenizer: normal token {} is empty", id);
      }
      if (m.bytes[id].size() == 1) {
        const auto b = static_cast<uint8_t>(m.bytes[id][0]);
        if (m.byte_token[b] < 0) m.byte_token[b] = id;
      }
    } else {
      m.bytes[id] = s;  // added / unused tokens are stored as literal text
    }
    by_string.emplace(s, id);  // first id wins for duplicates
  }
  for (int b = 0; b < 256; ++b) {
    if (m.byte_token[b] < 0) {
      return Error(StatusCode::kInvalidArgument,
                   "tokenizer: no single-byte token for byte 0x{:02X} (byte-level BPE needs all "
                   "256)",
                   b);
    }
  }

  m.pairs.Reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& mg = merges[rank];
    const size_t sp = mg.size() > 1 ? mg.find(' ', 1) : std::string::npos;
    if (sp == std::string::npos || sp + 1 >= mg.size()) {
      return Error(StatusCode::kInvalidArgument,
                   "tokenizer: merge {} ('{}') is not of the form 'left right'", rank,
                   ToValidUtf8(mg));
    }
    const std::string_view left(mg.data(), sp), right(mg.data() + sp + 1, mg.size() - sp - 1);
    auto l = by_string.find(left), r = by_string.find(right);
    if (l == by_string.end() || r == by_string.end()) {
      return Error(StatusCode::kInvalidArgument, "tokenizer: merge {} ('{}') names unknown token '{}'",
                   rank, ToValidUtf8(mg), ToValidUtf8(l == by_string.end() ? left : right));
    }
    joined.assign(left);
    joined.append(right);
    auto j = by_string.find(joined);
    if (j == by_string.end()) {
      return Error(StatusCode::kInvalidArgument,
                   "tokenizer: merge {} ('{}') produces '{}', which is not in the vocabulary", rank,
                   ToValidUtf8(mg), ToValidUtf8(joined));
    }
    m.pairs.Insert(l->second, r->second, {static_cast<uint32_t>(rank), j->second});
  }

  m.by_text.reserve(tokens.size());
  for (int32_t id = 0; id < n; ++id) {
    const TokenType t = m.types[id];
    if (t == TokenType::kControl || t == TokenType::kUserDefined) {
      m.special_ids.push_back(id);
      if (!m.bytes[id].empty()) {
        m.added.emplace_back(m.bytes[id], id);
        m.added_first_byte[static_cast<uint8_t>(m.bytes[id][0])] = true;
      }
      m.by_text[m.bytes[id]] = id;  // added tokens win
    } else {
      m.by_text.emplace(m.bytes[id], id);
    }
  }
  // Longest first so the first match at a position is the longest; stable keeps the lower id.
  std::stable_sort(m.added.begin(), m.added.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  m.strings = std::move(tokens);
  return Tokenizer(std::move(impl));
}

// ---- Encoding ----------------------------------------------------------------------------------

void Tokenizer::Impl::MergeLinear(int32_t n, BpeScratch* s) const {
  // Symbols live in s->id[0..n) linked by next; the first symbol is always 0.
  int32_t* id = s->id.data();
  int32_t* next = s->next.data();
  int32_t* prev = s->prev.data();
  uint32_t* rank = s->rank.data();
  int32_t* merged = s->merged.data();
  for (;;) {
    uint32_t best = kNoRank;
    int32_t at = -1;
    for (int32_t k = 0; k >= 0 && next[k] >= 0; k = next[k]) {
      if (rank[k] < best) {
        best = rank[k];
        at = k;
      }
    }
    if (at < 0) return;
    const int32_t r = next[at];
    id[at] = merged[at];
    next[at] = next[r];
    if (next[r] >= 0) prev[next[r]] = at;
    if (next[at] >= 0) {
      const auto e = pairs.Find(id[at], id[next[at]]);
      rank[at] = e.rank;
      merged[at] = e.merged;
    } else {
      rank[at] = kNoRank;
    }
    if (prev[at] >= 0) {
      const int32_t p = prev[at];
      const auto e = pairs.Find(id[p], id[at]);
      rank[p] = e.rank;
      merged[p] = e.merged;
    }
  }
  (void)n;
}

void Tokenizer::Impl::MergeHeap(int32_t n, BpeScratch* s) const {
  // Candidate merges ordered by (rank, position); stale entries are skipped on pop.
  struct Cand {
    uint32_t rank;
    int32_t left;
    int32_t left_id, right_id;
    bool operator>(const Cand& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::vector<Cand> storage;
  storage.reserve(static_cast<size_t>(n));
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap(std::greater<Cand>(),
                                                                         std::move(storage));
  int32_t* id = s->id.data();
  int32_t* next = s->next.data();
  int32_t* prev = s->prev.data();
  std::vector<uint8_t> dead(static_cast<size_t>(n), 0);
  auto push = [&](int32_t k) {
    if (k < 0 || next[k] < 0) return;
    const auto e = pairs.Find(id[k], id[next[k]]);
    if (e.rank != kNoRank) heap.push({e.rank, k, id[k], id[next[k]]});
  };
  for (int32_t k = 0; k + 1 < n; ++k) push(k);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    const int32_t k = c.left;
    if (dead[k] || next[k] < 0 || id[k] != c.left_id || id[next[k]] != c.right_id) continue;
    const int32_t r = next[k];
    id[k] = pairs.Find(c.left_id, c.right_id).merged;
    dead[r] = 1;
    next[k] = next[r];
    if (next[r] >= 0) prev[next[r]] = k;
    push(k);
    push(prev[k]);
  }
}

void Tokenizer::Impl::EncodePiece(std::string_view piece, BpeScratch* s,
                                  std::vector<int32_t>* ids) const {
  const auto n = static_cast<int32_t>(piece.size());
  if (n == 1) {
    ids->push_back(byte_token[static_cast<uint8_t>(piece[0])]);
    return;
  }
  s->id.resize(n);
  s->prev.resize(n);
  s->next.resize(n);
  s->rank.resize(n);
  s->merged.resize(n);
  for (int32_t k = 0; k < n; ++k) {
    s->id[k] = byte_token[static_cast<uint8_t>(piece[k])];
    s->prev[k] = k - 1;
    s->next[k] = k + 1 < n ? k + 1 : -1;
  }
  constexpr int32_t kLinearMax = 48;
  if (n <= kLinearMax) {
    for (int32_t k = 0; k + 1 < n; ++k) {
      const auto e = pairs.Find(s->id[k], s->id[k + 1]);
      s->rank[k] = e.rank;
      s->merged[k] = e.merged;
    }
    s->rank[n - 1] = kNoRank;
    MergeLinear(n, s);
  } else {
    MergeHeap(n, s);
  }
  for (int32_t k = 0; k >= 0; k = s->next[k]) ids->push_back(s->id[k]);
}

void Tokenizer::Impl::EncodeOrdinary(std::string_view text, std::vector<int32_t>* ids) const {
  if (text.empty()) return;
  bool ascii = true;
  for (char c : text) {
    if (static_cast<uint8_t>(c) >= 0x80) {
      ascii = false;
      break;
    }
  }
  std::string normalized;
  if (!ascii) {
    normalized = NormalizeNfc(text);
    text = normalized;
  }
  std::vector<Piece> pieces;
  PretokenizeScratch pscratch;
  BpeScratch bscratch;
  // The scanner uses 32-bit offsets: text over 1 GiB is processed in chunks cut right after a
  // '\n' that is followed by a non-space ASCII character, which is always a piece boundary.
  constexpr size_t kChunk = size_t{1} << 30;
  while (!text.empty()) {
    size_t cut = text.size();
    if (cut > kChunk) {
      cut = kChunk;
      for (size_t k = kChunk; k > kChunk / 2; --k) {
        const auto c = static_cast<uint8_t>(text[k]);
        if (text[k - 1] == '\n' && c > 0x20 && c < 0x7F) {
          cut = k;
          break;
        }
      }
    }
    const std::string_view chunk = text.substr(0, cut);
    pieces.clear();
    pieces.reserve(chunk.size() / 4 + 1);
    Pretokenize(chunk, &pieces, &pscratch);
    for (const Piece& p : pieces) {
      EncodePiece(chunk.substr(p.begin, p.end - p.begin), &bscratch, ids);
    }
    text.remove_prefix(cut);
  }
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  EncodeAppend(text, options, &ids);
  return ids;
}

void Tokenizer::EncodeAppend(std::string_view text, const EncodeOptions& options,
                             std::vector<int32_t>* ids) const {
  const Impl& m = *impl_;
  if (!options.parse_special || m.added.empty()) {
    m.EncodeOrdinary(text, ids);
    return;
  }
  size_t seg = 0;
  for (size_t i = 0; i < text.size();) {
    if (!m.added_first_byte[static_cast<uint8_t>(text[i])]) {
      ++i;
      continue;
    }
    const std::string_view rest = text.substr(i);
    int32_t hit = -1;
    size_t hit_len = 0;
    for (const auto& [str, id] : m.added) {
      if (rest.size() >= str.size() && std::memcmp(rest.data(), str.data(), str.size()) == 0) {
        hit = id;
        hit_len = str.size();
        break;
      }
    }
    if (hit < 0) {
      ++i;
      continue;
    }
    m.EncodeOrdinary(text.substr(seg, i - seg), ids);
    ids->push_back(hit);
    i += hit_len;
    seg = i;
  }
  m.EncodeOrdinary(text.substr(seg), ids);
}

// ---- Decoding and look-ups ---------------------------------------------------------------------

Result<std::string> Tokenizer::Decode(std::span<const int32_t> ids,
                                      const DecodeOptions& options) const {
  const Impl& m = *impl_;
  std::string raw;
  raw.reserve(ids.size() * 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size()) {
      return Error(StatusCode::kInvalidArgument,
                   "tokenizer: decode: id {} at position {} is outside the vocabulary [0, {})", id,
                   i, vocab_size());
    }
    if (options.skip_special && m.types[id] == TokenType::kControl) continue;
    raw.append(m.bytes[id]);
  }
  return ToValidUtf8(raw);
}

std::string_view Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return impl_->bytes[id];
}

std::string_view Tokenizer::TokenString(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return impl_->strings[id];
}

std::optional<int32_t> Tokenizer::TokenId(std::string_view text) const {
  auto it = impl_->by_text.find(std::string(text));
  if (it == impl_->by_text.end()) return std::nullopt;
  return it->second;
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->types.size()); }

TokenType Tokenizer::token_type(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return TokenType::kUndefined;
  return impl_->types[id];
}

const std::vector<int32_t>& Tokenizer::special_ids() const { return impl_->special_ids; }

// ---- StreamDecoder -----------------------------------------------------------------------------

Status StreamDecoder::Push(int32_t id, std::string* out) {
  if (id < 0 || id >= tok_->vocab_size()) {
    return Error(StatusCode::kInvalidArgument,
                 "tokenizer: stream decode: id {} is outside the vocabulary [0, {})", id,
                 tok_->vocab_size());
  }
  if (options_.skip_special && tok_->IsControl(id)) return Status::Ok();
  pending_.append(tok_->TokenBytes(id));
  size_t i = 0;
  while (i < pending_.size()) {
    if (static_cast<uint8_t>(pending_[i]) < 0x80) {
      out->push_back(pending_[i++]);
      continue;
    }
    const Utf8Char c = DecodeUtf8Streaming(pending_.data() + i, pending_.size() - i);
    if (c.len == 0) break;  // incomplete character at the end: wait for more bytes
    if (c.cp == kInvalidCodePoint) {
      out->append("\xEF\xBF\xBD");
    } else {
      out->append(pending_.data() + i, c.len);
    }
    i += c.len;
  }
  pending_.erase(0, i);
  return Status::Ok();
}

void StreamDecoder::Finish(std::string* out) {
  out->append(ToValidUtf8(pending_));
  pending_.clear();
}

}  // namespace qwenmux::tokenizer
