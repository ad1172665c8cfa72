// libFuzzer target for the GGUF reader: any byte string must parse or fail with a Status.
#include <cstddef>
#include <cstdint>

#include "gguf/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = qwenmux::gguf::File::Parse({data, size}, "fuzz");
  if (f.ok()) {
    // Touch everything the parser claims is valid.
    volatile uint64_t sum = 0;
    for (const auto& t : f->tensors()) {
      auto bytes = f->TensorData(t);
      if (!bytes.empty()) sum = sum + bytes.front() + bytes.back();
    }
    (void)f->GetUInt("general.alignment");
    (void)f->Get<std::string>("general.architecture");
    (void)f->GetArray("tokenizer.ggml.tokens", qwenmux::gguf::ValueType::kString);
  }
  return 0;
}
