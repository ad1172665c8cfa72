#include "server/prompt.h"

#include <string>

namespace qwenmux::server {

std::vector<int32_t> EncodeChatPrompt(const tokenizer::Tokenizer& tok, std::span<const chat::PromptSegment> segments) {
  // Special token texts, for leftmost-longest matching in template text.
  std::vector<std::pair<std::string_view, int32_t>> specials;
  for (int32_t id : tok.special_ids()) {
    const std::string_view text = tok.TokenBytes(id);
    if (!text.empty()) specials.emplace_back(text, id);
  }
  std::vector<int32_t> ids;
  std::string plain;
  const tokenizer::EncodeOptions no_special;
  for (const chat::PromptSegment& seg : segments) {
    if (!seg.template_text) {
      plain.append(seg.text);
      continue;
    }
    std::string_view s = seg.text;
    size_t pos = 0;
    while (pos < s.size()) {
      size_t best_at = std::string_view::npos, best_len = 0;
      int32_t best_id = -1;
      for (const auto& [text, id] : specials) {
        const size_t at = s.find(text, pos);
        if (at == std::string_view::npos) continue;
        if (at < best_at || (at == best_at && text.size() > best_len)) {
          best_at = at;
          best_len = text.size();
          best_id = id;
        }
      }
      if (best_at == std::string_view::npos) {
        plain.append(s.substr(pos));
        break;
      }
      plain.append(s.substr(pos, best_at - pos));
      if (!plain.empty()) tok.EncodeAppend(plain, no_special, &ids);
      plain.clear();
      ids.push_back(best_id);
      pos = best_at + best_len;
    }
  }
  if (!plain.empty()) tok.EncodeAppend(plain, no_special, &ids);
  return ids;
}

std::vector<int32_t> RerankPrompt(const tokenizer::Tokenizer& tok, std::string_view instruction,
                                  std::string_view query, std::string_view document) {
  tokenizer::EncodeOptions special;
  special.parse_special = true;
  std::vector<int32_t> ids = tok.Encode(
      "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
      "provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n",
      special);
  std::string body = "<Instruct>: ";
  body.append(instruction).append("\n<Query>: ").append(query).append("\n<Document>: ").append(document);
  tok.EncodeAppend(body, {}, &ids);
  tok.EncodeAppend("<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n", special, &ids);
  return ids;
}

}  // namespace qwenmux::server
