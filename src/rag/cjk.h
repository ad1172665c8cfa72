// CJK text for the full-text index. SQLite's unicode61 tokenizer splits on spaces and
// punctuation, and Chinese and Japanese put no spaces between words (Korean attaches particles to
// words), so a whole clause became one token and a word inside it never matched. Before indexing
// and before searching, each run of CJK characters (Han, kana, Hangul) is rewritten as its
// overlapping character bigrams ("乌龙茶" -> " 乌龙 龙茶 "); a lone CJK character stays a
// one-character token. A word of the query then matches through its bigrams, and BM25 ranks the
// chunk with more of them higher. Latin text is left as it is (the porter stemmer still applies).
//
// Why bigrams and not SQLite's `trigram` tokenizer: most Chinese words are two characters (北京,
// 上海, 绿茶), which a trigram index cannot match, and `trigram` would also drop English stemming.
// tests/rag/cjk_bm25_test.cc measures recall@1 on mixed Chinese/Japanese/Korean/English chunks.
#pragma once

#include <string>
#include <string_view>

namespace qwenmux::rag {

// Whether code point `cp` is a CJK ideograph, kana or Hangul character.
bool IsCjk(char32_t cp);

// `text` with every CJK run replaced by its space-separated overlapping bigrams (see above);
// everything else byte for byte. Invalid UTF-8 bytes are copied as they are.
std::string CjkBigrams(std::string_view text);

}  // namespace qwenmux::rag
