// options.h — the command-line options the pyrmap subcommands share (input,
// interpreter and run, output), and what they turn into: the run's options
// and its input.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "pool.h"
#include "progress.h"
#include "run.h"

namespace pyrmap::cli {

// Options for the input.
struct InputOptions {
  std::string input;          // file, "-" for stdin, empty: stdin
  std::string input_format = "auto";
  std::string dtype;          // empty: from the input (.npy), float64 for text
  std::string shape;          // "R,C,..." or empty
  std::string order = "C";    // of raw and text input with --shape
};

// Options for the interpreter and the scripts' run.
struct ExecOptions {
  std::string python;         // empty: $PYRMAP_PYTHON, else python3
  double timeout = 0;
  std::vector<std::string> script_args;
  std::string segment_dir;    // empty: $PYRMAP_SEGMENT_DIR, else /dev/shm
  bool progress = false;      // -v/--progress: a line per stage on stderr (progress.h)
};

// Options for the results.
struct OutputOptions {
  std::string output;         // file, "-" for stdout, empty: text on stdout
  std::string output_dir;     // several results (shared, pipeline)
  std::string output_format = "auto";
};

void AddInputOptions(CLI::App* app, InputOptions* o);
void AddExecOptions(CLI::App* app, ExecOptions* o);
// --segment-dir RAM|DISK|DIR (segment_dir.h): where a run makes its
// segments; on ls and gc (repeatable) where else to look.
void AddSegmentDirOption(CLI::App* app, std::string* dir);
void AddSegmentDirOption(CLI::App* app, std::vector<std::string>* dirs);
// -a/--arg ARG (repeatable, one value each): an argument for the script(s),
// appended to `args` in the order given. `every_script`: the help says that
// each script (shared, pipeline) gets the same arguments.
void AddScriptArgOption(CLI::App* app, std::vector<std::string>* args, bool every_script);
void AddOutputOptions(CLI::App* app, OutputOptions* o, bool several);

// Fills RunOptions from the command line: interpreter, package directory,
// timeout, signal hook. `scripts` are named in the message of an
// interruption ("interrupted by SIGINT while running script 'a.py'").
RunOptions MakeRunOptions(const ExecOptions& o, const std::vector<Script>& scripts);

// A pool of `workers` warm workers running the interpreter and package of `r`.
PoolOptions MakePoolOptions(const RunOptions& r, size_t workers);

// Raw output cannot record a layout, so when the results are written raw,
// results of 2 or more dimensions are asked for in --order (C by default);
// otherwise (text, .npy) each result keeps its own layout.
void SetResultOrder(RunOptions* r, const InputOptions& in, const OutputOptions& out);

// The input as the options describe it (input.h does the reading); stdin
// is read first, a file when the run fills its data segment. Tells
// `progress` what the input is.
Input LoadInput(const InputOptions& o, const Progress& progress);

}  // namespace pyrmap::cli
