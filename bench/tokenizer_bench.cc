// Tokenizer throughput on one core: encode MB/s of English prose and of mixed CJK/English text,
// and decode MB/s. Text is generated deterministically from a few paragraphs (shuffled by a fixed
// LCG). Prints one JSON object.
//
// Usage: build/bench/tokenizer_bench [VOCAB.gguf] [MiB per kind, default 4]
//   (default vocab: ../shared/testdata/models/qwen3-vocab.gguf, relative to the project root)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace {

using qwenmux::tokenizer::Tokenizer;

const char* kEnglish[] = {
    "The committee met on Tuesday to discuss the budget for the coming year. After a long debate, "
    "the members agreed that the library would receive more money for new books, while the repairs "
    "to the old bridge would have to wait until spring.",
    "She opened the window and listened to the rain. It had been falling since early morning, soft "
    "and steady, and the garden looked greener than it had in weeks. Somewhere down the street a dog "
    "was barking at nothing in particular.",
    "In 1998, the small company shipped its first product: a modem that fit in a shirt pocket. "
    "Twenty-five years later, it employs 4,300 people and sells networking equipment in more than "
    "sixty countries, though its founders still insist they're \"just getting started\".",
    "Don't worry about the details yet; we'll sort them out tomorrow. What matters now is that "
    "everyone knows where they need to be, and when. If you've got questions, ask them early.",
    "Photosynthesis converts light energy into chemical energy. Plants, algae and some bacteria use "
    "it to turn carbon dioxide and water into glucose and oxygen, which is why forests are often "
    "called the lungs of the planet.",
    "The train was late again. Passengers crowded the platform, checking their phones, sighing, "
    "glancing at the empty tracks as if staring would make the 8:15 appear any faster.",
};

const char* kCjkMix[] = {
    "今天天气很好，我们一起去公园散步吧。公园里有很多人在跑步、打太极拳，还有孩子们在放风筝。",
    "機械学習のモデルを訓練するには、大量のデータと計算資源が必要です。最近では GPU を使うのが一般的です。",
    "The meeting with the Beijing team is at 10:00; 请提前准备好季度报告和预算表。",
    "대한민국의 수도는 서울이며, 인구는 약 천만 명입니다. 서울은 역사와 현대가 공존하는 도시입니다.",
    "这个项目使用 C++20 编写，依赖 Highway 和 utf8proc 两个库。性能测试表明，分词速度超过每秒十兆字节。",
    "東京タワーは1958年に完成しました。高さは333メートルで、当時は世界一高い自立式鉄塔でした。",
    "人工智能（AI）正在改变各行各业：医疗、金融、教育以及制造业都在积极探索新的应用场景。",
    "Please translate: 「お疲れ様でした」 means roughly \"thank you for your hard work\" in English.",
};

template <size_t N>
std::string MakeText(const char* (&paras)[N], size_t target_bytes) {
  std::string text;
  uint64_t state = 0x243F6A8885A308D3ull;
  while (text.size() < target_bytes) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    text.append(paras[(state >> 33) % N]);
    text.append((state >> 20) % 4 == 0 ? "\n\n" : " ");
  }
  return text;
}

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

nlohmann::json BenchEncode(const Tokenizer& tok, const std::string& text, int reps) {
  double best = 1e30;
  size_t n_tokens = 0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = tok.Encode(text);
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, Seconds(t0, t1));
    n_tokens = ids.size();
  }
  return {{"bytes", text.size()},
          {"tokens", n_tokens},
          {"bytes_per_token", static_cast<double>(text.size()) / static_cast<double>(n_tokens)},
          {"seconds", best},
          {"mb_per_s", static_cast<double>(text.size()) / best / 1e6},
          {"tokens_per_s", static_cast<double>(n_tokens) / best}};
}

}  // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "../shared/testdata/models/qwen3-vocab.gguf";
  const size_t mib = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 4;
  const auto t0 = std::chrono::steady_clock::now();
  auto file = qwenmux::gguf::File::Open(path);
  if (!file.ok()) {
    fmt::print(stderr, "error: {}\n", file.status().ToString());
    return 1;
  }
  auto tok = Tokenizer::FromGguf(*file);
  if (!tok.ok()) {
    fmt::print(stderr, "error: {}\n", tok.status().ToString());
    return 1;
  }
  const auto t1 = std::chrono::steady_clock::now();

  const std::string english = MakeText(kEnglish, mib << 20);
  const std::string cjk = MakeText(kCjkMix, mib << 20);
  nlohmann::json out;
  out["bench"] = "tokenizer";
  out["threads"] = 1;
  out["load_seconds"] = Seconds(t0, t1);
  out["encode_english"] = BenchEncode(*tok, english, 3);
  out["encode_cjk_mix"] = BenchEncode(*tok, cjk, 3);

  const auto ids = tok->Encode(english);
  double best = 1e30;
  size_t bytes = 0;
  for (int r = 0; r < 3; ++r) {
    const auto a = std::chrono::steady_clock::now();
    auto text = tok->Decode(ids);
    const auto b = std::chrono::steady_clock::now();
    best = std::min(best, Seconds(a, b));
    bytes = text.ok() ? text->size() : 0;
  }
  out["decode_english"] = {{"bytes", bytes}, {"seconds", best},
                           {"mb_per_s", static_cast<double>(bytes) / best / 1e6}};
  fmt::print("{}\n", out.dump(2));
  return 0;
}
