// Helpers for the RAG tests: the tiny dense test model (used as embedder, reranker and generator),
// small files, a minimal PDF writer, running the qwenmux binary.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "common/run_command.h"
#include "common/testdata.h"
#include "engine/engine.h"
#include "orchestrator/temp_dir.h"

namespace qwenmux::testing {

inline const std::string kTinyDense = ModelPath("tiny-dense.q8_0.gguf");

// Loaded once per test process.
inline engine::Model& TinyModel() {
  static std::unique_ptr<engine::Model> m = [] {
    engine::LoadOptions o;
    o.n_ctx = 1024;
    o.n_seq = 4;
    o.n_threads = 2;
    auto r = engine::Model::Load(kTinyDense, o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }();
  return *m;
}

inline void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

// A one-page PDF (Helvetica) showing `lines`, with an /Info /Title.
inline std::string MinimalPdf(const std::vector<std::string>& lines, const std::string& title) {
  std::string stream = "BT /F1 12 Tf 72 720 Td 14 TL\n";
  for (const auto& l : lines) stream += "(" + l + ") Tj T*\n";
  stream += "ET\n";
  std::vector<std::string> objs = {
      "<< /Type /Catalog /Pages 2 0 R >>",
      "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
      "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
      fmt::format("<< /Length {} >>\nstream\n{}endstream", stream.size(), stream),
      "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
      "<< /Title (" + title + ") >>",
  };
  std::string pdf = "%PDF-1.4\n";
  std::vector<size_t> offsets;
  for (size_t i = 0; i < objs.size(); ++i) {
    offsets.push_back(pdf.size());
    pdf += fmt::format("{} 0 obj\n{}\nendobj\n", i + 1, objs[i]);
  }
  const size_t xref = pdf.size();
  pdf += fmt::format("xref\n0 {}\n0000000000 65535 f \n", objs.size() + 1);
  for (size_t o : offsets) pdf += fmt::format("{:010d} 00000 n \n", o);
  pdf += fmt::format("trailer\n<< /Size {} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{}\n%%EOF\n", objs.size() + 1, xref);
  return pdf;
}

using CliOut = CommandResult;  // RunQwenmux: tests/common/run_command.h

}  // namespace qwenmux::testing
