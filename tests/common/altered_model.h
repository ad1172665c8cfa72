// Writes a broken copy of a test model with the project's GGUF writer: metadata keys replaced
// (a NaN rope base) and F32 tensors filled with one value (NaN weights), for the tests that a
// model producing NaN is refused at load or fails its requests with a clear error.
#pragma once

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "gguf/gguf.h"

namespace qwenmux::testing {

inline Status WriteAlteredModel(const std::string& src, const std::string& dst,
                                const std::vector<std::pair<std::string, gguf::Value>>& set_keys,
                                const std::set<std::string>& fill_tensors = {}, float fill = 0.0f) {
  QM_ASSIGN_OR_RETURN(gguf::File in, gguf::File::Open(src));
  gguf::Writer w;
  QM_RETURN_IF_ERROR(gguf::CopyLayout(in, w));
  for (const auto& [key, value] : set_keys) w.SetKeyValue(key, value);
  QM_RETURN_IF_ERROR(w.Open(dst));
  for (size_t i = 0; i < in.tensors().size(); ++i) {
    const gguf::TensorInfo& t = in.tensors()[i];
    if (fill_tensors.count(t.name)) {
      if (t.type != gguf::TensorType::kF32)
        return Error(StatusCode::kInvalidArgument, "WriteAlteredModel: {} is not F32", t.name);
      std::vector<float> v(t.n_elements(), fill);  // [n_elements]
      QM_RETURN_IF_ERROR(w.WriteTensorData(
          i, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float))));
    } else {
      QM_RETURN_IF_ERROR(w.WriteTensorData(i, in.TensorData(t)));
    }
  }
  return w.Finish();
}

}  // namespace qwenmux::testing
