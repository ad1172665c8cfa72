// libFuzzer target for the safetensors reader (PEFT adapters): any byte string must parse or fail
// with a Status.
#include <cstddef>
#include <cstdint>

#include "gguf/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = qwenmux::gguf::SafetensorsFile::Parse({data, size}, "fuzz");
  if (f.ok()) {
    // Touch everything the parser claims is valid.
    volatile float sum = 0;
    for (const auto& t : f->tensors()) {
      if (t.n_elements() > (1u << 20)) continue;
      for (float x : f->ToF32(t)) sum = sum + x;
    }
  }
  return 0;
}
