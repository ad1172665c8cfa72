#include "structured/vocab_index.h"

#include <algorithm>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>

namespace qwenmux::structured {

StringStep JsonStringStep(int s, uint8_t b) {
  auto go = [](int n) { return StringStep{static_cast<int8_t>(n), false, false}; };
  constexpr StringStep kReject{-1, false, false};
  auto hex = [](uint8_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
  switch (s) {
    case 0:
      if (b == '"') return {0, true, false};
      if (b == '\\') return {1, false, true};
      if (b < 0x20) return kReject;
      if (b < 0x80) return {0, false, true};
      if (b >= 0xC2 && b <= 0xDF) return {6, false, true};
      if (b == 0xE0) return {8, false, true};
      if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return {7, false, true};
      if (b == 0xED) return {9, false, true};
      if (b == 0xF0) return {11, false, true};
      if (b >= 0xF1 && b <= 0xF3) return {10, false, true};
      if (b == 0xF4) return {12, false, true};
      return kReject;
    case 1:  // after a backslash
      if (b == 'u') return go(2);
      if (b == '"' || b == '\\' || b == '/' || b == 'b' || b == 'f' || b == 'n' || b == 'r' || b == 't') return go(0);
      return kReject;
    case 2:  // \u, 4 hex digits to go; no surrogates (D800-DFFF)
      if (b == 'd' || b == 'D') return go(13);
      return hex(b) ? go(3) : kReject;
    case 3: return hex(b) ? go(4) : kReject;
    case 4: return hex(b) ? go(5) : kReject;
    case 5: return hex(b) ? go(0) : kReject;
    case 13: return (b >= '0' && b <= '7') ? go(4) : kReject;
    case 6: return (b >= 0x80 && b <= 0xBF) ? go(0) : kReject;
    case 7: return (b >= 0x80 && b <= 0xBF) ? go(6) : kReject;
    case 8: return (b >= 0xA0 && b <= 0xBF) ? go(6) : kReject;
    case 9: return (b >= 0x80 && b <= 0x9F) ? go(6) : kReject;
    case 10: return (b >= 0x80 && b <= 0xBF) ? go(7) : kReject;
    case 11: return (b >= 0x90 && b <= 0xBF) ? go(7) : kReject;
    case 12: return (b >= 0x80 && b <= 0x8F) ? go(7) : kReject;
    default: return kReject;
  }
}

namespace {

// Builds a preorder trie over `ids` (sorted by their bytes).
TokenTrie BuildTrie(const std::vector<std::string>& bytes, std::vector<int32_t> ids) {
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return bytes[a] < bytes[b] || (bytes[a] == bytes[b] && a < b); });
  TokenTrie t;
  // Recursive over ranges [lo, hi) of ids sharing a prefix of length d.
  auto add_node = [&](uint8_t byte) {
    t.byte.push_back(byte);
    t.next.push_back(0);
    t.tok_begin.push_back(static_cast<uint32_t>(t.toks.size()));
    return static_cast<uint32_t>(t.byte.size() - 1);
  };
  const uint32_t root = add_node(0);
  // Simple recursive lambda is clearer; token lengths are bounded (a few hundred bytes).
  std::function<void(size_t, size_t, size_t, uint32_t)> build = [&](size_t lo, size_t hi, size_t d, uint32_t node) {
    while (lo < hi && bytes[ids[lo]].size() == d) t.toks.push_back(ids[lo++]);
    while (lo < hi) {
      const uint8_t c = static_cast<uint8_t>(bytes[ids[lo]][d]);
      size_t end = lo;
      while (end < hi && static_cast<uint8_t>(bytes[ids[end]][d]) == c) ++end;
      const uint32_t child = add_node(c);
      build(lo, end, d + 1, child);
      lo = end;
    }
    t.next[node] = static_cast<uint32_t>(t.byte.size());
  };
  build(0, ids.size(), 0, root);
  // tok_begin needs a sentinel; tokens of node n were pushed right after n was added and before
  // its first child, so toks[tok_begin[n] .. tok_begin[n+1]) are exactly node n's tokens.
  t.tok_begin.push_back(static_cast<uint32_t>(t.toks.size()));
  return t;
}

}  // namespace

