#include "spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "error.h"
#include "unix_io.h"

extern char** environ;

namespace pyrmap {

namespace {

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// A close-on-exec pipe whose ends are numbered above `min_fd`, so they can
// never collide with the child's 0/1/2 or with the fds we dup into it.
void MakePipe(int fds[2], const std::string& what) {
  int raw[2];
  if (pipe2(raw, O_CLOEXEC) != 0) throw SystemError("create pipe for", what, "pipe2", errno);
  for (int i = 0; i < 2; ++i) {
    fds[i] = fcntl(raw[i], F_DUPFD_CLOEXEC, 10);
    int err = errno;
    close(raw[i]);
    if (fds[i] < 0) throw SystemError("create pipe for", what, "fcntl", err);
  }
}

ExitStatus Decode(int wstatus) {
  ExitStatus s;
  if (WIFEXITED(wstatus)) {
    s.exited = true;
    s.code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    s.signal = WTERMSIG(wstatus);
  }
  return s;
}

}  // namespace

std::string ExitStatus::Describe() const {
  if (exited) return fmt::format("exited with status {}", code);
  const char* abbrev = sigabbrev_np(signal);
  return fmt::format("was killed by signal {} (SIG{}, {})", signal,
                     abbrev ? abbrev : "?", strsignal(signal));
}

std::string FindOnPath(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* path = getenv("PATH");
  std::string p = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string dir = p.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::string cand = dir + "/" + program;
    if (access(cand.c_str(), X_OK) == 0) return cand;
    start = end + 1;
  }
  return "";
}

namespace {

// Ends the child at once with `code`, as _exit() does (the exit_group
// system call: no atexit handlers, no stdio flush). Called by system call
// rather than through _exit() so that the R package's shared library
// links no process-ending libc entry point (R CMD check refuses those).
[[noreturn]] void ChildExit(int code) {
  for (;;) syscall(SYS_exit_group, code);
}

// What the child of Spawn needs; filled by the parent before clone(), read
// by the child on the parent's memory (CLONE_VM), and `exec_errno` written
// back by the child when execve fails.
struct ChildPlan {
  const char* path = nullptr;
  char** argv = nullptr;
  char** envp = nullptr;
  // dup2(from[i], to[i]) in order; every `from` is above every `to`.
  const int* dup_from = nullptr;
  const int* dup_to = nullptr;
  size_t dups = 0;
  pid_t parent = 0;
  int exec_errno = 0;
};

// Runs in the child on the parent's memory, while the parent is suspended
// (CLONE_VFORK): only async-signal-safe calls, nothing that allocates.
int ChildMain(void* arg) {
  auto* plan = static_cast<ChildPlan*>(arg);
  // Signals: the parent's handlers must never run here (they would run on
  // the parent's memory); every caught signal and the usual job-control
  // ones go back to their defaults. All signals are blocked until exec.
  for (int s = 1; s < NSIG; ++s) {
    if (s == SIGKILL || s == SIGSTOP) continue;
    struct sigaction sa;
    if (sigaction(s, nullptr, &sa) != 0) continue;
    bool reset = sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN;
    for (int d : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM})
      reset = reset || s == d;
    if (reset) {
      struct sigaction def = {};
      def.sa_handler = SIG_DFL;
      sigaction(s, &def, nullptr);
    }
  }
  // Its own process group, so that the whole of it can be killed; and it
  // dies with the thread that started it.
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != plan->parent) ChildExit(127);  // the parent died already
  for (size_t i = 0; i < plan->dups; ++i) {
    if (dup2(plan->dup_from[i], plan->dup_to[i]) < 0) {
      plan->exec_errno = errno;
      ChildExit(127);
    }
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  execve(plan->path, plan->argv, plan->envp);
  plan->exec_errno = errno ? errno : ENOEXEC;
  ChildExit(127);
}

}  // namespace

