// qwenmux quantize IN.gguf OUT.gguf TYPE [--threads N] [--allow-requantize]: re-encodes a model's tensors with the
// llama.cpp type mix for TYPE (q8_0, q4_0, q4_k_m, q5_k_m, q6_k, f16, bf16).
#include <unistd.h>

#include <cstdio>
#include <string>

#include "commands.h"
#include "model_ref_flag.h"
#include "gguf/gguf.h"
#include "quant/quantize_model.h"

namespace qwenmux::apps {

void RegisterQuantize(CLI::App& app, int* exit_code) {
  struct Args {
    std::string in, models_dir, out, type;
    size_t threads = 0;
    bool allow_requantize = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("quantize", "Quantize a GGUF model (llama.cpp type mixes)");
  AddModelRef(cmd, "input", &args->in, &args->models_dir, "Input model")->required();
  cmd->add_option("output", args->out, "Output GGUF file")->required();
  cmd->add_option("type", args->type, "q8_0, q4_0, q4_k_m, q5_k_m, q6_k, f16 or bf16")->required();
  cmd->add_option("--threads", args->threads, "Worker threads (0: all cores)");
  cmd->add_flag("--allow-requantize", args->allow_requantize,
                "Re-encode tensors that are already quantized (loses precision twice)");
  cmd->callback([args, exit_code] {
    if (Status r = ResolveModelRefs({&args->in}, args->models_dir); !r.ok()) {
      std::fprintf(stderr, "qwenmux quantize: %s\n", r.ToString().c_str());
      *exit_code = 2;
      return;
    }
    auto ftype = quant::ParseFileType(args->type);
    if (!ftype.ok()) {
      std::fprintf(stderr, "qwenmux quantize: %s\n", ftype.status().ToString().c_str());
      *exit_code = 2;
      return;
    }
    quant::QuantizeModelOptions opts;
    opts.ftype = *ftype;
    opts.threads = args->threads;
    opts.allow_requantize = args->allow_requantize;
    const bool tty = isatty(fileno(stderr)) != 0;
    opts.progress = [tty](size_t i, size_t n, const quant::TensorPlan& p) {
      if (!tty) return;
      std::fprintf(stderr, "\r[%zu/%zu] %-40s %s -> %s\033[K", i + 1, n, p.name.c_str(),
                   gguf::TensorTypeName(p.from), gguf::TensorTypeName(p.to));
      if (i + 1 == n) std::fputc('\n', stderr);
    };
    Status s = quant::QuantizeModel(args->in, args->out, opts);
    if (!s.ok()) {
      if (tty) std::fputc('\n', stderr);
      std::fprintf(stderr, "qwenmux quantize: %s\n", s.ToString().c_str());
      *exit_code = 1;
      return;
    }
    std::fprintf(stderr, "qwenmux quantize: wrote %s (%s)\n", args->out.c_str(),
                 quant::FileTypeName(*ftype));
  });
}

}  // namespace qwenmux::apps
