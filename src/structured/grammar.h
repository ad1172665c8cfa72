// A byte-level context-free grammar: the common target of the JSON-Schema compiler, the
// GBNF-like grammar parser and the tool-call constraint. The matcher (matcher.h) runs it as a
// set of pushdown stacks over the bytes of the vocabulary's tokens.
//
// Layout (like llama.cpp's grammar engine, flat): every rule is a list of alternatives; an
// alternative is a run of elements in `elems` ending with a kEnd element. Terminals:
//   kBytes      one byte from a 256-bit set;
//   kToken      one special token (e.g. <tool_call>), matched by id, never by its text;
//   kStringRun  the body of a JSON string and its closing quote: `a`..`b` characters (code
//               points; an escape such as \n or \u00e9 is one character), no surrogate escapes,
//               valid UTF-8 only, then '"'. A dedicated terminal so the matcher can answer
//               "which tokens stay inside the string" from a precomputed table (matcher.cc).
// Non-terminals: kRef (a rule id).
//
// Thread-safety: a finished Grammar is immutable; GrammarBuilder is single-threaded.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace qwenmux::structured {

struct ByteSet {
  uint64_t w[4] = {0, 0, 0, 0};
  bool Test(uint8_t b) const { return (w[b >> 6] >> (b & 63)) & 1; }
  void Set(uint8_t b) { w[b >> 6] |= uint64_t{1} << (b & 63); }
  void SetRange(uint8_t lo, uint8_t hi) {
    for (int b = lo; b <= hi; ++b) Set(static_cast<uint8_t>(b));
  }
  void Or(const ByteSet& o) {
    for (int i = 0; i < 4; ++i) w[i] |= o.w[i];
  }
  bool Empty() const { return (w[0] | w[1] | w[2] | w[3]) == 0; }
  bool operator==(const ByteSet& o) const = default;
  static ByteSet Of(uint8_t b) {
    ByteSet s;
    s.Set(b);
    return s;
  }
  static ByteSet Range(uint8_t lo, uint8_t hi) {
    ByteSet s;
    s.SetRange(lo, hi);
    return s;
  }
};

enum class ElemType : uint8_t { kEnd, kBytes, kRef, kToken, kStringRun };

struct Elem {
  ElemType type = ElemType::kEnd;
  uint32_t a = 0;  // kBytes: set index; kRef: rule id; kToken: token id; kStringRun: min chars
  uint32_t b = 0;  // kStringRun: max chars
};

// Largest kStringRun bound (the matcher keeps the count in 16 bits).
inline constexpr uint32_t kMaxStringRun = 65535;

struct Grammar {
  std::vector<Elem> elems;
  std::vector<std::vector<uint32_t>> alts;  // rule -> start positions of its alternatives in elems
  std::vector<std::string> rule_names;
  std::vector<ByteSet> sets;
  uint32_t root = 0;
};

// One alternative under construction: a sequence of elements (no kEnd).
using Seq = std::vector<Elem>;

class GrammarBuilder {
 public:
  // Declares a rule (alternatives set later with Define); names need not be unique.
  uint32_t Declare(std::string name);
  void Define(uint32_t rule, std::vector<Seq> alts);
  uint32_t Rule(std::string name, std::vector<Seq> alts) {
    const uint32_t r = Declare(std::move(name));
    Define(r, std::move(alts));
    return r;
  }
  bool defined(uint32_t rule) const { return defined_[rule]; }
  const std::string& name(uint32_t rule) const { return names_[rule]; }
  size_t num_rules() const { return names_.size(); }

  Elem Bytes(const ByteSet& set);
  Elem Byte(uint8_t b) { return Bytes(ByteSet::Of(b)); }
  static Elem Ref(uint32_t rule) { return {ElemType::kRef, rule, 0}; }
  static Elem Token(int32_t id) { return {ElemType::kToken, static_cast<uint32_t>(id), 0}; }
  static Elem StringRun(uint32_t min, uint32_t max) { return {ElemType::kStringRun, min, max}; }
  // The bytes of `text`, one kBytes element each.
  Seq Lit(std::string_view text);

  // Helper rules over a sequence: x?, x*, x+, x{min,max} (max < 0: unbounded). x must not be
  // nullable for * and + (the Build check reports it as left recursion).
  uint32_t Optional(const Seq& x, std::string name = "opt");
  uint32_t Star(const Seq& x, std::string name = "star");
  uint32_t Repeat(const Seq& x, int64_t min, int64_t max, std::string name = "rep");
  // A rule that matches nothing (no alternatives); pruned by Build.
  uint32_t Never(std::string name = "never") { return Rule(std::move(name), {}); }

  // Finishes the grammar: checks every rule is defined, removes alternatives that can never
  // complete (unproductive), fails when the root cannot (kInvalidArgument "... can never be
  // satisfied") and rejects left recursion (the matcher expands rules depth-first).
  Result<Grammar> Build(uint32_t root) &&;

 private:
  std::vector<std::string> names_;
  std::vector<std::vector<Seq>> rules_;
  std::vector<bool> defined_;
  std::vector<ByteSet> sets_;
};

// A rule matching one code point (UTF-8 encoded, surrogates excluded) in the union of the
// inclusive `ranges`, or outside all of them when `negate`.
uint32_t CharClass(GrammarBuilder& g, std::vector<std::pair<uint32_t, uint32_t>> ranges, bool negate,
                   std::string name = "class");

}  // namespace qwenmux::structured