bool VocabIndex::is_eos(int32_t id) const { return std::find(eos_.begin(), eos_.end(), id) != eos_.end(); }

int32_t VocabIndex::special_id(std::string_view text) const {
  for (int32_t id = 0; id < vocab_size_; ++id) {
    if (special_[id] && bytes_[id] == text) return id;
  }
  return -1;
}

int32_t VocabIndex::normal_id(std::string_view text) const {
  for (int32_t id = 0; id < vocab_size_; ++id) {
    if (!special_[id] && bytes_[id] == text) return id;
  }
  return -1;
}

std::shared_ptr<const VocabIndex> VocabIndex::Build(const tokenizer::Tokenizer& tok) {
  auto v = std::make_shared<VocabIndex>();
  const int32_t n = tok.vocab_size();
  v->vocab_size_ = n;
  v->bytes_.resize(n);
  v->special_.resize(n);
  std::vector<int32_t> normal;
  for (int32_t id = 0; id < n; ++id) {
    v->bytes_[id] = std::string(tok.TokenBytes(id));
    const auto type = tok.token_type(id);
    v->special_[id] = tok.IsSpecial(id) || type == tokenizer::TokenType::kUnused || type == tokenizer::TokenType::kUnknown;
    if (!v->special_[id] && !v->bytes_[id].empty()) {
      normal.push_back(id);
      v->max_token_bytes_ = std::max<int32_t>(v->max_token_bytes_, static_cast<int32_t>(v->bytes_[id].size()));
    }
  }
  for (const char* s : {"<|im_end|>", "<|endoftext|>"}) {
    if (auto id = tok.TokenId(s); id && tok.IsSpecial(*id)) v->eos_.push_back(*id);
  }
  v->trie_ = BuildTrie(v->bytes_, normal);
  // String tables.
  std::vector<int32_t> exits;
  std::vector<int32_t> chars(n, -1);
  for (int32_t id : normal) {
    int s = 0, c = 0;
    bool pure = true;
    for (unsigned char b : v->bytes_[id]) {
      const StringStep st = JsonStringStep(s, b);
      if (st.exit) {
        exits.push_back(id);
        pure = false;
        break;
      }
      if (st.next < 0) {
        pure = false;
        break;
      }
      c += st.starts;
      s = st.next;
    }
    if (pure) {
      chars[id] = c;
      v->max_pure_chars_ = std::max(v->max_pure_chars_, c);
    }
  }
  v->string_exit_ = BuildTrie(v->bytes_, exits);
  v->string_pure_.assign(v->max_pure_chars_ + 1, TokenMask(v->mask_words(), 0));
  for (int32_t id = 0; id < n; ++id) {
    if (chars[id] >= 0) MaskSet(v->string_pure_[chars[id]], id);
  }
  for (int32_t r = 1; r <= v->max_pure_chars_; ++r) {
    for (size_t w = 0; w < v->mask_words(); ++w) v->string_pure_[r][w] |= v->string_pure_[r - 1][w];
  }
  return v;
}

std::shared_ptr<const VocabIndex> VocabIndex::Shared(const tokenizer::Tokenizer& tok) {
  static std::mutex mu;
  static std::map<uint64_t, std::weak_ptr<const VocabIndex>> cache;
  uint64_t h = 1469598103934665603ull ^ static_cast<uint64_t>(tok.vocab_size());
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    for (unsigned char c : tok.TokenBytes(id)) h = (h ^ c) * 1099511628211ull;
    h = (h ^ static_cast<uint64_t>(tok.token_type(id)) ^ 0xff) * 1099511628211ull;
  }
  std::lock_guard<std::mutex> lock(mu);
  if (auto sp = cache[h].lock()) return sp;
  auto v = Build(tok);
  cache[h] = v;
  return v;
}

}  // namespace qwenmux::structured
