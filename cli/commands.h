// commands.h — the pyrmap subcommands. Each lives in its own file with an
// options struct, a Setup function that declares its command line, and a Run
// function that does the work and returns the exit code.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace pyrmap::cli {

// Declares the subcommand on `app` and returns the function to run when it
// is chosen.
using Runner = std::function<int()>;
Runner SetupRun(CLI::App& app);
Runner SetupShared(CLI::App& app);
Runner SetupPipeline(CLI::App& app);
Runner SetupLs(CLI::App& app);
Runner SetupGc(CLI::App& app);

}  // namespace pyrmap::cli
