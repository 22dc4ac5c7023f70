#include "engine.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include "error.h"

namespace pyrmap {

namespace {

double Now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

void DrainEventFd(int fd) {
  uint64_t v;
  while (read(fd, &v, sizeof v) == static_cast<ssize_t>(sizeof v)) {
  }
}

std::string Tail(const std::string& s) {
  std::string t = s;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  if (t.size() > 2000) t = "..." + t.substr(t.size() - 2000);
  return t;
}

struct Slot {
  // A pointer, so that a forked child can let go of it without killing the
  // parent's worker.
  std::unique_ptr<Process> proc;
  std::optional<Segment> results;
  uint64_t restarts = 0;
  bool started_once = false;
  std::string last_tail;  // stderr of the last worker that ended
};

}  // namespace

struct Engine::Impl {
  EngineOptions o;
  pid_t owner = getpid();
  std::optional<Segment> ctl_seg;
  std::optional<Control> ctl;
  std::optional<Segment> area;  // the call area (channel.h)
  int wake = -1;
  int devnull = -1;
  std::vector<Slot> slots;
  bool closed = false;

  explicit Impl(EngineOptions opts) : o(std::move(opts)) {
    if (o.workers < 1 || o.workers > static_cast<int>(kMaxWorkers))
      throw Error(ErrorKind::kUsage, fmt::format("the engine needs 1 to {} workers, not {}", kMaxWorkers, o.workers));
    if (o.argv.empty()) throw Error(ErrorKind::kUsage, "the engine needs a worker program");
    const uint32_t n = static_cast<uint32_t>(o.workers);
    ctl_seg.emplace(Segment::CreateUnnamed(o.segment_dir, Control::SizeFor(n), "engine control block"));
    ctl.emplace(Control::Create(*ctl_seg, n));
    area.emplace(Segment::CreateUnnamed(o.segment_dir, kEngineAreaSize, "the engine's call area"));
    wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake < 0) throw SystemError("create the engine's", "eventfd", "eventfd", errno);
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) {
      int err = errno;
      close(wake);
      throw SystemError("open", "/dev/null", "open", err);
    }
    slots.resize(n);
    for (uint32_t k = 0; k < n; ++k)
      slots[k].results.emplace(
          Segment::CreateUnnamed(o.segment_dir, 0, fmt::format("results of {} {} of the engine", o.what, k + 1)));
  }

  ~Impl() {
    if (getpid() != owner) {
      // A forked child: the workers are the parent's.
      for (Slot& s : slots) (void)s.proc.release();
    } else {
      Close();
    }
    if (wake >= 0) close(wake);
    if (devnull >= 0) close(devnull);
  }

  void Close() {
    if (closed) return;
    closed = true;
    if (getpid() != owner) return;
    for (Slot& s : slots) s.proc.reset();  // kills the group and reaps
  }

  void CheckUsable() const {
    if (closed) throw Error(ErrorKind::kUsage, "the engine is closed");
    if (getpid() != owner)
      throw Error(ErrorKind::kUsage, "the engine belongs to the process that started it, not to a forked child");
  }

  std::string Name(uint32_t k) const { return fmt::format("{} {} of the engine", o.what, k + 1); }

  void Start(uint32_t k) {
    Slot& s = slots[k];
    ctl->SetState(k, SlotState::kStarting);
    ctl->SetPid(k, 0);
    SpawnOptions so;
    so.argv = o.argv;
    so.env = o.env;
    so.env.push_back({kEngineSlotVar, std::to_string(k)});
    so.what = o.what;
    so.capture_stdout = false;
    so.capture_stderr = true;
    so.fds = {{devnull, 0}, {devnull, 1}, {ctl_seg->fd(), kEngineControlFd},
              {s.results->fd(), kEngineResultFd}, {wake, kEngineWakeFd}, {area->fd(), kEngineAreaFd}};
    s.proc = std::make_unique<Process>(Process::Spawn(so));
    if (s.started_once) ++s.restarts;
    s.started_once = true;
  }

  // Notes the end of slot k's worker; returns how it ended.
  ExitStatus Reap(uint32_t k) {
    Slot& s = slots[k];
    ExitStatus st;
    if (!s.proc) return st;
    WaitOptions wo;
    s.proc->Drain(wo);
    s.proc->Poll(&st);
    s.last_tail = s.proc->stderr_tail();
    s.proc.reset();
    ctl->SetState(k, SlotState::kStarting);
    return st;
  }

  // Reads what the workers wrote to stderr (keeping the end), so that a
  // chatty worker never blocks on a full pipe.
  void DrainAll() {
    WaitOptions wo;
    wo.stderr_tail_bytes = 8192;
    for (Slot& s : slots)
      if (s.proc) s.proc->Drain(wo);
  }

  // Polls the eventfd, the pidfds and the stderr pipes for up to `ms`.
  // Returns the slot of a worker found dead, or -1.
  int PollOnce(int ms, bool* interrupted) {
    std::vector<struct pollfd> fds;
    fds.push_back({wake, POLLIN, 0});
    for (Slot& s : slots) {
      if (!s.proc) continue;
      if (s.proc->pidfd() >= 0) fds.push_back({s.proc->pidfd(), POLLIN, 0});
      if (s.proc->stderr_fd() >= 0) fds.push_back({s.proc->stderr_fd(), POLLIN, 0});
    }
    int r = poll(fds.data(), static_cast<nfds_t>(fds.size()), ms);
    if (r < 0 && errno == EINTR && interrupted) *interrupted = true;
    if (r > 0 && (fds[0].revents & POLLIN)) DrainEventFd(wake);
    if (r > 0) DrainAll();
    for (uint32_t k = 0; k < slots.size(); ++k) {
      Slot& s = slots[k];
      if (!s.proc) continue;
      // Without a pidfd (old kernels) every round looks.
      bool maybe = s.proc->pidfd() < 0;
      for (const auto& f : fds)
        if (f.fd == s.proc->pidfd() && f.revents) maybe = true;
      if (maybe) {
        ExitStatus st;
        if (s.proc->Poll(&st)) return static_cast<int>(k);
      }
    }
    return -1;
  }

  void Ready(const std::function<void()>& check) {
    CheckUsable();
    for (uint32_t k = 0; k < slots.size(); ++k) {
      Slot& s = slots[k];
      if (s.proc) {
        ExitStatus st;
        if (s.proc->Poll(&st)) Reap(k);
      }
      if (!s.proc) Start(k);
    }
    const double deadline = Now() + o.start_timeout;
    for (;;) {
      bool all = true;
      for (uint32_t k = 0; k < slots.size(); ++k) all = all && ctl->State(k) != SlotState::kStarting;
      if (all) return;
      int dead = PollOnce(100, nullptr);
      if (dead >= 0) {
        uint32_t k = static_cast<uint32_t>(dead);
        ExitStatus st = Reap(k);
        const std::string tail = Tail(slots[k].last_tail);
        throw Error(ErrorKind::kSystem,
                    fmt::format("start {}: it {} before it was ready{}{}", Name(k), st.Describe(),
                                tail.empty() ? "" : "; it said:\n", tail));
      }
      if (Now() > deadline) {
        for (uint32_t k = 0; k < slots.size(); ++k)
          if (ctl->State(k) == SlotState::kStarting && slots[k].proc) Reap(k);
        throw Error(ErrorKind::kSystem,
                    fmt::format("start the engine's workers: not ready after {:.0f} s", o.start_timeout));
      }
      if (check) check();
    }
  }

  EngineStatus Wait(const std::function<bool()>& over, const std::function<bool(uint32_t)>& involved,
                    double timeout) {
    CheckUsable();
    const double deadline = Now() + std::max(0.0, timeout);
    EngineStatus out;
    for (;;) {
      if (over()) {
        out.kind = EngineStatus::kDone;
        return out;
      }
      const double left = deadline - Now();
      bool interrupted = false;
      int dead = PollOnce(left <= 0 ? 0 : static_cast<int>(left * 1000) + 1, &interrupted);
      if (dead >= 0) {
        const uint32_t k = static_cast<uint32_t>(dead);
        const bool mattered = involved(k);
        ExitStatus st = Reap(k);
        if (!mattered) continue;  // not in this call: started again by Ready()
        out.kind = EngineStatus::kDied;
        out.slot = k;
        out.exit = st;
        out.stderr_tail = Tail(slots[k].last_tail);
        return out;
      }
      if (over()) {
        out.kind = EngineStatus::kDone;
        return out;
      }
      if (interrupted || Now() >= deadline) return out;  // kRunning
    }
  }

  int Interrupt(const std::function<bool(uint32_t)>& busy, double grace) {
    if (closed || getpid() != owner) return 0;
    for (uint32_t k = 0; k < slots.size(); ++k)
      if (slots[k].proc && busy(k)) slots[k].proc->Kill(SIGINT);
    const double deadline = Now() + grace;
    for (;;) {
      bool busy_alive = false;
      for (uint32_t k = 0; k < slots.size(); ++k) busy_alive = busy_alive || (slots[k].proc && busy(k));
      if (!busy_alive || Now() >= deadline) break;
      int dead = PollOnce(static_cast<int>(std::max(0.0, deadline - Now()) * 1000) + 1, nullptr);
      if (dead >= 0) Reap(static_cast<uint32_t>(dead));
    }
    int killed = 0;
    for (uint32_t k = 0; k < slots.size(); ++k) {
      if (slots[k].proc && busy(k)) {
        slots[k].proc->Kill(SIGKILL);
        Reap(k);
        ++killed;
      }
    }
    return killed;
  }
};