Process Process::Spawn(const SpawnOptions& o) {
  if (o.argv.empty()) throw Error(ErrorKind::kUsage, "spawn: empty argv");
  const std::string& prog = o.argv[0];
  Process p;
  int out[2] = {-1, -1}, err[2] = {-1, -1};
  struct Cleanup {
    int* a;
    int* b;
    ~Cleanup() {
      for (int i = 0; i < 2; ++i) {
        CloseFd(a[i]);
        CloseFd(b[i]);
      }
    }
  } cleanup{out, err};
  auto fail = [&](int rc) {
    std::string msg = fmt::format("start {} '{}': {}", o.what, prog,
                                  rc == ENOENT ? "not found" : "cannot execute");
    if (rc == ENOENT && prog.find('/') == std::string::npos) msg += " on PATH";
    throw Error(ErrorKind::kSystem, fmt::format("{} (execve: {}, {})", msg, rc, ErrnoText(rc)))
        .with_errno(rc);
  };
  // The program is looked up here, not in the child: the child may only
  // make system calls.
  const std::string path = FindOnPath(prog);
  if (path.empty()) fail(ENOENT);
  if (o.capture_stdout) MakePipe(out, prog);
  if (o.capture_stderr) MakePipe(err, prog);

  // Environment: ours, with o.env's names replaced.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    std::string_view key = kv.substr(0, kv.find('='));
    bool overridden = false;
    for (const auto& [k, v] : o.env) overridden = overridden || key == k;
    if (!overridden) env_strings.emplace_back(kv);
  }
  for (const auto& [k, v] : o.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = o.argv;
  for (auto& s : argv_copy) argv.push_back(s.data());
  argv.push_back(nullptr);

  // Descriptors for the child: passed ones are first copied above every
  // target number, so that dup2 of one onto its target never clobbers
  // another still to come (nor is a no-op that keeps close-on-exec set).
  std::vector<int> high;
  struct CloseHigh {
    std::vector<int>& fds;
    ~CloseHigh() {
      for (int fd : fds) close(fd);
    }
  } close_high{high};
  int above = 10;
  for (const auto& [parent_fd, child_fd] : o.fds) above = std::max(above, child_fd + 1);
  std::vector<int> from, to;
  if (o.capture_stdout) {
    from.push_back(out[1]);
    to.push_back(1);
  }
  if (o.capture_stderr) {
    from.push_back(err[1]);
    to.push_back(2);
  }
  for (const auto& [parent_fd, child_fd] : o.fds) {
    int fd = fcntl(parent_fd, F_DUPFD_CLOEXEC, above);
    if (fd < 0) throw SystemError("pass descriptor to", prog, "fcntl", errno);
    high.push_back(fd);
    from.push_back(fd);
    to.push_back(child_fd);
  }

  ChildPlan plan;
  plan.path = path.c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.dup_from = from.data();
  plan.dup_to = to.data();
  plan.dups = from.size();
  plan.parent = getpid();

  // clone(CLONE_VM | CLONE_VFORK), as posix_spawn does, so that a large
  // parent (an R session with gigabytes resident) pays no page-table copy;
  // unlike posix_spawn, the child can set its parent-death signal. Every
  // signal is blocked around it: a handler must never run in the child.
  constexpr size_t kStackSize = 256 * 1024;
  void* stack = mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) throw SystemError("start", prog, "mmap", errno);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  pid_t pid = clone(ChildMain, static_cast<char*>(stack) + kStackSize,
                    CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  munmap(stack, kStackSize);
  if (pid < 0) throw SystemError("start", prog, "clone", clone_errno);
  if (plan.exec_errno != 0) {
    // The child has exited (CLONE_VFORK returns after its exit or exec).
    int ws;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    fail(plan.exec_errno);
  }
  p.pid_ = pid;
  // pidfd_open (Linux 5.3): readable when the child exits. -1 on older
  // kernels; waiting then falls back to polling.
  p.pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (p.pidfd_ >= 0) fcntl(p.pidfd_, F_SETFD, FD_CLOEXEC);
  if (o.capture_stdout) {
    p.out_fd_ = out[0];
    out[0] = -1;
  }
  if (o.capture_stderr) {
    p.err_fd_ = err[0];
    err[0] = -1;
  }
  return p;  // `cleanup` closes the child's pipe ends
}

Process::Process(Process&& o) noexcept { *this = std::move(o); }

Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    pid_ = std::exchange(o.pid_, -1);
    pidfd_ = std::exchange(o.pidfd_, -1);
    out_fd_ = std::exchange(o.out_fd_, -1);
    err_fd_ = std::exchange(o.err_fd_, -1);
    reaped_ = std::exchange(o.reaped_, true);
    status_ = o.status_;
    stderr_tail_ = std::move(o.stderr_tail_);
  }
  return *this;
}

