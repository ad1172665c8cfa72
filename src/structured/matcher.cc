#include "structured/matcher.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace qwenmux::structured {

namespace {

constexpr uint64_t kPosMask = 0xFFFFFFFFull;
inline uint32_t Pos(uint64_t e) { return static_cast<uint32_t>(e & kPosMask); }
inline uint32_t Count(uint64_t e) { return static_cast<uint32_t>((e >> 32) & 0xFFFF); }
inline int Sub(uint64_t e) { return static_cast<int>((e >> 48) & 0xFF); }
inline uint64_t RunEntry(uint32_t pos, uint32_t count, int sub) {
  return pos | (static_cast<uint64_t>(count) << 32) | (static_cast<uint64_t>(sub) << 48);
}

// Bytes the string automaton accepts in each state (the closing quote handled apart).
struct StringByteSets {
  ByteSet by_state[14];
  StringByteSets() {
    for (int s = 0; s < 14; ++s) {
      for (int b = 0; b < 256; ++b) {
        const StringStep st = JsonStringStep(s, static_cast<uint8_t>(b));
        if (st.next >= 0 && !st.exit) by_state[s].Set(static_cast<uint8_t>(b));
      }
    }
  }
};
const StringByteSets& StringSets() {
  static const StringByteSets sets;
  return sets;
}

}  // namespace

// ---- CompiledConstraint ----

namespace {

// Heap bytes of a grammar (vector capacities; strings' own buffers).
size_t GrammarBytes(const Grammar& g) {
  size_t n = g.elems.capacity() * sizeof(Elem) + g.sets.capacity() * sizeof(ByteSet) +
             g.alts.capacity() * sizeof(std::vector<uint32_t>) + g.rule_names.capacity() * sizeof(std::string);
  for (const auto& a : g.alts) n += a.capacity() * sizeof(uint32_t);
  for (const auto& r : g.rule_names) n += r.capacity() > 15 ? r.capacity() + 1 : 0;
  return n;
}

}  // namespace

CompiledConstraint::CompiledConstraint(Grammar grammar, std::shared_ptr<const VocabIndex> vocab, ConstraintOptions options)
    : grammar_(std::move(grammar)), vocab_(std::move(vocab)), options_(std::move(options)) {
  grammar_bytes_ = sizeof(*this) + GrammarBytes(grammar_);
  if (options_.memory) options_.memory->Charge(grammar_bytes_);
}

CompiledConstraint::~CompiledConstraint() {
  if (options_.memory) options_.memory->Release(grammar_bytes_ + cache_bytes_);
}

std::unique_ptr<engine::LogitProcessor> CompiledConstraint::NewProcessor() const {
  return std::make_unique<GrammarMatcher>(shared_from_this());
}

std::shared_ptr<const TokenMask> CompiledConstraint::FindMask(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(key);
  if (it == cache_.end()) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  hits_.fetch_add(1, std::memory_order_relaxed);
  return it->second;
}

void CompiledConstraint::StoreMask(std::string key, std::shared_ptr<const TokenMask> mask) const {
  const size_t bytes = mask->size() * sizeof(uint64_t) + key.size() + 64;
  std::lock_guard<std::mutex> lock(mu_);
  if (cache_bytes_ + bytes > options_.mask_cache_bytes) return;  // full: stop caching (masks stay correct)
  if (cache_.count(key)) return;
  // The shared budget (ConstraintCache) full: stop caching too.
  if (options_.memory && !options_.memory->TryCharge(bytes)) return;
  cache_.emplace(std::move(key), std::move(mask));
  cache_bytes_ += bytes;
  mask_bytes_.store(cache_bytes_, std::memory_order_relaxed);
}

// ---- StackSet ----

void StackSet::Add(std::span<const uint64_t> st) {
  for (size_t i = 0; i < size(); ++i) {
    auto s = stack(i);
    if (s.size() == st.size() && std::equal(s.begin(), s.end(), st.begin())) return;
  }
  data.insert(data.end(), st.begin(), st.end());
  ends.push_back(static_cast<uint32_t>(data.size()));
}

// ---- GrammarMatcher ----

GrammarMatcher::GrammarMatcher(std::shared_ptr<const CompiledConstraint> constraint)
    : c_(std::move(constraint)), g_(&c_->grammar()), v_(&c_->vocab()) {
  levels_.resize(static_cast<size_t>(v_->max_token_bytes()) + 2);
  std::vector<uint64_t> st;
  for (uint32_t alt : g_->alts[g_->root]) {
    st.assign(1, alt);
    Expand(st, &state_, 0);
  }
}