Engine::Engine(EngineOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Engine::~Engine() = default;

void Engine::Ready(const std::function<void()>& check) { impl_->Ready(check); }

uint32_t Engine::Post(const std::string& call_name, int wake) {
  impl_->CheckUsable();
  return impl_->ctl->Post(call_name, wake);
}

void Engine::WakeAll() {
  impl_->CheckUsable();
  impl_->ctl->WakeAll();
}

EngineStatus Engine::Wait(const std::function<bool()>& over, const std::function<bool(uint32_t)>& involved,
                          double timeout_seconds) {
  return impl_->Wait(over, involved, timeout_seconds);
}

int Engine::Interrupt(const std::function<bool(uint32_t)>& busy, double grace_seconds) {
  return impl_->Interrupt(busy, grace_seconds);
}

uint32_t Engine::workers() const { return static_cast<uint32_t>(impl_->slots.size()); }

const std::string& Engine::segment_dir() const { return impl_->o.segment_dir; }

Control& Engine::control() { return *impl_->ctl; }

const Segment& Engine::Results(uint32_t k) const { return *impl_->slots.at(k).results; }

const Segment& Engine::Area() const { return *impl_->area; }

void Engine::TrimResults(uint32_t k, uint64_t keep_bytes) {
  const Segment& s = *impl_->slots.at(k).results;
  if (s.Size() > keep_bytes && ftruncate(s.fd(), 0) != 0)
    throw SystemError("trim", s.name(), "ftruncate", errno);
}

std::vector<pid_t> Engine::Pids() const {
  std::vector<pid_t> out;
  for (const Slot& s : impl_->slots) out.push_back(s.proc ? s.proc->pid() : 0);
  return out;
}

std::vector<uint64_t> Engine::Restarts() const {
  std::vector<uint64_t> out;
  for (const Slot& s : impl_->slots) out.push_back(s.restarts);
  return out;
}

void Engine::Close() { impl_->Close(); }
bool Engine::closed() const { return impl_->closed; }

// ---- the worker's side ----------------------------------------------------------

EngineWorker EngineWorker::FromEnvironment() {
  const char* slot = getenv(kEngineSlotVar);
  if (!slot || !*slot)
    throw Error(ErrorKind::kProtocol, fmt::format("not started by a pyrmap engine ({} is not set)", kEngineSlotVar));
  char* end = nullptr;
  unsigned long k = std::strtoul(slot, &end, 10);
  if (*end != '\0') throw Error(ErrorKind::kProtocol, fmt::format("{}='{}' is not a number", kEngineSlotVar, slot));
  // The descriptor stays ours (duplicated: the Segment closes its copy).
  int fd = fcntl(kEngineControlFd, F_DUPFD_CLOEXEC, 10);
  if (fd < 0) throw SystemError("attach to the engine's", "control block", "fcntl", errno);
  fcntl(kEngineResultFd, F_SETFD, FD_CLOEXEC);
  fcntl(kEngineWakeFd, F_SETFD, FD_CLOEXEC);
  fcntl(kEngineAreaFd, F_SETFD, FD_CLOEXEC);
  Segment seg = Segment::Adopt(fd, "engine control block");
  EngineWorker w;
  w.control_ = std::make_shared<Control>(Control::Attach(seg));
  if (k >= w.control_->workers())
    throw Error(ErrorKind::kProtocol, fmt::format("{}={} but the engine has {} workers", kEngineSlotVar, k,
                                                  w.control_->workers()));
  w.slot_ = static_cast<uint32_t>(k);
  w.seq_ = w.control_->Seq();
  w.control_->SetPid(w.slot_, getpid());
  // Whatever job number is current now is not for this worker.
  w.control_->Finish(w.slot_, w.seq_);
  w.Wake();
  return w;
}

bool EngineWorker::NextJob(std::string* call_name) {
  call_name->clear();
  uint32_t now = control_->WaitForJob(seq_, -1);
  if (control_->Stopping()) return false;
  if (now == seq_) return true;  // a signal: wait again
  control_->SetState(slot_, SlotState::kBusy);
  // The newest job (a worker that woke late skips the ones it missed).
  seq_ = control_->ReadJob(call_name);
  return true;
}

void EngineWorker::Wake() {
  uint64_t one = 1;
  (void)!write(kEngineWakeFd, &one, sizeof one);
}

void EngineWorker::Finish() { control_->Finish(slot_, seq_); }

void EngineWorker::WakeOthers() const { control_->WakeAll(); }

}  // namespace pyrmap
