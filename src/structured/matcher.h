// Running a Grammar over tokens: CompiledConstraint (grammar + vocabulary tables + a shared
// mask cache; immutable apart from the cache) and GrammarMatcher (one sequence's state, an
// engine::LogitProcessor).
//
// The matcher state is a set of pushdown stacks (positions in Grammar::elems, top = next
// terminal to match), as in llama.cpp's grammar engine. The allowed-token mask of a state is
// the union of the masks of its stacks; the mask of one stack is computed by walking the
// vocabulary trie depth-first against the grammar, pruning a subtree as soon as its first byte
// is rejected, and is cached per stack in the CompiledConstraint (shared by all sequences of
// that constraint, bounded by ConstraintOptions::mask_cache_bytes). Inside a JSON string body
// (kStringRun) the tokens that stay inside the string come from a precomputed table and only
// the few that close it are walked.
//
// Thread-safety: CompiledConstraint is safe to share across threads (the cache is guarded by a
// mutex); a GrammarMatcher is one sequence's state, used by one thread at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/logit_processor.h"
#include "structured/grammar.h"
#include "structured/vocab_index.h"

namespace qwenmux::structured {

// Bytes held by the compiled constraints that share it (their grammars and mask caches): a
// ConstraintCache gives one to the constraints it compiles, reports it, and mask caches only
// grow while the total is within its limit (a mask not cached is computed again when needed).
// Thread-safe.
class ConstraintMemory {
 public:
  explicit ConstraintMemory(size_t limit) : limit_(limit) {}
  size_t used() const { return used_.load(std::memory_order_relaxed); }
  size_t limit() const { return limit_.load(std::memory_order_relaxed); }
  void set_limit(size_t bytes) { limit_.store(bytes, std::memory_order_relaxed); }
  void Charge(size_t n) { used_.fetch_add(n, std::memory_order_relaxed); }
  // Charges n only when the total stays within the limit.
  bool TryCharge(size_t n) {
    size_t cur = used_.load(std::memory_order_relaxed);
    do {
      if (cur + n > limit()) return false;
    } while (!used_.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed));
    return true;
  }
  void Release(size_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }

 private:
  std::atomic<size_t> used_{0};
  std::atomic<size_t> limit_;
};

struct ConstraintOptions {
  size_t mask_cache_bytes = size_t{32} << 20;  // per compiled constraint; 0 disables the cache
  std::shared_ptr<ConstraintMemory> memory;   // where its bytes are counted (may be null)
};

class CompiledConstraint : public std::enable_shared_from_this<CompiledConstraint> {
 public:
  CompiledConstraint(Grammar grammar, std::shared_ptr<const VocabIndex> vocab, ConstraintOptions options = {});
  ~CompiledConstraint();
  CompiledConstraint(const CompiledConstraint&) = delete;
  CompiledConstraint& operator=(const CompiledConstraint&) = delete;

  // A fresh per-sequence processor (a GrammarMatcher at the start of the grammar). The
  // processor keeps this constraint alive.
  std::unique_ptr<engine::LogitProcessor> NewProcessor() const;

  const Grammar& grammar() const { return grammar_; }
  const VocabIndex& vocab() const { return *vocab_; }

  // Mask cache (used by GrammarMatcher).
  std::shared_ptr<const TokenMask> FindMask(const std::string& key) const;
  void StoreMask(std::string key, std::shared_ptr<const TokenMask> mask) const;
  uint64_t cache_hits() const { return hits_.load(std::memory_order_relaxed); }
  uint64_t cache_misses() const { return misses_.load(std::memory_order_relaxed); }
  // Bytes this constraint holds now: its grammar (measured once) and its mask cache (grows).
  size_t memory_bytes() const { return grammar_bytes_ + mask_bytes_.load(std::memory_order_relaxed); }

 private:
  Grammar grammar_;
  std::shared_ptr<const VocabIndex> vocab_;
  ConstraintOptions options_;
  mutable std::mutex mu_;
  mutable std::unordered_map<std::string, std::shared_ptr<const TokenMask>> cache_;
  mutable size_t cache_bytes_ = 0;
  size_t grammar_bytes_ = 0;
  mutable std::atomic<size_t> mask_bytes_{0};  // = cache_bytes_, readable without the lock
  mutable std::atomic<uint64_t> hits_{0}, misses_{0};
};

// A set of stacks, flat: stack i is data[begin(i), ends[i]).
struct StackSet {
  std::vector<uint64_t> data;
  std::vector<uint32_t> ends;
  size_t size() const { return ends.size(); }
  bool empty() const { return ends.empty(); }
  void clear() {
    data.clear();
    ends.clear();
  }
  std::span<const uint64_t> stack(size_t i) const {
    const size_t b = i ? ends[i - 1] : 0;
    return {data.data() + b, ends[i] - b};
  }
  void Add(std::span<const uint64_t> st);  // ignores duplicates
};

// Sets logits[i] = -inf for every token not in `mask` (and every index past it). Error
// (kInternal) when no token is left.
Status ApplyTokenMask(const TokenMask& mask, std::span<float> logits);

class GrammarMatcher final : public engine::LogitProcessor {
 public:
  explicit GrammarMatcher(std::shared_ptr<const CompiledConstraint> constraint);

  Status Apply(std::span<float> logits) override;
  Status Accept(int32_t token) override;
  // The value is complete and nothing can follow it.
  bool Done() const override;

  // The grammar may end here (end-of-sequence tokens are allowed).
  bool CanEnd() const;
  // The allowed tokens of the current state (normal and special) into *mask.
  Status ComputeMask(TokenMask* mask);
  // Feeds raw bytes (tests, forced text); false (state unchanged) when the grammar rejects them.
  bool AcceptBytes(std::string_view bytes);
  // Stacks in the current state (tests, diagnostics).
  size_t num_stacks() const { return state_.size(); }

 private:
  void Expand(std::vector<uint64_t>& st, StackSet* out, size_t depth);
  void Advance(const StackSet& in, uint8_t byte, StackSet* out);
  void AdvanceToken(const StackSet& in, int32_t token, StackSet* out);
  ByteSet NextBytes(const StackSet& s) const;
  void Walk(const TokenTrie& t, uint32_t node, size_t depth, TokenMask* mask);
  std::shared_ptr<const TokenMask> StackMask(std::span<const uint64_t> stack);

  std::shared_ptr<const CompiledConstraint> c_;
  const Grammar* g_;
  const VocabIndex* v_;
  StackSet state_;
  bool ended_ = false;  // an end-of-sequence token was accepted
  // Scratch.
  std::vector<StackSet> levels_;
  std::deque<std::vector<uint64_t>> expand_scratch_;  // deque: references stay valid as it grows
  StackSet tmp_;
  TokenMask union_;
  std::string key_;
};

}  // namespace qwenmux::structured
