// engine.h — pyrmap's own worker processes for parallel calls.
//
// An Engine starts `workers` copies of a worker program (for R: an Rscript
// running the package's worker loop) once, and keeps them waiting on a
// futex in a control block (channel.h) that both sides keep mapped. A call
// is posted by writing the name of its call segment into the control block
// and bumping the job number: no message, no socket. Each worker joins the
// call (its slot in the call segment), claims chunks of tasks from the
// call segment's counter, appends its results to its own result file (an
// unnamed segment kept for the workers' life), leaves the call, and wakes
// the master through an eventfd. The master waits for the call to settle
// and for the workers that joined it, not for every worker: a worker that
// wakes late finds nothing left and costs the call nothing.
//
// A worker that dies is seen at once through its pidfd; an interrupted call
// sends SIGINT to the workers still busy, waits a grace period, and kills
// those that did not stop. A dead or killed worker is started again by the
// next Ready(). Workers run in process groups of their own (Ctrl-C in a
// terminal reaches the master only), with SIGKILL as their parent-death
// signal (spawn.h), and make no named segment: nothing of the engine is left
// in any directory, however it ends.
//
// What a worker program gets: descriptor 3 the control block, 4 its result
// file, 5 the eventfd, stdin and stdout on /dev/null, stderr on a pipe the
// master reads (the end of it goes into error messages), and
// PYRMAP_ENGINE_SLOT (0-based). EngineWorker is its side of the protocol.
//
// Thread safety: an Engine is used from one thread at a time, the thread
// that made it (its workers die with that thread). In a forked child of
// that process an Engine must not be used; destroying it there leaves the
// parent's workers alone.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "channel.h"
#include "spawn.h"

namespace pyrmap {

inline constexpr int kEngineControlFd = 3;
inline constexpr int kEngineResultFd = 4;
inline constexpr int kEngineWakeFd = 5;
inline constexpr int kEngineAreaFd = 6;
// The call area's size (channel.h): small calls go there.
inline constexpr uint64_t kEngineAreaSize = uint64_t{256} << 10;
inline constexpr const char* kEngineSlotVar = "PYRMAP_ENGINE_SLOT";

struct EngineOptions {
  int workers = 1;
  std::vector<std::string> argv;  // the worker program
  std::vector<std::pair<std::string, std::string>> env;
  std::string segment_dir = "/dev/shm";  // where the unnamed control block and result files are made
  double start_timeout = 120;  // seconds a worker may take to become ready
  std::string what = "worker";  // in messages: "<what> 2 of the engine"
};

// What Wait() saw.
struct EngineStatus {
  enum Kind { kDone, kRunning, kDied } kind = kRunning;
  uint32_t slot = 0;          // kDied: the worker that died
  ExitStatus exit;            // kDied: how it ended
  std::string stderr_tail;    // kDied: the end of what it wrote to stderr
};

class Engine {
 public:
  // Creates the control block and the result files; starts nothing yet.
  explicit Engine(EngineOptions options);
  // Kills every worker with its process group (not in a forked child).
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Starts the workers that are not running (the first time, and those
  // that died or were killed) and waits until every worker has started
  // (it may still be finishing an earlier job it found nothing in).
  // `check` runs at least every 100 ms and may throw to abandon the wait
  // (the workers go on starting). Throws Error(kSystem) naming the worker,
  // how it ended and the end of its stderr if one exits before it is ready
  // or is not ready within start_timeout.
  void Ready(const std::function<void()>& check);
  // Posts the job of call segment `call_name` (after Ready()) and wakes
  // `wake` workers; the others take part once woken by WakeAll() (from
  // the master, or from a worker that finds the call worth it). A small
  // call then costs one worker's wake-up, and the master's CPU is not taken
  // by workers that would find nothing to do. Returns the job number.
  uint32_t Post(const std::string& call_name, int wake = INT32_MAX);
  void WakeAll();
  // Waits at most `timeout_seconds` until `over()` is true (checked after
  // every wake-up: a worker leaving a call writes the eventfd). kRunning on
  // timeout or when a signal arrived (the caller checks for interrupts and
  // waits again); kDied as soon as a worker for which `involved(k)` is true
  // is found dead. Any worker found dead is started again by the next
  // Ready().
  EngineStatus Wait(const std::function<bool()>& over, const std::function<bool(uint32_t)>& involved,
                    double timeout_seconds);
  // Ends a call early: sends SIGINT to the workers for which `busy(k)` is
  // true, waits up to `grace_seconds` for them to stop being busy, then
  // kills the others (started again by the next Ready()). Returns how many
  // were killed.
  int Interrupt(const std::function<bool(uint32_t)>& busy, double grace_seconds);

  uint32_t workers() const;
  // Where the control block and the result files are (options.segment_dir).
  const std::string& segment_dir() const;
  Control& control();
  // Worker k's result file (owned by the engine).
  const Segment& Results(uint32_t k) const;
  // The call area (channel.h), which every worker has as kEngineAreaFd.
  const Segment& Area() const;
  // Gives back the memory of worker k's result file when it grew past
  // `keep_bytes` (after the master read it).
  void TrimResults(uint32_t k, uint64_t keep_bytes);
  // Pids of the running workers (0 for a slot without one).
  std::vector<pid_t> Pids() const;
  // Times each slot's worker was started again.
  std::vector<uint64_t> Restarts() const;
  // Kills every worker; later calls fail with kUsage. Idempotent.
  void Close();
  bool closed() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A worker's side: attaches to what the engine passed it.
class EngineWorker {
 public:
  // Reads the slot from PYRMAP_ENGINE_SLOT and maps the control block on
  // descriptor 3; marks the slot idle (ready). Throws Error(kProtocol) when
  // the process was not started by an Engine.
  static EngineWorker FromEnvironment();

  // Waits for the next job. Returns false when the engine asks its workers
  // to stop; else sets *call_name to the job's call segment. A signal ends
  // the wait early: then returns true with an empty name (wait again).
  bool NextJob(std::string* call_name);
  uint32_t slot() const { return slot_; }
  uint32_t seq() const { return seq_; }
  int result_fd() const { return kEngineResultFd; }
  // Wakes the master (after leaving a call).
  void Wake();
  // Wakes the other workers (a call worth all of them).
  void WakeOthers() const;
  // The job is over for this worker: it is idle again.
  void Finish();

 private:
  EngineWorker() = default;
  std::shared_ptr<Control> control_;
  uint32_t slot_ = 0;
  uint32_t seq_ = 0;
};

}  // namespace pyrmap
