// Prompt encoding for requests: a rendered chat (segments from chat::RenderChatSegments) where
// only the template's own text may hold special tokens, and the Qwen3-Reranker prompt, built
// from a tokenizer alone (the model need not be loaded to validate a request).
//
// Thread-safety: pure functions over an immutable Tokenizer.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "chat/chat.h"
#include "tokenizer/tokenizer.h"

namespace qwenmux::server {

// Special tokens are matched in template segments only; the text between two such tokens is
// encoded as one plain piece (so BPE sees the same pieces as for the whole string), and a
// "<|im_start|>" inside a message stays ordinary text.
std::vector<int32_t> EncodeChatPrompt(const tokenizer::Tokenizer& tok, std::span<const chat::PromptSegment> segments);

inline constexpr std::string_view kDefaultRerankInstruction =
    "Given a web search query, retrieve relevant passages that answer the query";

// The Qwen3-Reranker prompt (same tokens as engine::Model::RerankPrompt).
std::vector<int32_t> RerankPrompt(const tokenizer::Tokenizer& tok, std::string_view instruction,
                                  std::string_view query, std::string_view document);

}  // namespace qwenmux::server
