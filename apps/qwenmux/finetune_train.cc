// qwenmux finetune train: see finetune.cc.
#include "commands.h"

namespace qwenmux::apps {

void RegisterFinetuneTrain(CLI::App* finetune, int* exit_code) {
  (void)finetune;
  (void)exit_code;
}

}  // namespace qwenmux::apps
