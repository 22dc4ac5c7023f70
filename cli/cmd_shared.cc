// pyrmap shared A.py B.py ... — several scripts over one shared input.
#include <algorithm>
#include <memory>

#include "pool.h"

#include "commands.h"
#include "common.h"
#include "help.h"

namespace pyrmap::cli {

namespace {

struct SharedCmd {
  std::vector<std::string> scripts;
  int jobs = 1;
  bool pool = false;
  InputOptions in;
  ExecOptions exec;
  OutputOptions out;
};

int RunShared(const SharedCmd& c) {
  if (!c.out.output.empty())
    throw Error(ErrorKind::kUsage, "shared writes one result per script: use --output-dir DIR");
  std::vector<Script> scripts;
  std::vector<std::string> titles;
  for (const auto& s : c.scripts) {
    scripts.push_back(ParseScript(s));
    titles.push_back(s);
  }
  RunOptions ro = MakeRunOptions(c.exec, scripts);
  SetResultOrder(&ro, c.in, c.out);
  ro.jobs = c.jobs;
  CheckOutputWritable(c.out);
  Progress progress(c.exec.progress);
  Input input = LoadInput(c.in, progress);
  std::vector<Result> results;
  if (c.pool) {
    Pool pool(MakePoolOptions(ro, std::min<size_t>(static_cast<size_t>(c.jobs), scripts.size())));
    results = pool.Shared(scripts, input, ro);
  } else {
    results = pyrmap::RunShared(scripts, input, ro);
  }
  ReportWarnings(results);
  WriteResults(results, titles, c.out, 1, &progress);
  return kExitOk;
}

}  // namespace

Runner SetupShared(CLI::App& app) {
  auto c = std::make_shared<SharedCmd>();
  CLI::App* sub = app.add_subcommand(
      "shared", "Run several scripts over one shared input; one result per script");
  sub->add_option("scripts", c->scripts, "The scripts (SCRIPT or SCRIPT::FUNCTION)")->required();
  sub->add_option("-j,--jobs", c->jobs, "How many scripts run at once")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_flag("--pool", c->pool,
                "Run the scripts on --jobs warm Python workers: each imports numpy once and runs "
                "script after script (worth it for many short scripts)");
  AddInputOptions(sub, &c->in);
  AddExecOptions(sub, &c->exec);
  AddScriptArgOption(sub, &c->exec.script_args, true);
  AddOutputOptions(sub, &c->out, true);
  sub->footer(HelpFooter({{"pyrmap shared mean.py max.py -i data.npy", "two results, as text on stdout"},
                         {"pyrmap shared mean.py max.py -i data.npy -j 2 --output-dir out", "at once; out/1-mean.npy, out/2-max.npy"}},
                         kRunCommands));
  return [c] { return RunShared(*c); };
}

}  // namespace pyrmap::cli
