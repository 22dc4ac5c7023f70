#include "exit_codes.h"

#include <signal.h>

#include <fmt/format.h>

namespace pyrmap::cli {

namespace {

std::string CodeText(const ExitCodeRow& r) {
  return r.code == kExitSignalBase ? "128+N" : std::to_string(r.code);
}

// The meaning without markdown's code quotes, for the terminal.
std::string Plain(const char* meaning) {
  std::string s;
  for (const char* p = meaning; *p; ++p)
    if (*p != '`') s += *p;
  return s;
}

}  // namespace

int ExitCodeFor(ErrorKind kind, int signal) {
  for (const ExitCodeRow& r : kExitCodeTable) {
    if (!(r.kinds & KindBit(kind))) continue;
    if (r.code == kExitSignalBase) return kExitSignalBase + (signal ? signal : SIGINT);
    return r.code;
  }
  return kExitInternal;  // unreachable: EveryKindHasACode()
}

std::string ExitCodeTable(const std::string& format, unsigned commands) {
  std::string out;
  if (format == "markdown") {
    out = "| code | meaning |\n|---|---|\n";
    for (const ExitCodeRow& r : kExitCodeTable)
      if (r.applies & commands) out += fmt::format("| {} | {} |\n", CodeText(r), r.meaning);
    return out;
  }
  if (format == "text") {
    for (const ExitCodeRow& r : kExitCodeTable)
      if (r.applies & commands) out += fmt::format("  {:>5}  {}\n", CodeText(r), Plain(r.meaning));
    return out;
  }
  throw Error(ErrorKind::kUsage,
              fmt::format("--exit-code-table '{}': choose markdown or text", format));
}

std::string ExitCodeHelp(unsigned commands) {
  std::string table = ExitCodeTable("text", commands);
  table.pop_back();  // CLI11 ends the footer itself
  return "Exit codes:\n" + table;
}

}  // namespace pyrmap::cli
