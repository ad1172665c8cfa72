// qwenmux synth --shape NAME --type TYPE --vocab VOCAB.gguf -o OUT.gguf [--seed N] [--threads N]:
// writes a random-weight model with the exact shapes and metadata of a real Qwen3 model.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "commands.h"
#include "gguf/gguf.h"
#include "model/shapes.h"
#include "quant/synth_model.h"

namespace qwenmux::apps {

void RegisterSynth(CLI::App& app, int* exit_code) {
  struct Args {
    std::string shape, type, vocab, out;
    uint64_t seed = 0;
    size_t threads = 0;
    uint32_t layers = 0;
    bool quantize_floats = false;
  };
  auto args = std::make_shared<Args>();
  std::string shapes;
  for (const model::ModelShape& s : model::AllShapes()) shapes += std::string(shapes.empty() ? "" : ", ") + s.name;
  CLI::App* cmd = app.add_subcommand(
      "synth", "Write a random-weight model with the shapes and metadata of a real Qwen3 model");
  cmd->add_option("--shape", args->shape, "Model shape: " + shapes)->required();
  cmd->add_option("--type", args->type, "q8_0, q4_0, q4_k_m, q5_k_m, q6_k, f16 or bf16")->required();
  cmd->add_option("--vocab", args->vocab, "GGUF whose tokenizer.* keys are copied (qwen3-vocab.gguf)")->required();
  cmd->add_option("-o,--output", args->out, "Output GGUF file")->required();
  cmd->add_option("--seed", args->seed, "Random seed (same seed, same file)");
  cmd->add_option("--threads", args->threads, "Worker threads (0: all cores)");
  // For tests: the real per-layer shapes with fewer layers.
  cmd->add_option("--layers", args->layers, "Number of layers (0: the model's own)")->group("");
  // For comparisons: the slower way (quantize random floats instead of writing random blocks).
  cmd->add_flag("--quantize-floats", args->quantize_floats, "Quantize random floats (slow; for comparison)")->group("");
  cmd->callback([args, exit_code] {
    auto fail = [&](const Status& s, int code) {
      std::fprintf(stderr, "qwenmux synth: %s\n", s.ToString().c_str());
      *exit_code = code;
    };
    auto shape = model::FindShape(args->shape);
    if (!shape.ok()) return fail(shape.status(), 2);
    auto ftype = quant::ParseFileType(args->type);
    if (!ftype.ok()) return fail(ftype.status(), 2);
    quant::SynthOptions opts;
    opts.ftype = *ftype;
    opts.vocab_path = args->vocab;
    opts.seed = args->seed;
    opts.threads = args->threads;
    opts.n_layer = args->layers;
    opts.quantize_floats = args->quantize_floats;
    const bool tty = isatty(fileno(stderr)) != 0;
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    auto last = start;
    opts.progress = [tty, &last](const quant::SynthProgress& p) {
      if (!tty) return;
      const auto now = Clock::now();
      const bool done = p.elements_done == p.elements_total;
      if (!done && now - last < std::chrono::milliseconds(100)) return;
      last = now;
      std::fprintf(stderr, "\r[%zu/%zu] %5.1f%% %-36s %s\033[K", p.tensor + 1, p.n_tensors,
                   100.0 * static_cast<double>(p.elements_done) / static_cast<double>(p.elements_total),
                   p.plan->name.c_str(), gguf::TensorTypeName(p.plan->to));
      if (done) std::fputc('\n', stderr);
    };
    Status s = quant::SynthesizeModel(**shape, args->out, opts);
    if (!s.ok()) {
      if (tty) std::fputc('\n', stderr);
      return fail(s, 1);
    }
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    std::fprintf(stderr, "qwenmux synth: wrote %s (%s, %s, seed %llu) in %.1f s\n", args->out.c_str(),
                 (*shape)->name, quant::FileTypeName(*ftype), static_cast<unsigned long long>(args->seed), secs);
  });
}

}  // namespace qwenmux::apps
