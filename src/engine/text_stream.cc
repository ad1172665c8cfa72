#include "engine/text_stream.h"

#include <algorithm>

namespace qwenmux::engine {

Result<bool> TextStream::Push(int32_t token, std::string* out) {
  out->clear();
  piece_.clear();
  QM_RETURN_IF_ERROR(decoder_.Push(token, &piece_));
  pending_ += piece_;
  // Stop strings: cut at the first match; hold back a tail that could still become one.
  size_t cut = std::string::npos;
  for (const std::string& s : stop_) {
    if (s.empty()) continue;
    const size_t at = pending_.find(s);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut != std::string::npos) {
    out->assign(pending_, 0, cut);
    pending_.clear();
    return true;
  }
  size_t hold = 0;
  for (const std::string& s : stop_) {
    for (size_t k = std::min(s.size() - 1, pending_.size()); k > hold; --k) {
      if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  out->assign(pending_, 0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return false;
}

void TextStream::Finish(std::string* out) {
  out->clear();
  std::string tail;
  decoder_.Finish(&tail);
  pending_ += tail;
  out->swap(pending_);
  pending_.clear();
}

}  // namespace qwenmux::engine
