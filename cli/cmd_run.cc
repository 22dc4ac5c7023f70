// pyrmap run SCRIPT[::FUNCTION] — one script over one input.
#include <memory>

#include "commands.h"
#include "common.h"
#include "help.h"

namespace pyrmap::cli {

namespace {

struct RunCmd {
  std::string script;
  std::vector<std::string> arg_options;  // -a/--arg, before the arguments after --
  InputOptions in;
  ExecOptions exec;
  OutputOptions out;
};

int RunRun(const RunCmd& c) {
  Script script = ParseScript(c.script);
  ExecOptions exec = c.exec;
  exec.script_args.insert(exec.script_args.begin(), c.arg_options.begin(), c.arg_options.end());
  RunOptions ro = MakeRunOptions(exec, {script});
  SetResultOrder(&ro, c.in, c.out);
  CheckOutputWritable(c.out);
  Progress progress(c.exec.progress);
  Input input = LoadInput(c.in, progress);
  Result r = RunScript(script, input, ro);
  ReportWarnings({r});
  WriteResult(r, c.out.output, c.out.output_format, &progress);
  return kExitOk;
}

}  // namespace

Runner SetupRun(CLI::App& app) {
  auto c = std::make_shared<RunCmd>();
  CLI::App* sub = app.add_subcommand(
      "run", "Run one Python script over the input and output its result");
  sub->add_option("script", c->script,
                  "The script, or SCRIPT::FUNCTION to call one of its functions with the input")
      ->required();
  sub->add_option("args", c->exec.script_args, "Arguments for the script (after --)");
  AddScriptArgOption(sub, &c->arg_options, false);
  AddInputOptions(sub, &c->in);
  AddExecOptions(sub, &c->exec);
  AddOutputOptions(sub, &c->out, false);
  sub->footer(HelpFooter({{"pyrmap run plus_one.py -i data.npy -o out.npy", "a .npy file in, a .npy file out"},
                         {"printf '1,2,3\\n' | pyrmap run sum.py", "numbers on stdin (spaces or commas)"},
                         {"pyrmap run describe.py::spread -i data.npy", "call one function of the script"},
                         {"pyrmap run model.py -i x.bin -d float32 -s 1000,3 -v", "raw input; progress on stderr"}},
                         kRunCommands));
  return [c] { return RunRun(*c); };
}

}  // namespace pyrmap::cli