void GrammarMatcher::Expand(std::vector<uint64_t>& st, StackSet* out, size_t depth) {
  for (;;) {
    if (st.empty()) {
      out->Add(st);
      return;
    }
    const uint32_t pos = Pos(st.back());
    const Elem& e = g_->elems[pos];
    if (e.type == ElemType::kEnd) {
      st.pop_back();
      continue;
    }
    if (e.type != ElemType::kRef) {
      out->Add(st);
      return;
    }
    st.pop_back();
    if (g_->elems[pos + 1].type != ElemType::kEnd) st.push_back(pos + 1);  // continuation (not a tail call)
    const auto& alts = g_->alts[e.a];
    if (alts.empty()) return;
    if (expand_scratch_.size() <= depth) expand_scratch_.resize(depth + 1);
    for (size_t i = 0; i + 1 < alts.size(); ++i) {
      std::vector<uint64_t>& copy = expand_scratch_[depth];
      copy.assign(st.begin(), st.end());
      copy.push_back(alts[i]);
      Expand(copy, out, depth + 1);
    }
    st.push_back(alts.back());
  }
}

void GrammarMatcher::Advance(const StackSet& in, uint8_t byte, StackSet* out) {
  out->clear();
  std::vector<uint64_t>& st = tmp_.data;  // scratch stack
  for (size_t i = 0; i < in.size(); ++i) {
    auto s = in.stack(i);
    if (s.empty()) continue;
    const uint64_t top = s.back();
    const uint32_t pos = Pos(top);
    const Elem& e = g_->elems[pos];
    if (e.type == ElemType::kBytes) {
      if (!g_->sets[e.a].Test(byte)) continue;
      st.assign(s.begin(), s.end() - 1);
      st.push_back(pos + 1);
      Expand(st, out, 0);
    } else if (e.type == ElemType::kStringRun) {
      const uint32_t count = Count(top);
      const int sub = Sub(top);
      const StringStep step = JsonStringStep(sub, byte);
      if (step.exit) {
        if (count < e.a) continue;
        st.assign(s.begin(), s.end() - 1);
        st.push_back(pos + 1);
        Expand(st, out, 0);
      } else if (step.next >= 0) {
        if (step.starts && count >= e.b) continue;
        st.assign(s.begin(), s.end() - 1);
        st.push_back(RunEntry(pos, count + (step.starts ? 1 : 0), step.next));
        out->Add(st);
      }
    }
  }
}

void GrammarMatcher::AdvanceToken(const StackSet& in, int32_t token, StackSet* out) {
  out->clear();
  std::vector<uint64_t>& st = tmp_.data;
  for (size_t i = 0; i < in.size(); ++i) {
    auto s = in.stack(i);
    if (s.empty()) continue;
    const uint32_t pos = Pos(s.back());
    const Elem& e = g_->elems[pos];
    if (e.type != ElemType::kToken || static_cast<int32_t>(e.a) != token) continue;
    st.assign(s.begin(), s.end() - 1);
    st.push_back(pos + 1);
    Expand(st, out, 0);
  }
}

ByteSet GrammarMatcher::NextBytes(const StackSet& set) const {
  ByteSet r;
  for (size_t i = 0; i < set.size(); ++i) {
    auto s = set.stack(i);
    if (s.empty()) continue;
    const uint64_t top = s.back();
    const Elem& e = g_->elems[Pos(top)];
    if (e.type == ElemType::kBytes) {
      r.Or(g_->sets[e.a]);
    } else if (e.type == ElemType::kStringRun) {
      const int sub = Sub(top);
      if (sub != 0 || Count(top) < e.b) r.Or(StringSets().by_state[sub]);
      if (sub == 0 && Count(top) >= e.a) r.Set('"');
    }
  }
  return r;
}

void GrammarMatcher::Walk(const TokenTrie& t, uint32_t node, size_t depth, TokenMask* mask) {
  const ByteSet allowed = NextBytes(levels_[depth]);
  if (allowed.Empty()) return;
  for (uint32_t c = node + 1; c < t.next[node]; c = t.next[c]) {
    if (!allowed.Test(t.byte[c])) continue;
    StackSet& nextl = levels_[depth + 1];
    Advance(levels_[depth], t.byte[c], &nextl);
    if (nextl.empty()) continue;
    for (uint32_t k = t.tok_begin[c]; k < t.tok_begin[c + 1]; ++k) MaskSet(*mask, t.toks[k]);
    if (t.next[c] > c + 1) Walk(t, c, depth + 1, mask);
  }
}

std::shared_ptr<const TokenMask> GrammarMatcher::StackMask(std::span<const uint64_t> stack) {
  key_.assign(reinterpret_cast<const char*>(stack.data()), stack.size() * sizeof(uint64_t));
  if (auto m = c_->FindMask(key_)) return m;
  auto mask = std::make_shared<TokenMask>(v_->mask_words(), 0);
  if (!stack.empty()) {
    const uint64_t top = stack.back();
    const Elem& e = g_->elems[Pos(top)];
    StackSet& l0 = levels_[0];
    l0.clear();
    l0.Add(stack);
    if (e.type == ElemType::kStringRun && Sub(top) == 0) {
      const int32_t room = static_cast<int32_t>(e.b) - static_cast<int32_t>(Count(top));
      const TokenMask& pure = v_->string_pure(std::max(room, 0));
      for (size_t w = 0; w < mask->size(); ++w) (*mask)[w] = pure[w];
      Walk(v_->string_exit_trie(), 0, 0, mask.get());
    } else if (e.type != ElemType::kToken) {
      Walk(v_->trie(), 0, 0, mask.get());
    }
  }
  c_->StoreMask(key_, mask);
  return mask;
}

