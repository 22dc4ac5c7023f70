// spawn.h — starting a program without a shell, and waiting for it.
//
// The child is started with clone(CLONE_VM | CLONE_VFORK) and execve, as
// posix_spawn does (so a large parent such as an R session with gigabytes
// resident pays no page-table copy), in a new process group, with default
// signal dispositions, an empty signal mask, and SIGKILL as its parent-death
// signal: it dies when the thread that started it ends (the whole process
// being killed included). A program that cannot be executed is reported as
// an Error naming it and the errno text, never as a silent exit status 127.
//
// When the child is collected (Poll, Wait, the destructor), what is left of
// its process group — processes it started and left running — is killed
// first, while the unreaped child still holds the group id.
//
// Thread safety: Spawn may be called from several threads (each child dies
// with its own starting thread); every descriptor the core opens is
// close-on-exec, so children inherit only what SpawnOptions lists.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pyrmap {

struct SpawnOptions {
  // argv[0] is the program; without a '/', it is searched on PATH.
  std::vector<std::string> argv;
  // Variables set in the child on top of this process's environment.
  std::vector<std::pair<std::string, std::string>> env;
  // Descriptors given to the child: {parent fd, child fd}.
  std::vector<std::pair<int, int>> fds;
  bool capture_stdout = false;  // else inherited
  bool capture_stderr = true;   // else inherited
  // Used in messages: "start <what> '<argv[0]>'".
  std::string what = "program";
};

// How a process ended.
struct ExitStatus {
  bool exited = false;  // true: normal exit with `code`
  int code = 0;
  int signal = 0;       // the signal that killed it, when !exited
  bool ok() const { return exited && code == 0; }
  // "exited with status 3" / "was killed by signal 9 (SIGKILL)".
  std::string Describe() const;
};

// What to do while waiting for a process.
struct WaitOptions {
  double timeout_seconds = 0;  // 0: no timeout
  // Called with output chunks as they arrive (only for captured streams).
  std::function<void(std::string_view)> on_stdout;
  std::function<void(std::string_view)> on_stderr;
  // Called at least every `poll_interval_ms` and whenever `wake_fd` becomes
  // readable; it may throw to abandon the wait, and the process group is
  // then killed before the exception propagates.
  std::function<void()> check_interrupt;
  int wake_fd = -1;
  int poll_interval_ms = 100;
  // Bytes of stderr kept for error messages (the end of the stream).
  size_t stderr_tail_bytes = 8192;
};

class Process {
 public:
  // Throws Error(kSystem) if the program cannot be started.
  static Process Spawn(const SpawnOptions& options);

  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  // Kills the process group and reaps the child if it is still running.
  ~Process();

  pid_t pid() const { return pid_; }

  // Waits until the child exits, relaying captured output. On timeout the
  // process group is killed and `timed_out` is set. Returns the exit status.
  ExitStatus Wait(const WaitOptions& options, bool* timed_out = nullptr);

  // Sends `sig` to the child's process group.
  void Kill(int sig = 9) const;

  // Whether the child has exited; never blocks. If so, kills what is left of
  // its process group, then reaps it.
  bool Poll(ExitStatus* status = nullptr);

  // The last bytes the child wrote to its captured stderr.
  const std::string& stderr_tail() const { return stderr_tail_; }

  // Raw descriptors, for callers that multiplex several children: the
  // pidfd is readable when the child has exited; -1 when not captured.
  int pidfd() const { return pidfd_; }
  int stdout_fd() const { return out_fd_; }
  int stderr_fd() const { return err_fd_; }
  // Reads what is available on the captured pipes and relays it; returns
  // false once both are at EOF.
  bool Drain(const WaitOptions& options);

 private:
  Process() = default;
  void CloseFds();
  void AppendTail(std::string_view chunk, size_t limit);
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool reaped_ = false;
  ExitStatus status_;
  std::string stderr_tail_;
};

// The path a program name resolves to on PATH ("" if not found); a name
// containing '/' is returned as is.
std::string FindOnPath(const std::string& program);

}  // namespace pyrmap
