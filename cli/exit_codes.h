// exit_codes.h — the exit codes of the pyrmap command.
//
// One table (kExitCodeTable) is the source of the codes that main() returns
// (ExitCodeFor), of the table at the end of every --help, and of the table
// in README.md (`pyrmap --exit-code-table=markdown` prints it; an e2e test
// checks that README.md holds exactly that).
#pragma once

#include <string>

#include "error.h"

namespace pyrmap::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitInternal = 1,      // a bug: an exception that is not a pyrmap::Error
  kExitUsage = 2,         // bad arguments, unreadable or invalid input, missing script
  kExitScript = 3,        // the script failed: exception, exit status, signal, no result
  kExitTimeout = 4,       // the script exceeded --timeout and was killed
  kExitProtocol = 5,      // a header or result that breaks the exchange protocol
  kExitSystem = 6,        // a system failure: /dev/shm full, segment or file I/O
  kExitInterpreter = 7,   // the Python interpreter cannot be started or lacks numpy
  kExitSignalBase = 128,  // + N: stopped by signal N
};

constexpr unsigned KindBit(ErrorKind k) { return 1u << static_cast<unsigned>(k); }

// Which subcommands a code applies to: those that run scripts (run,
// shared, pipeline), those that look after segments (ls, gc), or both.
enum CommandSet : unsigned {
  kRunCommands = 1u,
  kSegmentCommands = 2u,
  kAllCommands = kRunCommands | kSegmentCommands,
};

// One row: a code, the error kinds that produce it (a set of KindBit), the
// subcommands it applies to, and what it means.
struct ExitCodeRow {
  ExitCode code;
  unsigned kinds;
  unsigned applies;  // a CommandSet
  const char* meaning;
};

inline constexpr ExitCodeRow kExitCodeTable[] = {
    {kExitOk, 0, kAllCommands, "success"},
    {kExitInternal, 0, kAllCommands, "internal error (a bug in pyrmap: please report it)"},
    {kExitUsage,
     KindBit(ErrorKind::kUsage) | KindBit(ErrorKind::kNotFound) | KindBit(ErrorKind::kNotRegistered),
     kAllCommands, "usage error: bad arguments, invalid input, missing script"},
    {kExitScript, KindBit(ErrorKind::kScript), kRunCommands,
     "the script failed: exception (its traceback on stderr), exit status, signal, no result"},
    {kExitTimeout, KindBit(ErrorKind::kTimeout), kRunCommands,
     "the script exceeded `--timeout` and was killed"},
    {kExitProtocol, KindBit(ErrorKind::kProtocol), kRunCommands,
     "protocol error: a corrupt header or result"},
    {kExitSystem, KindBit(ErrorKind::kSystem), kAllCommands,
     "system error: `/dev/shm` full, segment or file I/O"},
    {kExitInterpreter, KindBit(ErrorKind::kInterpreter), kRunCommands,
     "the Python interpreter cannot be started or cannot import numpy"},
    {kExitSignalBase, KindBit(ErrorKind::kInterrupt), kRunCommands,
     "interrupted by signal N: SIGINT 130, SIGTERM 143, SIGHUP 129"},
};

// Every error kind has its row (checked when this compiles).
constexpr bool EveryKindHasACode() {
  for (unsigned k = 0; k <= static_cast<unsigned>(ErrorKind::kNotRegistered); ++k) {
    int rows = 0;
    for (const ExitCodeRow& r : kExitCodeTable) rows += (r.kinds >> k) & 1u;
    if (rows != 1) return false;
  }
  return true;
}
static_assert(EveryKindHasACode(), "every ErrorKind needs exactly one row in kExitCodeTable");

// The exit code for an error of `kind`; `signal` is the signal that stopped
// us (for kInterrupt; 0: none caught, counted as SIGINT).
int ExitCodeFor(ErrorKind kind, int signal);

// The table as printed at the end of a --help: "Exit codes:" and one line
// per row that applies to `commands` ("    0  success", "128+N
// interrupted by signal N: ..."). The top-level help shows every row.
std::string ExitCodeHelp(unsigned commands = kAllCommands);

// The rows that apply to `commands` in `format`: "markdown" (README.md's)
// or "text" (--help's). Throws Error(kUsage) for another format.
std::string ExitCodeTable(const std::string& format, unsigned commands = kAllCommands);

}  // namespace pyrmap::cli
