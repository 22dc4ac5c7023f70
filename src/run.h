// run.h — running Python scripts over shared-memory segments.
//
// The three run modes of pyrmap:
//   RunScript    one script over one input;
//   RunShared    several scripts over one input segment (in turn, or up to
//                `jobs` at once), one result each;
//   RunPipeline  stage k's result segment is stage k+1's input segment (no
//                copy); every stage's result can be kept.
//
// Each call creates its segments under one fresh prefix (segment.h), starts
// the interpreter without a shell (spawn.h) and follows docs/protocol.md.
// The next interpreter is started while the previous stage still runs (or
// while the input is being written), so its start-up cost is hidden; it is
// released with the ready byte once its input is complete.
//
// Cleanup: every segment a call creates is removed before the call returns or
// throws — on success, script failure, timeout, protocol error and
// interruption alike. Results stay readable through their Mappings, which
// keep the memory alive after the names are gone.
//
// Failures throw pyrmap::Error: kNotFound (script missing), kScript (an
// exception, an exit status or a signal, or no result), kInterpreter (not startable, or
// no numpy), kTimeout,
// kProtocol (a header or payload that breaks the protocol), kSystem,
// kInterrupt (from check_interrupt).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "header.h"
#include "input.h"
#include "segment.h"
#include "table.h"

namespace pyrmap {

// A script, optionally with a function to call: "path.py" or "path.py::name".
struct Script {
  std::string path;
  std::string function;  // empty: run the script as __main__
  // "path.py" or "path.py::name".
  std::string Display() const;
};

// Splits "path.py::name" at its last "::".
Script ParseScript(std::string_view spec);

// The layout asked of results with 2 or more dimensions.
enum class ResultOrder { kC, kF, kAny };

// What RunOptions::on_event hears about each script of a call: that it
// started on its input (the input is complete and handed over; an
// interpreter started early to hide its start-up is not "started" before
// that) and how it ended. In a pool a pipeline runs inside one worker, so
// its events cover all of its stages at once (first..last).
struct RunEvent {
  enum class Kind { kStarted, kFinished, kFailed };
  Kind kind = Kind::kStarted;
  size_t first = 0;      // index of the (first) script in the call's list
  size_t last = 0;       // index of its last script (== first but in a pooled pipeline)
  size_t count = 1;      // scripts in the call
  std::string what;      // "script 'a.py'", or "pipeline 'a.py', 'b.py'"
  ArrayDesc input;       // kStarted: the input it gets
  ArrayDesc result;      // kFinished: its (final) result
  double seconds = 0;    // kFinished, kFailed: since it started
};

struct RunOptions {
  // The interpreter (a path, or a name searched on PATH).
  std::string python = "python3";
  // The directory that holds the `pyrmap` Python package; prepended to
  // PYTHONPATH. Empty: rely on an installed package.
  std::string package_dir;
  // Seconds a script may run after its input is ready; 0: no limit.
  double timeout_seconds = 0;
  // Extra arguments for the scripts (sys.argv[1:]).
  std::vector<std::string> script_args;
  // Layout wanted for results of 2 or more dimensions.
  ResultOrder result_order = ResultOrder::kC;
  // How results are mapped for the caller.
  MapMode result_map = MapMode::kReadOnly;
  // RunShared: how many scripts run at once (>= 1).
  int jobs = 1;
  // Output of the scripts. stdout: null means the child inherits ours.
  // stderr is always captured (its end goes into error messages); it is
  // passed to on_stderr, or to our stderr when on_stderr is null.
  std::function<void(std::string_view)> on_stdout;
  std::function<void(std::string_view)> on_stderr;
  // Called regularly while waiting and between chunks of input; throwing
  // from it abandons the run (children killed, segments removed).
  std::function<void()> check_interrupt;
  // Told when a script starts on its input and when it ends (RunEvent);
  // null: nothing is told. Runs on the calling thread; it must not throw.
  std::function<void(const RunEvent&)> on_event;
  // A descriptor that becomes readable when check_interrupt should run now
  // (e.g. the CLI's signal self-pipe); -1 for none.
  int wake_fd = -1;
  // Reserve result segments to the input's size while the input is being
  // written (large inputs only, when /dev/shm has room): most results are
  // the input's size, and this moves most of the cost of writing them off
  // the script's critical path.
  bool reserve_results = true;
  // Extra variables for the scripts' environment.
  std::vector<std::pair<std::string, std::string>> env;
  // How table inputs reach Python (header flag bits 3-4): kTablesAuto
  // (pandas when it can be imported), kTablesPandas, kTablesNumpy.
  uint32_t tables = kTablesAuto;
  // Let table results refer to buffers of a table input that the script
  // returned unchanged (header flag bit 5; never between pipeline stages):
  // the result then keeps a mapping of the input (Result::input_mapping).
  bool input_refs = false;
  // Where the call's segments are made: "" (PYRMAP_SEGMENT_DIR, else
  // /dev/shm), "RAM", "DISK" or a directory (segment_dir.h). The scripts
  // get the directory's path as PYRMAP_SEGMENT_DIR.
  std::string segment_dir;
};

// One script's result: its array and a mapping of its payload.
struct Result {
  Script script;
  ArrayDesc desc;
  // kKindArray: desc is the array; kKindTable: desc is the table block
  // (uint8[n]) and `table` its decoded directory (when mapped).
  uint32_t kind = kKindArray;
  std::shared_ptr<const Table> table;
  // The input's table block, when buffers of `table` lie there (kInInput):
  // their data is at input_mapping->data() + input_offset + desc.offset.
  std::shared_ptr<Mapping> input_mapping;
  uint64_t input_offset = 0;
  // Holds the payload; null when desc.nbytes is 0. The segment's name is
  // gone; the memory lives as long as this mapping.
  std::shared_ptr<Mapping> mapping;
  // Where the payload starts in the mapping.
  uint64_t offset = 0;
  // The Python warnings the script gave ("UserWarning: text (file:line)").
  std::vector<std::string> warnings;
  // The payload lies in a pool worker's area (pool.h): valid only until the
  // pool's next call; copy it before then.
  bool transient = false;
  const uint8_t* data() const { return mapping ? mapping->data() + offset : nullptr; }
  // The first byte of buffer `b` of a table result.
  const uint8_t* buffer(size_t b) const;
};

Result RunScript(const Script& script, const Input& input, const RunOptions& options);

// One result per script, in the order of `scripts`. The first failure stops
// the others.
std::vector<Result> RunShared(const std::vector<Script>& scripts, const Input& input,
                              const RunOptions& options);

// The final stage's result, or every stage's result when keep_intermediate.
std::vector<Result> RunPipeline(const std::vector<Script>& scripts, const Input& input,
                                const RunOptions& options, bool keep_intermediate);

// The command line that starts the Python side for `script`.
std::vector<std::string> PythonCommand(const RunOptions& options, const Script& script);

}  // namespace pyrmap