Status GrammarMatcher::ComputeMask(TokenMask* mask) {
  if (state_.empty() || ended_) return Error(StatusCode::kInternal, "structured: the constrained value is already complete");
  if (state_.size() == 1) {
    *mask = *StackMask(state_.stack(0));
  } else {
    mask->assign(v_->mask_words(), 0);
    for (size_t i = 0; i < state_.size(); ++i) {
      auto m = StackMask(state_.stack(i));
      for (size_t w = 0; w < mask->size(); ++w) (*mask)[w] |= (*m)[w];
    }
  }
  for (size_t i = 0; i < state_.size(); ++i) {
    auto s = state_.stack(i);
    if (s.empty()) {
      for (int32_t id : v_->eos_ids()) MaskSet(*mask, id);
    } else if (const Elem& e = g_->elems[Pos(s.back())]; e.type == ElemType::kToken) {
      if (static_cast<int32_t>(e.a) < v_->vocab_size()) MaskSet(*mask, static_cast<int32_t>(e.a));
    }
  }
  return Status::Ok();
}

Status ApplyTokenMask(const TokenMask& mask, std::span<float> logits) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const size_t n = logits.size();
  const size_t words = std::min(mask.size(), (n + 63) / 64);
  uint64_t any = 0;
  float saved[64];
  for (size_t w = 0; w < words; ++w) {
    const size_t len = std::min<size_t>(64, n - w * 64);
    const uint64_t valid = len == 64 ? ~uint64_t{0} : (uint64_t{1} << len) - 1;
    const uint64_t bits = mask[w] & valid;
    any |= bits;
    float* row = logits.data() + w * 64;
    if (bits == valid) continue;
    if (bits == 0) {
      std::fill(row, row + len, kNegInf);
    } else if (std::popcount(bits) <= 32) {  // mostly masked: save the few, fill, restore
      int k = 0;
      for (uint64_t b = bits; b; b &= b - 1) saved[k++] = row[std::countr_zero(b)];
      std::fill(row, row + len, kNegInf);
      k = 0;
      for (uint64_t b = bits; b; b &= b - 1) row[std::countr_zero(b)] = saved[k++];
    } else {
      for (uint64_t z = ~bits & valid; z; z &= z - 1) row[std::countr_zero(z)] = kNegInf;
    }
  }
  if (words * 64 < n) std::fill(logits.begin() + static_cast<long>(words * 64), logits.end(), kNegInf);
  if (any == 0) return Error(StatusCode::kInternal, "structured: no token of the vocabulary can continue the constrained value");
  return Status::Ok();
}

Status GrammarMatcher::Apply(std::span<float> logits) {
  QM_RETURN_IF_ERROR(ComputeMask(&union_));
  return ApplyTokenMask(union_, logits);
}

Status GrammarMatcher::Accept(int32_t token) {
  if (token < 0 || token >= v_->vocab_size()) {
    return Error(StatusCode::kInvalidArgument, "structured: token id {} out of range", token);
  }
  if (ended_) return Error(StatusCode::kInvalidArgument, "structured: token {} after the end of the value", token);
  if (v_->is_eos(token)) {
    if (!CanEnd()) return Error(StatusCode::kInvalidArgument, "structured: end of sequence before the value is complete");
    ended_ = true;
    return Status::Ok();
  }
  StackSet next;
  if (v_->is_special(token)) {
    AdvanceToken(state_, token, &next);
  } else {
    if (!AcceptBytes(v_->bytes(token))) {
      return Error(StatusCode::kInvalidArgument, "structured: token {} ('{}') does not fit the constraint", token, v_->bytes(token));
    }
    return Status::Ok();
  }
  if (next.empty()) {
    return Error(StatusCode::kInvalidArgument, "structured: special token {} ('{}') does not fit the constraint", token, v_->bytes(token));
  }
  state_ = std::move(next);
  return Status::Ok();
}

bool GrammarMatcher::AcceptBytes(std::string_view bytes) {
  StackSet cur = state_, next;
  for (char ch : bytes) {
    Advance(cur, static_cast<uint8_t>(ch), &next);
    if (next.empty()) return false;
    std::swap(cur, next);
  }
  state_ = std::move(cur);
  return true;
}

bool GrammarMatcher::CanEnd() const {
  for (size_t i = 0; i < state_.size(); ++i) {
    if (state_.stack(i).empty()) return true;
  }
  return false;
}

bool GrammarMatcher::Done() const { return ended_ || (state_.size() == 1 && state_.stack(0).empty()); }

}  // namespace qwenmux::structured
