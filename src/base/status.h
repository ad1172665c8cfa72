// Status and Result<T>: the error channel at every boundary that sees outside input.
// Library code never throws across these boundaries, never exits, never aborts on bad input.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace qwenmux {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad input from a caller (request, flag, prompt)
  kNotFound,         // missing file, key, tensor, model
  kCorrupt,          // a file that lies about itself
  kUnsupported,      // valid input we do not handle (architecture, tensor type)
  kOutOfRange,       // e.g. prompt longer than the context
  kResourceExhausted,
  kIo,
  kInternal,
  kUnavailable,       // temporarily overloaded (a full queue); retry later
  kCancelled,         // the caller cancelled the request, or the server is shutting down
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Prepends context: "gguf: tensor x" + ": " + message.
  Status WithContext(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename... Args>
Status Error(StatusCode code, fmt::format_string<Args...> f, Args&&... args) {
  return Status(code, fmt::format(f, std::forward<Args>(args)...));
}

// Result<T> holds either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "Result constructed from an ok Status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace qwenmux

// Early-return helpers.
#define QM_CONCAT_INNER(a, b) a##b
#define QM_CONCAT(a, b) QM_CONCAT_INNER(a, b)

#define QM_RETURN_IF_ERROR(expr)                 \
  do {                                           \
    ::qwenmux::Status qm_status_ = (expr);       \
    if (!qm_status_.ok()) return qm_status_;     \
  } while (0)

#define QM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()

#define QM_ASSIGN_OR_RETURN(lhs, expr) \
  QM_ASSIGN_OR_RETURN_IMPL(QM_CONCAT(qm_result_, __LINE__), lhs, expr)