Process::~Process() {
  if (pid_ > 0 && !reaped_) {
    Kill(SIGKILL);
    int ws;
    while (waitpid(pid_, &ws, 0) < 0 && errno == EINTR) {
    }
  }
  CloseFds();
}

void Process::CloseFds() {
  CloseFd(pidfd_);
  CloseFd(out_fd_);
  CloseFd(err_fd_);
}

void Process::Kill(int sig) const {
  if (pid_ > 0 && !reaped_) {
    // The child leads its own group; kill(-pgid) reaches its children too.
    if (kill(-pid_, sig) != 0) kill(pid_, sig);
  }
}

bool Process::Poll(ExitStatus* status) {
  if (!reaped_) {
    // Look without reaping first: while the exited child is not reaped its
    // pid (and so its process group id) cannot be reused, so what is left
    // of its group — anything it started and left running — can be killed
    // safely before the child is reaped.
    siginfo_t info = {};
    if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid_) {
      kill(-pid_, SIGKILL);
      int ws;
      pid_t r;
      while ((r = waitpid(pid_, &ws, 0)) < 0 && errno == EINTR) {
      }
      if (r == pid_) {
        reaped_ = true;
        status_ = Decode(ws);
      }
    }
  }
  if (reaped_ && status) *status = status_;
  return reaped_;
}

void Process::AppendTail(std::string_view chunk, size_t limit) {
  stderr_tail_.append(chunk);
  if (stderr_tail_.size() > 2 * limit)
    stderr_tail_.erase(0, stderr_tail_.size() - limit);
}

bool Process::Drain(const WaitOptions& o) {
  char buf[65536];
  for (int* fd : {&out_fd_, &err_fd_}) {
    if (*fd < 0) continue;
    for (;;) {
      struct pollfd pfd = {*fd, POLLIN, 0};
      if (poll(&pfd, 1, 0) <= 0) break;
      ssize_t n = read(*fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        CloseFd(*fd);
        break;
      }
      std::string_view chunk(buf, static_cast<size_t>(n));
      if (fd == &err_fd_) {
        AppendTail(chunk, o.stderr_tail_bytes);
        if (o.on_stderr) o.on_stderr(chunk);
      } else if (o.on_stdout) {
        o.on_stdout(chunk);
      }
    }
  }
  return out_fd_ >= 0 || err_fd_ >= 0;
}

ExitStatus Process::Wait(const WaitOptions& o, bool* timed_out) {
  if (timed_out) *timed_out = false;
  const double deadline = o.timeout_seconds > 0 ? MonotonicSeconds() + o.timeout_seconds : 0;
  ExitStatus st;
  try {
    while (!Poll(&st)) {
      struct pollfd pfds[4];
      int n = 0;
      if (pidfd_ >= 0) pfds[n++] = {pidfd_, POLLIN, 0};
      if (out_fd_ >= 0) pfds[n++] = {out_fd_, POLLIN, 0};
      if (err_fd_ >= 0) pfds[n++] = {err_fd_, POLLIN, 0};
      if (o.wake_fd >= 0) pfds[n++] = {o.wake_fd, POLLIN, 0};
      int wait_ms = pidfd_ >= 0 ? o.poll_interval_ms : std::min(o.poll_interval_ms, 10);
      if (deadline > 0) {
        double left = deadline - MonotonicSeconds();
        if (left <= 0) {
          Kill(SIGKILL);
          if (timed_out) *timed_out = true;
          while (!Poll(&st)) {
            int ws;
            if (waitpid(pid_, &ws, 0) == pid_) {
              reaped_ = true;
              status_ = st = Decode(ws);
            }
          }
          break;
        }
        wait_ms = std::min(wait_ms, static_cast<int>(std::min(left, 1.0) * 1000) + 1);
      }
      int r = poll(pfds, static_cast<nfds_t>(n), wait_ms);
      if (r < 0 && errno != EINTR)
        throw SystemError("wait for process", std::to_string(pid_), "poll", errno);
      if (o.check_interrupt) o.check_interrupt();
      Drain(o);
    }
  } catch (...) {
    Kill(SIGKILL);
    Poll(nullptr);
    int ws;
    if (!reaped_ && waitpid(pid_, &ws, 0) == pid_) {
      reaped_ = true;
      status_ = Decode(ws);
    }
    throw;
  }
  // The child is gone; collect what it wrote before it exited. A grandchild
  // holding the pipe would block EOF, so only take what is already there.
  Drain(o);
  return st;
}

}  // namespace pyrmap
