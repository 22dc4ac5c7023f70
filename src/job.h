// job.h — one script's part of a call: its segments, its interpreter, and
// handing it its input.
//
// StartJob creates the script's meta segment (the exchange header, state 0)
// and its empty result segment, and starts the interpreter on the bootstrap
// (no shell, its own process group, killed when the starting thread dies).
// The interpreter imports numpy and then waits for the ready byte, so it
// can be started long before its input exists; ReleaseJob sends that byte,
// with a descriptor of the segment holding the input.
//
// Ownership: a Job owns its process (killed and reaped, with what is left of
// its process group, when the Job is destroyed) and its end of the ready
// socket (closing it is end-of-file for the script: the caller is gone).
// Segment names are added to the caller's SegmentGuard, which removes them.
// Not thread-safe; one thread drives a call's jobs.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "header.h"
#include "run.h"
#include "segment.h"
#include "spawn.h"

namespace pyrmap {

struct Job {
  Script script;
  std::string meta_name;
  std::string res_name;
  std::optional<Segment> meta;
  std::shared_ptr<Segment> res;     // read-write: reserved, then read back
  std::shared_ptr<Segment> res_ro;  // the same segment read-only, for the next stage
  std::shared_ptr<Segment> input;   // the input's segment, kept while the
                                    // result may be written into it
  std::shared_ptr<Segment> input_ro;  // the same read-only (set by the caller)
  bool in_place = false;            // the job may write its result there
  uint32_t result_location = kResultInResultSegment;
  std::optional<Process> proc;
  int ready_fd = -1;  // our end of the ready socket; closing it is EOF
  bool released = false;
  double released_at = 0;
  bool exited = false;
  bool timed_out = false;
  bool bootstrap_started = false;  // its hello byte was seen (BootstrapStarted)
  std::vector<std::string> warnings;  // the Python warnings it sent
  std::string unread;                 // a message not complete yet
  ExitStatus status;

  Job() = default;
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;
  ~Job();
};

// Header flags asked of every script of a call (the result layout).
uint32_t ResultFlags(const RunOptions& options);

// Creates script number `k`'s segments under `prefix` in `guard`'s segment
// directory (their names go to `guard`; the script gets the directory as
// PYRMAP_SEGMENT_DIR), writes its header (state 0; the input's geometry `desc`, or
// nothing yet when null: ReleaseJob writes it) and starts the interpreter,
// whose input will be segment `data_name`. Throws kInterpreter when the
// interpreter cannot be started, kSystem for segment failures.
std::unique_ptr<Job> StartJob(const RunOptions& options, const std::string& prefix, size_t k,
                              const Script& script, const std::string& data_name,
                              const ArrayDesc* desc, uint32_t input_kind, SegmentGuard& guard);

// Gives `job` its input: writes `desc` (and `kind`) first if given, then sends the ready
// byte with a descriptor of `input` (the segment holding the input). With
// `in_place`, `input` must be writable and the script may put its result
// there (header flag bit 2): only for a segment of this call that nobody
// reads afterwards; otherwise `input` should be read-only (the script gets
// exactly the access of the descriptor it is sent). A script that already
// died is not an error here (its exit is judged later); any other failure
// to send throws kSystem.
void ReleaseJob(Job& job, const RunOptions& options, const ArrayDesc* desc, uint32_t kind,
                const std::shared_ptr<Segment>& input, bool in_place);

// Sends the one ready byte on `sock`, with descriptor `pass_fd` attached
// when it is >= 0. Returns false if the peer is gone (EPIPE, ECONNRESET);
// throws kSystem naming `script` for any other failure.
bool SendReady(int sock, int pass_fd, const std::string& script);

// Reads what the script sent on the ready socket so far, never blocking:
// the byte 'h' when its bootstrap starts (so a process that ends without it
// was not a working Python with pyrmap: job.bootstrap_started), and its
// Python warnings (b"w", u32 length, UTF-8 text each: job.warnings).
void ReadScriptMessages(Job& job);

// Whether the script's bootstrap started (reads what has arrived first).
bool BootstrapStarted(Job& job);

}  // namespace pyrmap
