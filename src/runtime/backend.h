// The seam between the engine and a compute device. A Backend owns one model's placement on a
// device (weights as that device reads them, the KV cache, scratch) and runs a batch of tokens
// to logits and/or final-normed hidden states. The CPU forward (runtime/forward.h) is the first
// implementation; the CUDA forward (runtime/cuda/) mirrors its step names in its own file.
//
// Everything above the backend (the engine's batch step) decides which tokens run; the backend
// only computes. KV lengths are committed by the engine after a successful Run (set_length);
// nothing above the engine touches them.
//
// Thread-safety: a Backend is used by one thread at a time (the engine serialises steps).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace qwenmux::runtime {

struct LoraAdapter;  // runtime/lora.h

// One token of a batch: sequence `seq` (a KV-cache slot) at position `pos`, optionally through a
// LoRA adapter at a user scale (tokens of one batch may use different adapters, or none).
struct BatchEntry {
  int32_t token = 0;
  int32_t pos = 0;
  int32_t seq = 0;
  bool output = false;                 // produce logits / hidden state for this token
  const LoraAdapter* lora = nullptr;   // not owned; outlives the call (engine::Model owns adapters)
  float lora_scale = 1.0f;             // multiplies the adapter's alpha / r
};

// One entry of an output row's top list: a logit and its token.
struct TopLogit {
  float logit = 0;
  int32_t token = 0;
};
// The most a top list holds (Backend::RunTop's k).
inline constexpr int32_t kMaxTopLogits = 64;

// The k largest logits of `row` into out[0..k), largest first, equal logits by smaller token id
// (the order engine::Sampler ranks candidates in). k <= row.size().
void SelectTopLogits(std::span<const float> row, int32_t k, TopLogit* out);

enum class Device { kCpu, kCuda };

std::string_view DeviceName(Device d);

// What a caller asks for: a device, or `auto` (CUDA when a usable GPU is present, else CPU).
enum class DeviceChoice { kCpu, kCuda, kAuto };
Result<DeviceChoice> ParseDeviceChoice(std::string_view s);  // "cpu" | "cuda" | "auto"

// Memory a backend holds, by where it lives (weights mapped from the file count as host bytes
// only when the backend copied them; a memory map is the page cache's).
struct BackendMemory {
  uint64_t host_bytes = 0;    // KV cache, scratch and copies in RAM
  uint64_t device_bytes = 0;  // everything allocated on the GPU
};

class Backend {
 public:
  virtual ~Backend() = default;
  Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  virtual Device device() const = 0;
  // A one-line description for logs and `ps`: "cpu (2 threads)", "cuda:0 NVIDIA H100 80GB HBM3".
  virtual std::string Describe() const = 0;

  // Runs the batch through the model. Entries of one sequence come in increasing position order,
  // and positions [0, pos) of that sequence are in the cache already or earlier in this batch.
  // For every entry with output=true, in order: a row of n_vocab logits in out_logits (if not
  // null) and a row of n_embd final-normed hidden state in out_hidden (if not null). Both are
  // host memory. KV entries of the batch's positions are written; lengths are not changed.
  virtual Status Run(std::span<const BatchEntry> batch, float* out_logits, float* out_hidden) = 0;

  // As Run with out_logits, but each output row comes back as its k (1..kMaxTopLogits) largest
  // logits only, in SelectTopLogits' order, in out_top [n_out][k]: what a sampler with top-k <= k
  // and no logit processor needs, without the whole row. This default runs Run and selects on
  // the host; a GPU backend selects on the device and copies k entries a row instead of n_vocab.
  virtual Status RunTop(std::span<const BatchEntry> batch, int32_t k, TopLogit* out_top);
  // True when RunTop is cheaper than Run with logits (the selection runs where the logits are).
  virtual bool selects_top_on_device() const { return false; }

  virtual int32_t n_ctx() const = 0;
  virtual int32_t n_seq() const = 0;
  // Positions [0, length) of `seq` hold valid KV entries (committed by the engine).
  virtual int32_t length(int32_t seq) const = 0;
  virtual void set_length(int32_t seq, int32_t n) = 0;

  virtual BackendMemory memory() const = 0;

 protected:
  // The width of a logits row, for the default RunTop.
  virtual int32_t n_vocab() const = 0;
};

}  // namespace qwenmux::runtime
