// help.h — what every --help shows after the options: a few examples and
// the exit codes that apply to the command (exit_codes.h).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace pyrmap::cli {

// A command line and what it does.
using HelpExample = std::pair<std::string, std::string>;

// "Examples:" with one line per example (the command, then its
// explanation in a column), a blank line, then ExitCodeHelp(commands).
std::string HelpFooter(const std::vector<HelpExample>& examples, unsigned commands);

}  // namespace pyrmap::cli
