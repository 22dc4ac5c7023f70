// pyrmap pipeline A.py B.py ... — each script's result is the next one's input.
#include <memory>

#include "pool.h"

#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "help.h"

namespace pyrmap::cli {

namespace {

struct PipelineCmd {
  std::vector<std::string> scripts;
  bool keep_intermediate = false;
  bool pool = false;
  InputOptions in;
  ExecOptions exec;
  OutputOptions out;
};

int RunPipeline(const PipelineCmd& c) {
  if (!c.out.output.empty() && !c.out.output_dir.empty())
    throw Error(ErrorKind::kUsage, "give --output or --output-dir, not both");
  if (c.keep_intermediate && !c.out.output.empty())
    throw Error(ErrorKind::kUsage,
                "--keep-intermediate writes every stage: use --output-dir DIR (or text on stdout)");
  std::vector<Script> scripts;
  std::vector<std::string> titles;
  for (size_t k = 0; k < c.scripts.size(); ++k) {
    scripts.push_back(ParseScript(c.scripts[k]));
    titles.push_back(fmt::format("stage {}: {}", k + 1, c.scripts[k]));
  }
  RunOptions ro = MakeRunOptions(c.exec, scripts);
  SetResultOrder(&ro, c.in, c.out);
  CheckOutputWritable(c.out);
  Progress progress(c.exec.progress);
  Input input = LoadInput(c.in, progress);
  std::vector<Result> results;
  if (c.pool) {
    Pool pool(MakePoolOptions(ro, 1));
    results = pool.Pipeline(scripts, input, ro, c.keep_intermediate);
  } else {
    results = pyrmap::RunPipeline(scripts, input, ro, c.keep_intermediate);
  }
  ReportWarnings(results);
  if (!c.keep_intermediate && c.out.output_dir.empty()) {
    WriteResult(results.back(), c.out.output, c.out.output_format, &progress);
  } else {
    if (!c.keep_intermediate) titles = {titles.back()};
    WriteResults(results, titles, c.out, c.keep_intermediate ? 1 : scripts.size(), &progress);
  }
  return kExitOk;
}

}  // namespace

Runner SetupPipeline(CLI::App& app) {
  auto c = std::make_shared<PipelineCmd>();
  CLI::App* sub = app.add_subcommand(
      "pipeline", "Run scripts in sequence, each on the previous one's result (no copy)");
  sub->add_option("scripts", c->scripts, "The stages (SCRIPT or SCRIPT::FUNCTION)")->required();
  sub->add_flag("-k,--keep-intermediate", c->keep_intermediate,
                "Output every stage's result, not only the last");
  sub->add_flag("--pool", c->pool,
                "Run every stage in one warm Python worker (numpy imported once; each result "
                "handed to the next stage inside Python)");
  AddInputOptions(sub, &c->in);
  AddExecOptions(sub, &c->exec);
  AddScriptArgOption(sub, &c->exec.script_args, true);
  AddOutputOptions(sub, &c->out, true);
  sub->footer(HelpFooter({{"pyrmap pipeline scale.py square.py -i data.npy -o out.npy", "square.py gets scale.py's result"},
                         {"pyrmap pipeline scale.py square.py -i data.npy -k --output-dir out", "keep every stage's result"}},
                         kRunCommands));
  return [c] { return RunPipeline(*c); };
}

}  // namespace pyrmap::cli
