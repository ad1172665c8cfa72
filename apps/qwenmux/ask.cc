// qwenmux ask "question" --collection C: the RAG pipeline (placeholder until rag::Answer lands).
#include "commands.h"

namespace qwenmux::apps {

void RegisterAsk(CLI::App& app, int* exit_code) {
  (void)app;
  (void)exit_code;
}

}  // namespace qwenmux::apps
