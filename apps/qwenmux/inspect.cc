// qwenmux inspect FILE.gguf [--json] — filled in with the GGUF reader.
#include "commands.h"

namespace qwenmux::apps {
void RegisterInspect(CLI::App& app, int* exit_code) {
  (void)app;
  (void)exit_code;
}
}  // namespace qwenmux::apps
