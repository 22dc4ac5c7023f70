#include "error.h"

#include <string.h>

#include <fmt/format.h>

namespace pyrmap {

const char* ErrorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kUsage: return "usage";
    case ErrorKind::kSystem: return "system";
    case ErrorKind::kProtocol: return "protocol";
    case ErrorKind::kScript: return "script";
    case ErrorKind::kTimeout: return "timeout";
    case ErrorKind::kInterrupt: return "interrupt";
    case ErrorKind::kNotFound: return "not_found";
    case ErrorKind::kInterpreter: return "interpreter";
    case ErrorKind::kNotRegistered: return "not_registered";
  }
  return "unknown";
}

Error::Error(ErrorKind kind, const std::string& message)
    : std::runtime_error(message), kind_(kind) {}

std::string ErrnoText(int err) {
  char buf[256];
  // GNU strerror_r returns the message pointer (maybe not buf).
  const char* text = strerror_r(err, buf, sizeof buf);
  return text ? std::string(text) : fmt::format("errno {}", err);
}

Error SystemError(const std::string& what, const std::string& object,
                  const std::string& call, int err) {
  Error e(ErrorKind::kSystem, fmt::format("{} '{}': {} failed ({}, {})", what,
                                          object, call, err, ErrnoText(err)));
  e.with_errno(err);
  return e;
}

}  // namespace pyrmap
