// pool.h — warm Python workers: scripts run without an interpreter start.
//
// A Pool keeps `workers` Python interpreters running pyrmap's worker loop
// (python/pyrmap/_worker.py), each with numpy imported and its scripts
// loaded as modules (reloaded when the file changes). A call hands a worker
// its input and gets the result back as the one-shot runs do — the input a
// read-only numpy view of shared memory, the result written straight into
// shared memory — but with no process start, and, for small payloads, no
// segment made per call: each worker has an *area* that both sides keep
// mapped (inputs and results up to kPoolSmallBytes travel there; the
// caller copies a small result out before the worker's next call). Large
// inputs and results travel in unnamed segments (O_TMPFILE in the segment
// directory), so a pool never leaves a name behind.
//
// Isolation is kept: a worker that raises is an error for that call and
// keeps serving; a worker that dies (os._exit, a signal), runs past its
// timeout or is interrupted is killed with its process group and replaced,
// and that call fails with the one-shot runs' error kinds. Workers die with
// the thread that started them (parent-death signal) and notice the end of
// their control socket.
//
// Thread safety: a Pool is used from one thread at a time. Its calls block
// until they are done (several scripts of one call run at once on several
// workers).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "run.h"

namespace pyrmap {

// Payloads up to this size travel in a worker's area.
inline constexpr uint64_t kPoolSmallBytes = uint64_t{1} << 20;

struct PoolOptions {
  int workers = 1;
  std::string python = "python3";
  std::string package_dir;  // prepended to PYTHONPATH
  std::string segment_dir = "/dev/shm";  // where large payloads' segments are made
  std::vector<std::pair<std::string, std::string>> env;
  // How long the segment of a call's large input is kept, once nothing uses
  // it, for the next call's input to be written into (its pages are
  // allocated already: the next input costs a copy instead of fresh pages,
  // and no freeing). 0: never kept.
  double keep_input_seconds = 2.0;
};

// What a pool reports about each worker.
struct WorkerInfo {
  pid_t pid = 0;           // 0 while none runs (it is started on demand)
  uint64_t calls = 0;      // calls it answered
  uint32_t scripts = 0;    // scripts it has loaded (as of its last reply)
  uint64_t restarts = 0;   // times this slot's worker was replaced
};

class Pool {
 public:
  // Starts the workers (they import numpy in the background; the first
  // call waits for them). Throws kInterpreter when the interpreter cannot
  // be started.
  explicit Pool(PoolOptions options);
  ~Pool();  // Close()
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // The run modes of run.h on the pool's workers. RunOptions supplies the
  // timeout, script arguments, result layout and mapping, output relays,
  // interrupt check and wake descriptor; its interpreter, package and jobs
  // fields are ignored (the pool has its own). Shared runs up to one script
  // per worker at once; a pipeline runs on one worker, each stage's result
  // handed to the next without leaving the worker. Results that came
  // through the area are `transient`: valid until the next call on the pool.
  Result Run(const Script& script, const Input& input, const RunOptions& options);
  std::vector<Result> Shared(const std::vector<Script>& scripts, const Input& input,
                             const RunOptions& options);
  std::vector<Result> Pipeline(const std::vector<Script>& scripts, const Input& input,
                               const RunOptions& options, bool keep_intermediate);

  // Kills every worker with its process group and releases the areas.
  // Idempotent; later calls fail with kUsage.
  void Close();
  bool closed() const;

  const PoolOptions& options() const;
  std::vector<WorkerInfo> Workers() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pyrmap
