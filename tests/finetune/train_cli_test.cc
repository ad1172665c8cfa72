// `qwenmux finetune train` end to end on the tiny model: it learns a small mapping task (exact
// match from chance to >= 90 %) and the adapter it writes loads through `run --lora` and
// generates the learned answer; a run stopped after k steps and resumed repeats the
// uninterrupted run's loss curve and adapter; bad data lines are reported by line and skipped.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/run_command.h"
#include "lora/lora_util.h"

namespace qwenmux::testing {
namespace {

const char* kKeys[] = {"apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "rocket"};
const char* kVals[] = {"red", "blue", "green", "yellow", "black", "white", "orange", "purple"};

std::string MappingData(const LoraTempDir& tmp) {
  const std::string path = tmp / "map.jsonl";
  std::ofstream f(path);
  for (int i = 0; i < 8; ++i) {
    f << nlohmann::json({{"prompt", std::string("Color code for ") + kKeys[i] + "?"}, {"completion", kVals[i]}}).dump()
      << "\n";
  }
  return path;
}

std::vector<double> Losses(const std::string& log) {
  std::ifstream in(log);
  std::vector<double> out;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(j["loss"].get<double>());
  }
  return out;
}

// step -> loss of a JSONL log; a later record of a step replaces an earlier one, and a torn last
// line (a killed writer) is ignored.
std::map<int64_t, double> LossByStep(const std::string& log) {
  std::ifstream in(log);
  std::map<int64_t, double> out;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("loss")) continue;
    out[j["step"].get<int64_t>()] = j["loss"].get<double>();
  }
  return out;
}

std::string Bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(FinetuneTrainCli, LearnsAMappingTaskAndTheAdapterServes) {
  LoraTempDir tmp;
  const std::string data = MappingData(tmp);
  auto r = RunQwenmux("finetune train " + kLoraBase + " " + data + " -o " + (tmp / "map.gguf") +
                      " --peft " + (tmp / "peft") + " --steps 20 --batch 8 --lr 5e-3 --valid 0 --exact-match --json -t 2");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_LE(j["exact_match_before"].get<double>(), 0.25);
  EXPECT_GE(j["exact_match"].get<double>(), 0.9);
  EXPECT_LT(j["final_loss"].get<double>(), j["losses"][0].get<double>() / 10);
  // The PEFT copy converts back to the same GGUF bytes.
  auto conv = RunQwenmux("lora convert " + (tmp / "peft") + " " + (tmp / "conv.gguf"), true);
  ASSERT_EQ(conv.code, 0) << conv.out;
  EXPECT_EQ(Bytes(tmp / "conv.gguf"), Bytes(tmp / "map.gguf"));
  // eval: the adapter above the base on the same examples.
  auto e = RunQwenmux("finetune eval " + kLoraBase + " " + data + " --lora " + (tmp / "map.gguf") +
                      " --split train --valid 0 --json -t 2");
  ASSERT_EQ(e.code, 0) << e.out;
  const auto ej = nlohmann::json::parse(e.out);
  EXPECT_EQ(ej["examples"], 8);
  EXPECT_TRUE(ej["adapter_better"].get<bool>());
  EXPECT_LT(ej["adapter"]["ppl"].get<double>(), ej["base"]["ppl"].get<double>());
  EXPECT_DOUBLE_EQ(ej["adapter"]["exact_match"].get<double>(), j["exact_match"].get<double>());
  EXPECT_DOUBLE_EQ(ej["base"]["exact_match"].get<double>(), j["exact_match_before"].get<double>());
  // The engine loads the adapter and greedy decoding gives the learned answers.
  int right = 0;
  for (int i = 0; i < 8; ++i) {
    auto g = RunQwenmux("run " + kLoraBase + " --lora " + (tmp / "map.gguf") + " -p \"Color code for " + kKeys[i] +
                        "?\" --chat --no-think -n 4 --temp 0 -t 2 --device cpu");
    ASSERT_EQ(g.code, 0) << g.out;
    right += g.out.rfind(kVals[i], 0) == 0;
  }
  EXPECT_GE(right, 7);
}

TEST(FinetuneTrainCli, ResumeRepeatsTheUninterruptedRun) {
  LoraTempDir tmp;
  std::string text;
  for (int i = 0; i < 12; ++i) {
    text += nlohmann::json({{"instruction", "Repeat the number"}, {"input", std::to_string(i * 7)},
                            {"output", std::to_string(i * 7)}}).dump() + "\n";
  }
  std::ofstream(tmp / "d.jsonl") << text;
  const std::string common = "finetune train " + kLoraBase + " " + (tmp / "d.jsonl") +
                             " --steps 6 --batch 2 --accum 2 --lr 2e-3 --warmup 2 --schedule cosine --clip 1"
                             " --dropout 0.1 --rank 4 --targets q,v,down --valid 0.2 -t 2";
  auto full = RunQwenmux(common + " -o " + (tmp / "full.gguf") + " --log-json " + (tmp / "full.log"));
  ASSERT_EQ(full.code, 0) << full.out;
  auto first = RunQwenmux(common + " -o " + (tmp / "part.gguf") + " --log-json " + (tmp / "part.log") +
                          " --stop-after 3", true);
  ASSERT_EQ(first.code, 0) << first.out;
  EXPECT_FALSE(std::ifstream(tmp / "part.gguf").good());  // stopped: no adapter yet, a checkpoint
  auto rest = RunQwenmux(common + " -o " + (tmp / "part.gguf") + " --log-json " + (tmp / "part.log") + " --resume",
                         true);
  ASSERT_EQ(rest.code, 0) << rest.out;
  EXPECT_NE(rest.out.find("resuming from"), std::string::npos) << rest.out;
  const auto a = Losses(tmp / "full.log"), b = Losses(tmp / "part.log");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 1e-6 * std::abs(a[i])) << "step " << i + 1;
  EXPECT_EQ(Bytes(tmp / "full.gguf"), Bytes(tmp / "part.gguf"));  // same threads: bitwise
}

