// pyrmap — run Python scripts over data in shared memory.
//
// The one place where core errors become exit codes and messages.
#include <iostream>
#include <map>

#include <fmt/format.h>

#include "header.h"
#include "inventory.h"
#include "commands.h"
#include "common.h"
#include "version.h"

int main(int argc, char** argv) {
  using namespace pyrmap::cli;
  CLI::App app{"pyrmap: run Python scripts over data in shared memory, without copies"};
  app.set_version_flag("-V,--version", fmt::format("pyrmap {} (exchange header {}.{})", PYRMAP_VERSION,
                                                  pyrmap::kVersionMajor, pyrmap::kVersionMinor));
  app.require_subcommand(1);
  app.footer(ExitCodeHelp());
  std::map<CLI::App*, Runner> runners;
  for (auto setup : {SetupRun, SetupShared, SetupPipeline, SetupLs, SetupGc}) {
    Runner r = setup(app);
    runners[app.get_subcommands({}).back()] = r;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }
  try {
    InstallSignalHandlers();
    for (auto& [sub, run] : runners) {
      if (!sub->parsed()) continue;
      // Leftovers of killed runs go before a run starts (ls and gc show
      // and remove them themselves).
      if (sub->get_name() != "ls" && sub->get_name() != "gc") pyrmap::RemoveDeadSegments();
      return run();
    }
  } catch (const pyrmap::Error& e) {
    std::cerr << "pyrmap: " << e.what() << "\n";
    return ExitCodeFor(e.kind());
  } catch (const std::exception& e) {
    std::cerr << "pyrmap: internal error: " << e.what() << "\n";
    return 1;
  }
  return kExitUsage;
}
