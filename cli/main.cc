// pyrmap — run Python scripts over data in shared memory.
//
// The one place where core errors become exit codes and messages.
#include <iostream>
#include <map>

#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "help.h"
#include "header.h"
#include "inventory.h"
#include "protocol_constants.h"
#include "version.h"

int main(int argc, char** argv) {
  using namespace pyrmap::cli;
  CLI::App app{"pyrmap: run Python scripts over data in shared memory, without copies"};
  app.set_version_flag("-V,--version", fmt::format("pyrmap {} (exchange header {}.{})", PYRMAP_VERSION,
                                                  pyrmap::kVersionMajor, pyrmap::kVersionMinor));
  // Hidden (group ""): what the command knows about itself, printed for the
  // tests that keep README.md and the Python side equal to it.
  app.add_option_function<std::string>(
         "--exit-code-table",
         [](const std::string& format) {
           std::cout << ExitCodeTable(format);
           throw CLI::Success();
         },
         "Print the exit-code table (markdown or text)")
      ->check(CLI::IsMember({"markdown", "text"}))
      ->trigger_on_parse()
      ->group("");
  app.add_flag_callback(
         "--protocol-constants",
         [] {
           std::cout << ProtocolConstantsJson();
           throw CLI::Success();
         },
         "Print the exchange protocol's constants as JSON")
      ->trigger_on_parse()
      ->group("");
  app.require_subcommand(1);
  app.footer(HelpFooter(
      {{"printf '1 2 3\\n' | pyrmap run sum.py", "numbers on stdin, the result on stdout"},
       {"pyrmap run plus_one.py -i data.npy -o out.npy", "a .npy file in, a .npy file out"},
       {"pyrmap run describe.py::spread -i data.npy", "call one function of a script"},
       {"pyrmap shared mean.py max.py -i data.npy -j 2", "two scripts over one shared input"},
       {"pyrmap pipeline scale.py square.py -i data.npy", "each script on the previous one's result"},
       {"pyrmap ls", "list the segments that exist, and who holds them"},
       {"pyrmap gc -n", "what gc would remove (a dry run)"}},
      kAllCommands));
  // Parser errors read like the command's other errors ("pyrmap: ..."),
  // with the help of the subcommand that was being parsed.
  app.failure_message([](const CLI::App* failed, const CLI::Error& e) {
    std::string help = "pyrmap";
    for (const CLI::App* sub : failed->get_subcommands()) help += " " + sub->get_name();
    return fmt::format("pyrmap: {}\nRun '{} --help' for more information.\n", e.what(), help);
  });
  std::map<CLI::App*, Runner> runners;
  for (auto setup : {SetupRun, SetupShared, SetupPipeline, SetupLs, SetupGc}) {
    Runner r = setup(app);
    runners[app.get_subcommands({}).back()] = r;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
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
    ReportWarnings(e);
    std::cerr << "pyrmap: " << e.what() << "\n";
    return ExitCodeFor(e.kind(), CaughtSignal());
  } catch (const std::exception& e) {
    std::cerr << "pyrmap: internal error: " << e.what() << "\n";
    return kExitInternal;
  }
  return kExitUsage;
}