// kill -9 in the middle of training, then --resume: the curve and the adapter of an
// uninterrupted run (the checkpoint is renamed into place, so the kill never leaves half of one).
TEST(FinetuneTrainCli, KillNineThenResume) {
  LoraTempDir tmp;
  std::string text;
  for (int i = 0; i < 10; ++i) {
    text += nlohmann::json({{"prompt", "Say " + std::to_string(i)}, {"completion", std::to_string(i * 3)}}).dump() + "\n";
  }
  std::ofstream(tmp / "d.jsonl") << text;
  const std::string common = "finetune train " + kLoraBase + " " + (tmp / "d.jsonl") +
                             " --steps 24 --batch 3 --lr 3e-3 --rank 4 --valid 0 --checkpoint-every 1 -t 2";
  auto full = RunQwenmux(common + " -o " + (tmp / "full.gguf") + " --log-json " + (tmp / "full.log"));
  ASSERT_EQ(full.code, 0) << full.out;
  const std::string ckpt = tmp / "k.gguf.ckpt";
  RunCommand("(" + QwenmuxBinary() + " " + common + " -o " + (tmp / "k.gguf") + " --log-json " + (tmp / "k.log") +
             " >/dev/null 2>&1 & echo $! > " + (tmp / "pid") + ")");
  pid_t pid = 0;
  std::ifstream(tmp / "pid") >> pid;
  ASSERT_GT(pid, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!std::filesystem::exists(ckpt) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(std::filesystem::exists(ckpt));
  ::kill(pid, SIGKILL);
  while (::kill(pid, 0) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_FALSE(std::ifstream(tmp / "k.gguf").good()) << "finished before the kill";
  auto rest = RunQwenmux(common + " -o " + (tmp / "k.gguf") + " --log-json " + (tmp / "k.log") + " --resume", true);
  ASSERT_EQ(rest.code, 0) << rest.out;
  EXPECT_NE(rest.out.find("resuming from"), std::string::npos) << rest.out;
  const auto a = LossByStep(tmp / "full.log"), b = LossByStep(tmp / "k.log");
  ASSERT_EQ(a.size(), 24u);
  ASSERT_EQ(b.size(), 24u);
  for (const auto& [step, loss] : a) EXPECT_NEAR(b.at(step), loss, 1e-6 * std::abs(loss)) << "step " << step;
  EXPECT_EQ(Bytes(tmp / "full.gguf"), Bytes(tmp / "k.gguf"));
}

// Held-out answers this model cannot guess: the validation loss turns up as training memorises the
// training split, and --early-stop ends the run there, with the adapter written.
TEST(FinetuneTrainCli, EarlyStopWhenValidationStopsImproving) {
  LoraTempDir tmp;
  std::string text;
  for (int i = 0; i < 12; ++i) {
    text += nlohmann::json({{"prompt", "Number " + std::to_string(i) + "?"}, {"completion", std::to_string(i * 11)}}).dump() + "\n";
  }
  std::ofstream(tmp / "d.jsonl") << text;
  auto r = RunQwenmux("finetune train " + kLoraBase + " " + (tmp / "d.jsonl") + " -o " + (tmp / "o.gguf") +
                      " --steps 40 --batch 4 --lr 5e-2 --eval-every 2 --early-stop 2 --valid 0.25 --json -t 2");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["early_stopped"].get<bool>());
  EXPECT_LT(j["steps_done"].get<int64_t>(), 40);
  EXPECT_TRUE(std::ifstream(tmp / "o.gguf").good());
}

TEST(FinetuneTrainCli, ProgressValidationAndBadLines) {
  LoraTempDir tmp;
  std::ofstream(tmp / "d.jsonl") << "{\"prompt\":\"a\",\"completion\":\"b\"}\n"
                                    "not json\n"
                                    "{\"messages\":[{\"role\":\"user\",\"content\":\"only a question\"}]}\n"
                                    "{\"prompt\":\"c\",\"completion\":\"d\"}\n"
                                    "{\"prompt\":\"e\",\"completion\":\"f\"}\n";
  auto r = RunQwenmux("finetune train " + kLoraBase + " " + (tmp / "d.jsonl") + " -o " + (tmp / "o.gguf") +
                      " --steps 4 --batch 1 --eval-every 2 --valid 0.34 -t 2", true);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("line 2: invalid JSON"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("line 3: no assistant turn"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("step 4/4  loss"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tok/s  ETA"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("eval  step 2  valid_loss"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("eval  step 4  valid_loss"), std::string::npos) << r.out;
  // Bad options are clear errors.
  auto bad = RunQwenmux("finetune train " + kLoraBase + " " + (tmp / "d.jsonl") + " -o " + (tmp / "x.gguf") +
                        " --targets q,bogus", true);
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.out.find("unknown LoRA target \"bogus\""), std::string::npos) << bad.out;
  bad = RunQwenmux("finetune train " + ModelPath("tiny-moe.q4_k_m.gguf") + " " + (tmp / "d.jsonl") + " -o " +
                   (tmp / "x.gguf") + " --targets q,gate", true);  // MoE trains, but not on its experts
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.out.find("Mixture-of-Experts"), std::string::npos) << bad.out;
  bad = RunQwenmux("finetune train " + kLoraBase + " " + (tmp / "d.jsonl") + " -o " + (tmp / "x.gguf") +
                   " --schedule exponential", true);
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.out.find("unknown schedule"), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace qwenmux::testing
