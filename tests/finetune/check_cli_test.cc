// `qwenmux finetune check` on the Q8_0 tiny model against the PyTorch reference
// (training_q8_0_base): step-0 loss, every LoRA gradient and the 10-step AdamW loss curve within
// the bars; and clear errors for a bad section or a gradient file of another shape.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/run_command.h"
#include "lora/lora_util.h"

namespace qwenmux::testing {
namespace {

std::string CheckArgs(const std::string& section) {
  return "finetune check " + kLoraBase + " " + RefPath("tiny-dense.lora.json") + " --section " + section +
         " --lora " + kLoraGguf + " -t 2";
}

TEST(FinetuneCheckCli, Q8BaseMeetsTheBars) {
  auto r = RunQwenmux(CheckArgs("training_q8_0_base") + " --grads " + RefPath("tiny-dense.lora-grads-q8_0.gguf") +
                      " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_LE(j["loss0_rel_err"].get<double>(), 1e-4);
  EXPECT_LE(j["grad_max_rel_err"].get<double>(), 1e-3) << j["grad_worst"];
  EXPECT_LE(j["curve_max_rel_err"].get<double>(), 1e-3);
  EXPECT_EQ(j["grad_rel_err"].size(), 28u);
  EXPECT_EQ(j["losses"].size(), 10u);
  EXPECT_TRUE(j["pass"].get<bool>());
}

// The F16-base section on the Q8_0 file: the base differs (1.5–2.8 % in the gradients), so the
// gradient bar is missed and the command says so by its exit code.
TEST(FinetuneCheckCli, WrongBaseMissesTheGradientBar) {
  auto r = RunQwenmux(CheckArgs("training") + " --grads " + RefPath("tiny-dense.lora-grads.gguf") + " --json");
  ASSERT_EQ(r.code, 3) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["grad_max_rel_err"].get<double>(), 1e-3);
  EXPECT_FALSE(j["pass"].get<bool>());
}

TEST(FinetuneCheckCli, BadInputIsAClearError) {
  auto r = RunQwenmux(CheckArgs("nonexistent"), true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("no section \"nonexistent\""), std::string::npos) << r.out;
  r = RunQwenmux(CheckArgs("training_q8_0_base") + " --grads " + kLoraBase, true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("not a LoRA adapter file"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace qwenmux::testing
