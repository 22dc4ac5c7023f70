// common.h — what the pyrmap subcommands share: options for input, output
// and the interpreter, loading the input, writing results, signals, and the
// mapping from core errors to exit codes.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

#include "error.h"
#include "run.h"

namespace pyrmap::cli {

// Exit codes of the pyrmap command (also listed in --help and the README).
enum ExitCode : int {
  kExitOk = 0,
  kExitUsage = 2,        // bad arguments, unreadable or invalid input, missing script
  kExitScript = 3,       // the script failed: exception, exit status, signal, no result
  kExitTimeout = 4,      // the script exceeded --timeout and was killed
  kExitProtocol = 5,     // a header or result that breaks the exchange protocol
  kExitSystem = 6,       // a system failure: /dev/shm full, segment or file I/O
  kExitInterpreter = 7,  // the Python interpreter cannot be started or lacks numpy
  // 128 + N: stopped by signal N (SIGINT: 130, SIGTERM: 143)
};

// The exit-code table, as printed at the end of every --help.
const char* ExitCodeHelp();

// Options for the input, the interpreter and the scripts' run.
struct InputOptions {
  std::string input;          // file, "-" for stdin, empty: stdin
  std::string input_format = "auto";
  std::string dtype;          // empty: from the input (.npy), float64 for text
  std::string shape;          // "R,C,..." or empty
  std::string order = "C";    // of raw and text input with --shape
};

struct ExecOptions {
  std::string python;         // empty: $PYRMAP_PYTHON, else python3
  double timeout = 0;
  std::vector<std::string> script_args;
  std::string segment_dir;    // empty: $PYRMAP_SEGMENT_DIR, else /dev/shm
};

struct OutputOptions {
  std::string output;         // file, "-" for stdout, empty: text on stdout
  std::string output_dir;     // several results (shared, pipeline)
  std::string output_format = "auto";
};

void AddInputOptions(CLI::App* app, InputOptions* o);
void AddExecOptions(CLI::App* app, ExecOptions* o);
// --segment-dir RAM|DISK|DIR (segment_dir.h); `several`: repeatable (ls, gc).
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

// Raw output cannot record a layout, so when the results are written raw,
// results of 2 or more dimensions are asked for in --order (C by default);
// otherwise (text, .npy) each result keeps its own layout.
void SetResultOrder(RunOptions* r, const InputOptions& in, const OutputOptions& out);

// The input as described by the options. The returned Input's fill writes
// into the data segment; for stdin the data is read first.
Input LoadInput(const InputOptions& o);

// Checks that the output file's directory, or the output directory, exists
// and is writable, so a wrong path is reported before any script runs.
void CheckOutputWritable(const OutputOptions& o);

// Writes one result to `path` (or stdout) in the chosen format.
void WriteResult(const Result& r, const std::string& path, const std::string& format);

// Writes several results: into dir/<k>-<stem>.<ext> when output_dir is set
// (k counts from `first_number`: a pipeline's final stage alone keeps its
// stage number), else as text blocks on stdout headed by "== <title> ==".
void WriteResults(const std::vector<Result>& results, const std::vector<std::string>& titles,
                  const OutputOptions& o, size_t first_number = 1);

// Installs SIGINT/SIGTERM/SIGHUP handlers that make check_interrupt throw
// Error(kInterrupt); returns the self-pipe to poll.
int InstallSignalHandlers();
// The signal that stopped us, or 0.
int CaughtSignal();

// Maps an error kind to the exit code.
int ExitCodeFor(ErrorKind kind);

}  // namespace pyrmap::cli
