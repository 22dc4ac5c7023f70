// error.h — the one error type of the pyrmap core.
//
// Every failure in src/ is thrown as pyrmap::Error. It carries what failed
// (`kind`), the object it failed on (a segment name, a script path, a file),
// the system call and errno when there is one, and a finished, user-facing
// message. Callers branch on kind(), never on what().
//
// Conversion points (exactly one per boundary): the CLI's main() maps kind()
// to an exit code, the R package's Rcpp exports map it to an R condition
// class, and the Python package raises its own exception types.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <vector>

namespace pyrmap {

enum class ErrorKind {
  kUsage,      // bad arguments or input data given by the user
  kSystem,     // a system call failed (segment, file, process)
  kProtocol,   // a header or payload violates the exchange protocol
  kScript,     // the Python script failed (exception, exit status, signal)
  kTimeout,    // the script ran longer than its timeout
  kInterrupt,  // the caller asked to stop (SIGINT/SIGTERM, R interrupt)
  kNotFound,   // a script (or input file) does not exist or cannot be read
  kInterpreter,  // the Python interpreter cannot be started or cannot import numpy
  kNotRegistered,  // no variable of that name is registered in the namespace
  // (kNotRegistered is the last kind: cli/exit_codes.h checks every kind up to it.)
};

// A short, stable name for a kind ("usage", "system", ...), used in messages
// and by the R package as the suffix of the condition class.
const char* ErrorKindName(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message);

  ErrorKind kind() const { return kind_; }
  // Exit status and signal of a failed script (kScript, kTimeout), or -1.
  int exit_status() const { return exit_status_; }
  int signal() const { return signal_; }
  int sys_errno() const { return errno_; }
  // The Python exception type and traceback text of a kScript error, when the
  // script recorded one in the header; empty otherwise.
  const std::string& python_type() const { return python_type_; }
  const std::string& python_traceback() const { return python_traceback_; }
  // The script a kScript/kTimeout/kInterpreter error belongs to.
  const std::string& script() const { return script_; }

  Error& with_status(int exit_status, int signal) {
    exit_status_ = exit_status;
    signal_ = signal;
    return *this;
  }
  Error& with_python(std::string type, std::string traceback) {
    python_type_ = std::move(type);
    python_traceback_ = std::move(traceback);
    return *this;
  }
  Error& with_script(std::string script) {
    script_ = std::move(script);
    return *this;
  }
  Error& with_errno(int err) {
    errno_ = err;
    return *this;
  }
  // The Python warnings the failed script gave before it failed.
  const std::vector<std::string>& warnings() const { return warnings_; }
  Error& with_warnings(std::vector<std::string> warnings) {
    warnings_ = std::move(warnings);
    return *this;
  }

 private:
  ErrorKind kind_;
  int exit_status_ = -1;
  int signal_ = -1;
  int errno_ = 0;
  std::string python_type_;
  std::string python_traceback_;
  std::string script_;
  std::vector<std::string> warnings_;
};

// "<what> '<object>': <call> failed (<errno>, <strerror>)", kind kSystem.
// Example: SystemError("create segment", "pyrmap-0-12-ab-data",
// "posix_fallocate", 28).
Error SystemError(const std::string& what, const std::string& object,
                  const std::string& call, int err);

// strerror_r wrapper that always returns the text ("No space left on device").
std::string ErrnoText(int err);

}  // namespace pyrmap
