#include "structured/grammar.h"

#include <algorithm>
#include <functional>

namespace qwenmux::structured {

uint32_t GrammarBuilder::Declare(std::string name) {
  names_.push_back(std::move(name));
  rules_.emplace_back();
  defined_.push_back(false);
  return static_cast<uint32_t>(names_.size() - 1);
}

void GrammarBuilder::Define(uint32_t rule, std::vector<Seq> alts) {
  rules_[rule] = std::move(alts);
  defined_[rule] = true;
}

Elem GrammarBuilder::Bytes(const ByteSet& set) {
  auto it = std::find(sets_.begin(), sets_.end(), set);
  if (it == sets_.end()) {
    sets_.push_back(set);
    it = sets_.end() - 1;
  }
  return {ElemType::kBytes, static_cast<uint32_t>(it - sets_.begin()), 0};
}

Seq GrammarBuilder::Lit(std::string_view text) {
  Seq s;
  for (char c : text) s.push_back(Byte(static_cast<uint8_t>(c)));
  return s;
}

uint32_t GrammarBuilder::Optional(const Seq& x, std::string name) { return Rule(std::move(name), {x, {}}); }

uint32_t GrammarBuilder::Star(const Seq& x, std::string name) {
  const uint32_t r = Declare(std::move(name));
  Seq loop = x;
  loop.push_back(Ref(r));
  Define(r, {loop, {}});
  return r;
}

uint32_t GrammarBuilder::Repeat(const Seq& x, int64_t min, int64_t max, std::string name) {
  Seq body;
  for (int64_t i = 0; i < min; ++i) body.insert(body.end(), x.begin(), x.end());
  if (max < 0) {
    body.push_back(Ref(Star(x, name + "_star")));
  } else if (max > min) {
    // x{0,n} as nested optionals: o_n ::= x o_{n-1} | "" (tail position: the stack stays flat).
    uint32_t tail = Optional(x, name + "_opt1");
    for (int64_t k = 2; k <= max - min; ++k) {
      Seq s = x;
      s.push_back(Ref(tail));
      tail = Rule(name + "_opt" + std::to_string(k), {s, {}});
    }
    body.push_back(Ref(tail));
  }
  return Rule(std::move(name), {body});
}

Result<Grammar> GrammarBuilder::Build(uint32_t root) && {
  const size_t n = rules_.size();
  if (root >= n) return Error(StatusCode::kInternal, "grammar: no root rule");
  for (size_t r = 0; r < n; ++r) {
    if (!defined_[r]) return Error(StatusCode::kInvalidArgument, "grammar: rule '{}' is used but never defined", names_[r]);
  }
  auto terminal_ok = [&](const Elem& e) {
    switch (e.type) {
      case ElemType::kBytes: return !sets_[e.a].Empty();
      case ElemType::kStringRun: return e.a <= e.b && e.b <= kMaxStringRun;
      default: return true;
    }
  };
  // Productive rules: fixpoint.
  std::vector<bool> productive(n, false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      if (productive[r]) continue;
      for (const Seq& alt : rules_[r]) {
        const bool ok = std::all_of(alt.begin(), alt.end(), [&](const Elem& e) {
          return e.type == ElemType::kRef ? productive[e.a] : terminal_ok(e);
        });
        if (ok) {
          productive[r] = changed = true;
          break;
        }
      }
    }
  }
  if (!productive[root]) {
    return Error(StatusCode::kInvalidArgument, "grammar: '{}' can never be satisfied (no finite value matches)", names_[root]);
  }
  for (auto& alts : rules_) {
    std::erase_if(alts, [&](const Seq& alt) {
      return !std::all_of(alt.begin(), alt.end(), [&](const Elem& e) {
        return e.type == ElemType::kRef ? productive[e.a] : terminal_ok(e);
      });
    });
  }
  // Left recursion: a rule reachable from itself through leftmost positions (after nullable
  // prefixes). Nullable rules first.
  std::vector<bool> nullable(n, false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      if (nullable[r]) continue;
      for (const Seq& alt : rules_[r]) {
        if (std::all_of(alt.begin(), alt.end(), [&](const Elem& e) { return e.type == ElemType::kRef && nullable[e.a]; })) {
          nullable[r] = changed = true;
          break;
        }
      }
    }
  }
  std::vector<std::vector<uint32_t>> left(n);
  for (size_t r = 0; r < n; ++r) {
    for (const Seq& alt : rules_[r]) {
      for (const Elem& e : alt) {
        if (e.type != ElemType::kRef) break;
        left[r].push_back(e.a);
        if (!nullable[e.a]) break;
      }
    }
  }
  std::vector<uint8_t> color(n, 0);  // 0 new, 1 on the DFS path, 2 done
  std::string cycle;
  std::function<bool(uint32_t)> dfs = [&](uint32_t r) {
    color[r] = 1;
    for (uint32_t s : left[r]) {
      if (color[s] == 1) {
        cycle = names_[s];
        return true;
      }
      if (color[s] == 0 && dfs(s)) return true;
    }
    color[r] = 2;
    return false;
  };
  for (size_t r = 0; r < n; ++r) {
    if (color[r] == 0 && dfs(static_cast<uint32_t>(r))) {
      return Error(StatusCode::kInvalidArgument,
                   "grammar: left recursion through rule '{}' (or a repetition of something that can be empty)", cycle);
    }
  }
  Grammar g;
  g.rule_names = std::move(names_);
  g.sets = std::move(sets_);
  g.root = root;
  g.alts.resize(n);
  for (size_t r = 0; r < n; ++r) {
    for (const Seq& alt : rules_[r]) {
      g.alts[r].push_back(static_cast<uint32_t>(g.elems.size()));
      g.elems.insert(g.elems.end(), alt.begin(), alt.end());
      g.elems.push_back({ElemType::kEnd, 0, 0});
    }
  }
  return g;
}

