#include "help.h"

#include <algorithm>

#include <fmt/format.h>

#include "exit_codes.h"

namespace pyrmap::cli {

std::string HelpFooter(const std::vector<HelpExample>& examples, unsigned commands) {
  size_t width = 0;
  for (const auto& [line, what] : examples) width = std::max(width, line.size());
  std::string out = "Examples:\n";
  for (const auto& [line, what] : examples) out += fmt::format("  {:<{}}  # {}\n", line, width, what);
  return out + "\n" + ExitCodeHelp(commands);
}

}  // namespace pyrmap::cli