namespace {

int Utf8Len(uint32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

void Encode(uint32_t cp, uint8_t* out) {
  switch (Utf8Len(cp)) {
    case 1: out[0] = static_cast<uint8_t>(cp); break;
    case 2:
      out[0] = static_cast<uint8_t>(0xC0 | (cp >> 6));
      out[1] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
      break;
    case 3:
      out[0] = static_cast<uint8_t>(0xE0 | (cp >> 12));
      out[1] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
      out[2] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
      break;
    default:
      out[0] = static_cast<uint8_t>(0xF0 | (cp >> 18));
      out[1] = static_cast<uint8_t>(0x80 | ((cp >> 12) & 0x3F));
      out[2] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
      out[3] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
  }
}

// Splits [lo, hi] (same encoded length, no surrogates) into ranges whose UTF-8 encodings are a
// product of per-byte ranges.
void SplitUtf8(GrammarBuilder& g, uint32_t lo, uint32_t hi, std::vector<Seq>* out) {
  const uint32_t bounds[] = {0x7F, 0x7FF, 0xFFFF};
  for (uint32_t b : bounds) {
    if (lo <= b && hi > b) {
      SplitUtf8(g, lo, b, out);
      SplitUtf8(g, b + 1, hi, out);
      return;
    }
  }
  const int len = Utf8Len(lo);
  for (int i = 1; i < len; ++i) {
    const uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        SplitUtf8(g, lo, lo | m, out);
        SplitUtf8(g, (lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        SplitUtf8(g, lo, (hi & ~m) - 1, out);
        SplitUtf8(g, hi & ~m, hi, out);
        return;
      }
    }
  }
  uint8_t a[4], b[4];
  Encode(lo, a);
  Encode(hi, b);
  Seq s;
  for (int k = 0; k < len; ++k) s.push_back(g.Bytes(ByteSet::Range(a[k], b[k])));
  out->push_back(std::move(s));
}

}  // namespace

uint32_t CharClass(GrammarBuilder& g, std::vector<std::pair<uint32_t, uint32_t>> ranges, bool negate, std::string name) {
  // Normalise: clip, sort, merge; remove surrogates; complement when negated.
  std::vector<std::pair<uint32_t, uint32_t>> in;
  for (auto [lo, hi] : ranges) {
    hi = std::min<uint32_t>(hi, 0x10FFFF);
    if (lo <= hi) in.push_back({lo, hi});
  }
  std::sort(in.begin(), in.end());
  std::vector<std::pair<uint32_t, uint32_t>> merged;
  for (auto r : in) {
    if (!merged.empty() && r.first <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  if (negate) {
    std::vector<std::pair<uint32_t, uint32_t>> comp;
    uint32_t next = 0;
    for (auto [lo, hi] : merged) {
      if (lo > next) comp.push_back({next, lo - 1});
      next = hi + 1;
    }
    if (next <= 0x10FFFF) comp.push_back({next, 0x10FFFF});
    merged = std::move(comp);
  }
  std::vector<Seq> alts;
  // Single-byte members as one set (the common case), the rest split by encoding.
  ByteSet ascii;
  for (auto [lo, hi] : merged) {
    auto part = [&](uint32_t a, uint32_t b) {
      if (a > b) return;
      if (b < 0x80) {
        ascii.SetRange(static_cast<uint8_t>(a), static_cast<uint8_t>(b));
        return;
      }
      if (a < 0x80) {
        ascii.SetRange(static_cast<uint8_t>(a), 0x7F);
        a = 0x80;
      }
      SplitUtf8(g, a, b, &alts);
    };
    if (lo <= 0xDFFF && hi >= 0xD800) {
      if (lo < 0xD800) part(lo, 0xD7FF);
      if (hi > 0xDFFF) part(0xE000, hi);
    } else {
      part(lo, hi);
    }
  }
  if (!ascii.Empty()) alts.insert(alts.begin(), Seq{g.Bytes(ascii)});
  return g.Rule(std::move(name), std::move(alts));
}

}  // namespace qwenmux::structured
