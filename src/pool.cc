#include "pool.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "error.h"
#include "job.h"
#include "outcome.h"
#include "pool_message.h"
#include "segment.h"
#include "spawn.h"
#include "unix_io.h"
#include "utf8.h"

namespace pyrmap {

namespace {

constexpr const char* kWorkerMain = "from pyrmap._worker import main; main()";
constexpr int kSocketFdInChild = 3;
constexpr int kAreaFdInChild = 4;
// A worker's area: inputs at [0, small), results at [small, 2 * small).
constexpr uint64_t kAreaSize = 2 * kPoolSmallBytes;
constexpr size_t kStderrTailBytes = 8192;

void CloseAll(std::vector<int>& fds) {
  for (int fd : fds)
    if (fd >= 0) close(fd);
  fds.clear();
}

// One slot of the pool: its worker process (replaced when it dies) and its
// area, which outlives the processes of the slot.
struct Worker {
  size_t index = 0;
  std::optional<Process> proc;
  int sock = -1;                 // our end of the control socket
  bool hello = false;            // the worker's greeting has arrived
  std::optional<Segment> area;   // unnamed, read-write
  std::shared_ptr<Mapping> area_map;
  WorkerInfo info;
  // The call in progress.
  bool busy = false;
  uint64_t call_id = 0;
  double sent_at = 0;
  std::string call_what;    // "script 'a.py'" (for messages)
  std::string call_stderr;  // what the worker wrote to stderr during the call
};

// The segment of the last call's large input, kept for the next one: a
// later input written into its pages costs a copy, where fresh tmpfs pages
// cost as much again to hand out and, at the end, to free (0.3 s for
// 800 MB here). Kept only when nothing uses it any more (the worker said so
// and no view of it is alive in the caller: `views` expired), only while its
// directory has room for two more of its size (the next call's input and
// result, should they go elsewhere), and for `seconds` at most: a
// thread of its own lets go of it then (and at once when the pool goes).
class KeptInput {
 public:
  explicit KeptInput(double seconds) : state_(std::make_shared<State>()), seconds_(seconds) {}
  ~KeptInput() {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->seg.reset();
    state_->stop = true;
    state_->cv.notify_all();
  }
  KeptInput(const KeptInput&) = delete;
  KeptInput& operator=(const KeptInput&) = delete;

  // Keeps `seg` (its data no longer needed) while `views` lives on in
  // nothing else.
  void Keep(Segment seg, std::weak_ptr<Mapping> views) {
    if (seconds_ <= 0) return;
    struct statvfs v;
    struct stat st;
    if (fstat(seg.fd(), &st) != 0 || fstatvfs(seg.fd(), &v) != 0 ||
        static_cast<uint64_t>(v.f_bavail) * v.f_frsize / 2 < static_cast<uint64_t>(st.st_size))
      return;
    std::optional<Segment> old;  // freed outside the lock
    std::lock_guard<std::mutex> lock(state_->mu);
    old = std::move(state_->seg);
    state_->seg.emplace(std::move(seg));
    state_->views = std::move(views);
    state_->deadline = std::chrono::steady_clock::now() +
                       std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds_));
    if (!state_->thread_started) {
      try {
        std::thread([st = state_] { Expire(st); }).detach();
        state_->thread_started = true;
      } catch (const std::system_error&) {
        state_->seg.reset();
        return;
      }
    }
    state_->cv.notify_all();
  }

  // The kept segment if nothing views it any more (else it goes now).
  std::optional<Segment> Take() {
    std::optional<Segment> seg;
    std::weak_ptr<Mapping> views;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      seg = std::move(state_->seg);
      state_->seg.reset();
      views = std::move(state_->views);
    }
    if (seg && !views.expired()) seg.reset();
    return seg;
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Segment> seg;
    std::weak_ptr<Mapping> views;
    std::chrono::steady_clock::time_point deadline;
    bool stop = false;
    bool thread_started = false;
  };

  static void Expire(std::shared_ptr<State> st) {
    std::unique_lock<std::mutex> lock(st->mu);
    while (!st->stop) {
      if (!st->seg) {
        st->cv.wait(lock);
      } else if (st->cv.wait_until(lock, st->deadline) == std::cv_status::timeout &&
                 std::chrono::steady_clock::now() >= st->deadline) {
        std::optional<Segment> old = std::move(st->seg);
        st->seg.reset();
        lock.unlock();
        old.reset();  // its pages are freed here, beside R
        lock.lock();
      }
    }
  }

  std::shared_ptr<State> state_;
  double seconds_;
};

}  // namespace

struct Pool::Impl {
  PoolOptions o;
  std::vector<Worker> workers;
  uint64_t next_call = 1;
  bool closed = false;
  KeptInput kept;

  explicit Impl(PoolOptions opts) : o(std::move(opts)), kept(o.keep_input_seconds) {
    if (o.workers < 1) throw Error(ErrorKind::kUsage, "a pool needs at least 1 worker");
    workers.resize(static_cast<size_t>(o.workers));
    for (size_t i = 0; i < workers.size(); ++i) {
      Worker& w = workers[i];
      w.index = i;
      w.area.emplace(Segment::CreateUnnamed(o.segment_dir, kAreaSize,
                                            fmt::format("pool worker {} area", i + 1)));
      w.area_map = std::make_shared<Mapping>(w.area->Map(MapMode::kReadWrite));
    }
    for (Worker& w : workers) Start(w);
  }

  ~Impl() { Close(); }

  void Close() {
    if (closed) return;
    closed = true;
    kept.Take();  // (dropped)
    for (Worker& w : workers) Stop(w);
    workers.clear();  // areas unmapped and closed: their memory goes
  }

  void CheckOpen() const {
    if (closed) throw Error(ErrorKind::kUsage, "the pool is closed");
  }

  // Starts a worker process in slot `w` (its area is reused).
  void Start(Worker& w) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
      throw SystemError("create the control socket of pool worker", std::to_string(w.index + 1),
                        "socketpair", errno);
    SpawnOptions so;
    so.argv = {o.python, "-c", kWorkerMain};
    so.what = "Python interpreter";
    so.capture_stdout = true;
    so.capture_stderr = true;
    so.fds = {{sv[1], kSocketFdInChild}, {w.area->fd(), kAreaFdInChild}};
    std::string pypath = o.package_dir;
    if (const char* old = getenv("PYTHONPATH"); old && *old)
      pypath = pypath.empty() ? old : pypath + ":" + old;
    if (!pypath.empty()) so.env.push_back({"PYTHONPATH", pypath});
    so.env.push_back({"PYRMAP_WORKER_FD", std::to_string(kSocketFdInChild)});
    so.env.push_back({"PYRMAP_AREA_FD", std::to_string(kAreaFdInChild)});
    so.env.push_back({"PYRMAP_AREA_SIZE", std::to_string(kAreaSize)});
    so.env.push_back({"PYRMAP_SEGMENT_DIR", o.segment_dir});
    for (const auto& kv : o.env) so.env.push_back(kv);
    try {
      w.proc.emplace(Process::Spawn(so));
    } catch (const Error& e) {
      close(sv[0]);
      close(sv[1]);
      if (e.kind() != ErrorKind::kSystem || e.sys_errno() == 0) throw;
      throw Error(ErrorKind::kInterpreter, e.what()).with_errno(e.sys_errno());
    }
    close(sv[1]);
    w.sock = sv[0];
    w.hello = false;
    w.busy = false;
    w.info.pid = w.proc->pid();
  }

  // Kills slot `w`'s worker with its process group, and reaps it.
  void Stop(Worker& w) {
    if (w.sock >= 0) close(w.sock);
    w.sock = -1;
    w.proc.reset();  // kills the group and reaps
    w.info.pid = 0;
    w.busy = false;
  }

  void Replace(Worker& w) {
    Stop(w);
    ++w.info.restarts;
    Start(w);
  }

  // Makes sure slot `w` has a live worker (one that died while idle is
  // replaced).
  void Ready(Worker& w) {
    if (!w.proc) {
      Start(w);
      return;
    }
    ExitStatus st;
    if (w.proc->Poll(&st)) Replace(w);
  }

  Worker* FreeWorker() {
    for (Worker& w : workers)
      if (!w.busy) return &w;
    return nullptr;
  }

  WaitOptions Relays(const RunOptions& ro, Worker& w) {
    WaitOptions wo;
    wo.on_stdout = ro.on_stdout ? ro.on_stdout : [](std::string_view s) {
      WriteAllToStderr(s);  // no relay asked: keep it visible, off stdout
    };
    auto err = ro.on_stderr ? ro.on_stderr : WriteAllToStderr;
    Worker* wp = &w;
    wo.on_stderr = [err, wp](std::string_view s) {
      wp->call_stderr.append(s);
      if (wp->call_stderr.size() > 2 * kStderrTailBytes)
        wp->call_stderr.erase(0, wp->call_stderr.size() - kStderrTailBytes);
      err(s);
    };
    return wo;
  }

  // Sends `req` to `w` (with `pass_fd` attached when >= 0).
  void Send(Worker& w, const Request& req, int pass_fd, const std::string& what) {
    std::vector<uint8_t> msg = EncodeRequest(req);
    if (msg.size() > kMaxMessageSize)
      throw Error(ErrorKind::kUsage,
                  fmt::format("the request for {} is too long ({} bytes; scripts, function names "
                              "and arguments must fit {} bytes)",
                              what, msg.size(), kMaxMessageSize));
    long n = SendWithDescriptor(w.sock, msg.data(), msg.size(), pass_fd);
    w.busy = true;
    w.call_id = req.call_id;
    w.sent_at = MonotonicSeconds();
    w.call_what = what;
    w.call_stderr.clear();
    if (n < 0 && errno != EPIPE && errno != ECONNRESET)
      throw SystemError("send a request to pool worker", std::to_string(w.index + 1), "sendmsg", errno);
    // A worker that is gone is noticed while waiting for its reply.
  }

  // Reads one message from `w`. Returns false on end-of-file (the worker
  // is gone). `fds` receives the descriptors passed with it.
  bool Receive(Worker& w, std::vector<uint8_t>* msg, std::vector<int>* fds) {
    msg->resize(kMaxMessageSize);
    bool truncated = false;
    long n = ReceiveWithDescriptors(w.sock, msg->data(), msg->size(), fds, &truncated);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      msg->clear();
      return true;
    }
    if (n < 0) {
      if (errno == ECONNRESET) return false;
      throw SystemError("read a reply from pool worker", std::to_string(w.index + 1), "recvmsg", errno);
    }
    if (n == 0) return false;
    if (truncated)
      throw Error(ErrorKind::kProtocol,
                  fmt::format("a reply from pool worker {} exceeds {} bytes", w.index + 1, kMaxMessageSize));
    msg->resize(static_cast<size_t>(n));
    return true;
  }

  // The error for a call whose worker died before replying; the worker is
  // replaced. `what` names the script(s).
  Error Died(Worker& w, const RunOptions& ro, WaitOptions& wo) {
    ExitStatus st;
    for (int i = 0; i < 1000 && !w.proc->Poll(&st); ++i) usleep(1000);
    if (!w.proc->Poll(&st)) {
      w.proc->Kill(SIGKILL);
      while (!w.proc->Poll(&st)) usleep(1000);
    }
    w.proc->Drain(wo);
    std::string tail = ToValidUtf8(TailLines(w.call_stderr, 20));
    std::string msg;
    ErrorKind kind = ErrorKind::kScript;
    if (!w.hello) {
      kind = ErrorKind::kInterpreter;
      if (w.call_stderr.find("No module named 'pyrmap'") != std::string::npos)
        msg = fmt::format("the Python interpreter '{}' cannot import the pyrmap package{}: install it "
                          "(pip install ./python) or set PYRMAP_PACKAGE_DIR",
                          o.python, o.package_dir.empty() ? "" : " from '" + o.package_dir + "'");
      else
        msg = fmt::format("the Python interpreter '{}' {} before pyrmap's worker started (running "
                          "{}): is it a Python 3 interpreter?",
                          o.python, st.Describe(), w.call_what);
    } else {
      msg = fmt::format("{} {} in pool worker {} (pid {}) without replying; the worker was "
                        "replaced",
                        w.call_what, st.Describe(), w.index + 1, w.info.pid);
    }
    if (!tail.empty()) msg += "\nstderr:\n" + tail;
    (void)ro;
    Error e(kind, msg);
    e.with_status(st.exited ? st.code : -1, st.exited ? -1 : st.signal);
    Replace(w);
    return e;
  }

  // Waits until one of the busy workers `waiting` replies (or dies, times
  // out, or the caller is interrupted). Returns that worker, its reply and
  // the descriptors passed with it. A worker that failed without a reply is
  // replaced and its error thrown; so is one killed for its timeout or for
  // an interrupt (every waiting worker then).
  Worker* WaitReply(const std::vector<Worker*>& waiting, const RunOptions& ro, Reply* reply,
                    std::vector<int>* fds) {
    std::vector<uint8_t> msg;
    std::vector<struct pollfd> pfds;
    std::vector<Worker*> owner;  // the worker of each entry of pfds
    for (;;) {
      // Deadlines first: a worker past its timeout is killed and replaced.
      const double now = MonotonicSeconds();
      int wait_ms = 100;
      for (Worker* w : waiting) {
        if (!w->busy || ro.timeout_seconds <= 0) continue;
        double left = w->sent_at + ro.timeout_seconds - now;
        if (left <= 0) {
          Error e(ErrorKind::kTimeout,
                  fmt::format("{} timed out after {:g} s in pool worker {} and was killed; the "
                              "worker was replaced",
                              w->call_what, ro.timeout_seconds, w->index + 1));
          e.with_status(-1, SIGKILL);
          Replace(*w);
          throw e;
        }
        wait_ms = std::min(wait_ms, static_cast<int>(std::min(left, 1.0) * 1000) + 1);
      }
      pfds.clear();
      owner.clear();
      for (Worker* w : waiting) {
        if (!w->busy) continue;
        for (int fd : {w->sock, w->proc->pidfd(), w->proc->stdout_fd(), w->proc->stderr_fd()}) {
          if (fd < 0) continue;
          pfds.push_back({fd, POLLIN, 0});
          owner.push_back(w);
        }
        if (w->proc->pidfd() < 0) wait_ms = std::min(wait_ms, 10);
      }
      if (ro.wake_fd >= 0) {
        pfds.push_back({ro.wake_fd, POLLIN, 0});
        owner.push_back(nullptr);
      }
      int r = poll(pfds.data(), pfds.size(), wait_ms);
      if (r < 0 && errno != EINTR) throw SystemError("wait for", "pool workers", "poll", errno);
      if (ro.check_interrupt) {
        try {
          ro.check_interrupt();
        } catch (...) {
          // The calls in progress are abandoned: their workers go, and are
          // replaced, so the pool stays usable.
          for (Worker* w : waiting)
            if (w->busy) Replace(*w);
          throw;
        }
      }
      if (r <= 0) continue;
      for (size_t i = 0; i < pfds.size(); ++i) {
        Worker* w = owner[i];
        if (!w || !w->busy || !(pfds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        WaitOptions wo = Relays(ro, *w);
        const int fd = pfds[i].fd;
        if (fd == w->proc->stdout_fd() || fd == w->proc->stderr_fd()) {
          w->proc->Drain(wo);
          continue;
        }
        if (fd == w->sock) {
          // Everything that arrived: a greeting, then the reply.
          for (;;) {
            fds->clear();
            if (!Receive(*w, &msg, fds)) {
              CloseAll(*fds);
              throw Died(*w, ro, wo);
            }
            if (msg.empty()) break;
            if (msg.size() == 1 && msg[0] == 'h') {
              w->hello = true;
              continue;
            }
            try {
              *reply = DecodeReply(msg.data(), msg.size(), fmt::format("pool worker {}", w->index + 1));
              if (reply->call_id != w->call_id)
                throw Error(ErrorKind::kProtocol,
                            fmt::format("pool worker {} answered call {} instead of {}{}", w->index + 1,
                                        reply->call_id, w->call_id,
                                        reply->ok ? "" : ": " + ToValidUtf8(reply->error_text)));
            } catch (const Error&) {
              CloseAll(*fds);
              Replace(*w);
              throw;
            }
            w->proc->Drain(wo);  // what it printed before replying
            w->busy = false;
            ++w->info.calls;
            w->info.scripts = reply->scripts_loaded;
            return w;
          }
          continue;
        }
        // Its pidfd: the worker exited without replying.
        if (w->proc->Poll(nullptr)) throw Died(*w, ro, wo);
      }
    }
  }

  // The results of `reply` from worker `w` (the request's result region
  // was [roff, roff + rcap) of its area).
  struct Staged;
  std::vector<Result> Collect(Worker& w, const Reply& reply, std::vector<int>& fds,
                              const std::vector<Script>& scripts, const RunOptions& ro, uint64_t roff,
                              uint64_t rcap, bool keep_intermediate, Staged& staged) {
    std::shared_ptr<Mapping> input_map;
    struct Owned {
      std::vector<int>& fds;
      ~Owned() { CloseAll(fds); }
    } owned{fds};
    const std::string where = fmt::format("pool worker {}", w.index + 1);
    std::vector<std::string> warnings;
    for (const std::string& t : reply.warnings) warnings.push_back(ToValidUtf8(t));
    if (!reply.ok) {
      const Script& s = scripts.at(std::min<size_t>(reply.failed_script, scripts.size() - 1));
      const std::string who = fmt::format("script '{}'", s.Display());
      const std::string type = ToValidUtf8(reply.error_type);
      const std::string text = ToValidUtf8(reply.error_text);
      if (type == "pyrmap.NumpyMissing") throw Error(ErrorKind::kInterpreter, text).with_script(s.Display());
      // The message names the script and what is wrong with it (no such
      // function, or none to call): said once, without the traceback.
      if (type == "pyrmap.ScriptNotLoaded" || type == "pyrmap.FunctionNotFound")
        throw Error(ErrorKind::kUsage, PythonMessage(type, text)).with_script(s.Display());
      std::string last = TailLines(text, 1);
      throw Error(ErrorKind::kScript,
                  fmt::format("{} raised {}\n{}", who, last.empty() ? type : last, TailLines(text, 12)))
          .with_script(s.Display())
          .with_python(type, text)
          .with_warnings(warnings);
    }
    const size_t expected = keep_intermediate ? scripts.size() : 1;
    if (reply.results.size() != expected)
      throw Error(ErrorKind::kProtocol,
                  fmt::format("{} sent {} results for {} expected", where, reply.results.size(), expected));
    std::vector<Result> out;
    for (size_t i = 0; i < reply.results.size(); ++i) {
      const ReplyResult& rr = reply.results[i];
      Result r;
      r.script = keep_intermediate ? scripts[i] : scripts.back();
      r.desc = rr.desc;
      r.kind = rr.kind;
      if (rr.location == ReplyLocation::kArea) {
        uint64_t end;
        if (rr.desc.offset < roff || __builtin_add_overflow(rr.desc.offset, rr.desc.nbytes, &end) ||
            end > roff + rcap)
          throw Error(ErrorKind::kProtocol,
                      fmt::format("{}: result {} at offset {} ({} bytes) is outside the area's result "
                                  "region",
                                  where, rr.desc.Describe(), rr.desc.offset, rr.desc.nbytes));
        if (rr.desc.nbytes > 0) {
          r.mapping = w.area_map;
          r.offset = rr.desc.offset;
          r.transient = true;
        }
      } else {
        if (rr.fd_index >= fds.size())
          throw Error(ErrorKind::kProtocol, fmt::format("{}: result descriptor {} was not sent", where,
                                                        rr.fd_index));
        int fd = fds[rr.fd_index];
        fds[rr.fd_index] = -1;
        Segment seg = Segment::Adopt(fd, fmt::format("the result of {}", r.script.Display()));
        CheckPayloadFits(rr.desc, seg.Size(), seg.name());
        if (rr.desc.nbytes > 0)
          r.mapping = std::make_shared<Mapping>(seg.Map(ro.result_map, rr.desc.offset, rr.desc.nbytes));
        r.offset = 0;
      }
      if (r.kind == kKindTable) {
        if (!r.mapping) throw Error(ErrorKind::kProtocol, fmt::format("{}: an empty table block", where));
        // A result may refer to the input's block only when that came in a
        // passed segment (the worker maps it; area inputs are copied).
        const bool refs = (ResultFlags(ro) & kFlagInputRefs) && staged.input->kind == kKindTable &&
                          staged.location == InputLocation::kDescriptor;
        DecodeResultTable(r, fmt::format("script '{}' in {}", r.script.Display(), where),
                          refs ? std::optional<uint64_t>(staged.desc.nbytes) : std::nullopt);
        if (RefersToInput(*r.table)) {
          if (!input_map)
            input_map = std::make_shared<Mapping>(
                staged.seg->Map(ro.result_map, staged.desc.offset, staged.desc.nbytes));
          r.input_mapping = input_map;
          r.input_offset = 0;
          staged.views = input_map;
        }
      }
      out.push_back(std::move(r));
    }
    if (!out.empty()) out.back().warnings = std::move(warnings);
    return out;
  }

  // The input as it is handed to workers: in each one's area (small), or
  // in a segment passed by descriptor.
  struct Staged {
    InputLocation location = InputLocation::kArea;
    ArrayDesc desc;
    std::optional<Segment> seg;  // the segment passed (read-only unless `own`), if any
    // The segment was made for this call and is its one script's alone: it
    // is passed writable and the worker may write the result over it, as
    // one-shot runs do (flag bit 2), instead of filling fresh pages.
    bool own = false;
    const Input* input = nullptr;
    // The writable segment this call made for its input (when not `own`:
    // `seg` is a read-only descriptor of it), kept for the next call's input
    // when the worker let go of it (KeptInput)...
    std::optional<Segment> made;
    bool released = false;
    // ... and no view of it (input_map in Collect) is alive.
    std::weak_ptr<Mapping> views;
  };

  static void CheckTrampoline(void* p) {
    auto* ro = static_cast<const RunOptions*>(p);
    if (ro->check_interrupt) ro->check_interrupt();
  }

  Staged Stage(const Input& input, const RunOptions& ro, bool sole) {
    Staged s;
    s.input = &input;
    s.desc = input.desc;
    if (!input.segment.empty()) {
      s.location = InputLocation::kDescriptor;
      s.seg.emplace(Segment::Open(SegmentDir::Open(input.segment_dir.empty() ? o.segment_dir
                                                                              : input.segment_dir),
                                  input.segment, false));
      return s;
    }
    if (!input.fill && input.desc.nbytes > 0)
      throw Error(ErrorKind::kUsage, "input has no data and no segment");
    s.desc.offset = 0;
    if (input.desc.nbytes <= kPoolSmallBytes) return s;  // into each area, at its use
    s.location = InputLocation::kDescriptor;
    std::optional<Segment> rw = kept.Take();
    if (rw)
      rw->ResizeForWrites(input.desc.nbytes);  // filled whole just below
    else
      rw.emplace(Segment::CreateUnnamed(o.segment_dir, input.desc.nbytes, "the pool call's input",
                                        Reservation::kByWrites));
    input.fill(*rw, &CheckTrampoline, const_cast<RunOptions*>(&ro));
    s.own = sole && input.kind == kKindArray;
    if (s.own) {
      s.seg.emplace(std::move(*rw));
    } else {
      s.seg.emplace(Segment::Adopt(rw->ReopenReadOnly(), "the pool call's input"));
      s.made.emplace(std::move(*rw));
    }
    return s;
  }

  // Puts a small staged input into `w`'s area.
  void Place(const Staged& s, Worker& w, const RunOptions& ro) {
    if (s.location != InputLocation::kArea || s.desc.nbytes == 0) return;
    s.input->fill(*w.area, &CheckTrampoline, const_cast<RunOptions*>(&ro));
  }

  Request MakeRequest(const Staged& s, std::vector<Script> scripts, bool keep,
                      const RunOptions& ro) {
    Request req;
    req.call_id = next_call++;
    req.flags = ResultFlags(ro) | (s.own ? kFlagInPlace : 0u);
    req.input_location = s.location;
    req.input = s.desc;
    req.input_kind = s.input->kind;
    req.scripts = std::move(scripts);
    req.keep_intermediate = keep;
    req.args = ro.script_args;
    req.result_offset = kPoolSmallBytes;
    req.result_capacity = kAreaSize - kPoolSmallBytes;
    return req;
  }

  static std::string Describe(const std::vector<Script>& scripts) {
    if (scripts.size() == 1) return fmt::format("script '{}'", scripts[0].Display());
    std::string list;
    for (const Script& s : scripts) list += (list.empty() ? "'" : ", '") + s.Display() + "'";
    return fmt::format("pipeline {}", list);
  }

  // Tells ro.on_event about call k of `calls` (one script of a Shared
  // call, or a whole pipeline, whose scripts are indices 0..n-1).
  static void Tell(const RunOptions& ro, RunEvent::Kind kind, const std::vector<std::vector<Script>>& calls,
                   size_t k, const ArrayDesc* input, const ArrayDesc* result, double seconds) {
    if (!ro.on_event) return;
    RunEvent e;
    e.kind = kind;
    const bool pipeline = calls.size() == 1 && calls[0].size() > 1;
    e.first = pipeline ? 0 : k;
    e.last = pipeline ? calls[0].size() - 1 : k;
    e.count = pipeline ? calls[0].size() : calls.size();
    e.what = Describe(calls[k]);
    if (input) e.input = *input;
    if (result) e.result = *result;
    e.seconds = seconds;
    ro.on_event(e);
  }

  // Runs each entry of `calls` (a list of scripts: one script, or a
  // pipeline) on a worker of its own, up to one per worker at once.
  std::vector<std::vector<Result>> RunCalls(const std::vector<std::vector<Script>>& calls,
                                            const Input& input, const RunOptions& ro, bool keep) {
    CheckOpen();
    for (const auto& c : calls)
      for (const Script& s : c) {
        struct stat st;
        if (stat(s.path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || access(s.path.c_str(), R_OK) != 0) {
          int err = errno;
          throw Error(ErrorKind::kNotFound,
                      fmt::format("script '{}' not found or not a readable file ({})", s.path,
                                  ErrnoText(err ? err : ENOENT)))
              .with_script(s.Display());
        }
      }
    Staged staged = Stage(input, ro, calls.size() == 1);
    std::vector<std::vector<Result>> results(calls.size());
    std::vector<double> started_at(calls.size(), 0);
    std::vector<size_t> call_of(workers.size(), 0);
    std::vector<Worker*> running;
    size_t next = 0, done = 0;
    struct Abandon {
      Impl* self;
      std::vector<Worker*>& running;
      ~Abandon() {
        // On an error, calls still in progress are abandoned: their workers
        // are replaced, so that a late reply never meets a new call.
        for (Worker* w : running)
          if (w->busy) self->Replace(*w);
      }
    } abandon{this, running};
    while (done < calls.size()) {
      while (next < calls.size()) {
        Worker* w = FreeWorker();
        if (!w) break;
        Ready(*w);
        Place(staged, *w, ro);
        Request req = MakeRequest(staged, calls[next], keep, ro);
        Send(*w, req, staged.seg ? staged.seg->fd() : -1, Describe(calls[next]));
        started_at[next] = MonotonicSeconds();
        Tell(ro, RunEvent::Kind::kStarted, calls, next, &staged.desc, nullptr, 0);
        call_of[w->index] = next;
        running.push_back(w);
        ++next;
      }
      Reply reply;
      std::vector<int> fds;
      Worker* w = WaitReply(running, ro, &reply, &fds);
      running.erase(std::remove(running.begin(), running.end(), w), running.end());
      size_t k = call_of[w->index];
      staged.released = calls.size() == 1 && reply.ok && (reply.flags & kReplyInputReleased);
      try {
        results[k] = Collect(*w, reply, fds, calls[k], ro, kPoolSmallBytes,
                             kAreaSize - kPoolSmallBytes, keep, staged);
      } catch (...) {
        Tell(ro, RunEvent::Kind::kFailed, calls, k, nullptr, nullptr, MonotonicSeconds() - started_at[k]);
        throw;
      }
      Tell(ro, RunEvent::Kind::kFinished, calls, k, nullptr, &results[k].back().desc,
           MonotonicSeconds() - started_at[k]);
      // A result in this worker's area must be copied before the worker's
      // next call; a Shared call with more scripts than workers would reuse
      // it, so such results are copied into memory of their own here.
      if (next < calls.size())
        for (Result& r : results[k]) Detach(r);
      ++done;
    }
    if (staged.released) {
      std::optional<Segment>& input_seg = staged.own ? staged.seg : staged.made;
      if (input_seg) kept.Keep(std::move(*input_seg), staged.views);
    }
    return results;
  }

  // Gives a transient result memory of its own (an unnamed segment).
  void Detach(Result& r) {
    if (!r.transient) return;
    Segment seg = Segment::CreateUnnamed(o.segment_dir, r.desc.nbytes, "a pool result");
    seg.Write(0, r.data(), r.desc.nbytes);
    r.mapping = std::make_shared<Mapping>(seg.Map(MapMode::kReadOnly, 0, r.desc.nbytes));
    r.offset = 0;
    r.transient = false;  // (a table's directory stays as decoded: its offsets are the block's)
  }
};

Pool::Pool(PoolOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Pool::~Pool() = default;

Result Pool::Run(const Script& script, const Input& input, const RunOptions& options) {
  return impl_->RunCalls({{script}}, input, options, false).at(0).at(0);
}

std::vector<Result> Pool::Shared(const std::vector<Script>& scripts, const Input& input,
                                 const RunOptions& options) {
  if (scripts.empty()) throw Error(ErrorKind::kUsage, "no script given");
  std::vector<std::vector<Script>> calls;
  for (const Script& s : scripts) calls.push_back({s});
  std::vector<Result> out;
  for (auto& r : impl_->RunCalls(calls, input, options, false)) out.push_back(std::move(r.at(0)));
  return out;
}

std::vector<Result> Pool::Pipeline(const std::vector<Script>& scripts, const Input& input,
                                   const RunOptions& options, bool keep_intermediate) {
  if (scripts.empty()) throw Error(ErrorKind::kUsage, "no script given");
  return impl_->RunCalls({scripts}, input, options, keep_intermediate).at(0);
}

void Pool::Close() { impl_->Close(); }
bool Pool::closed() const { return impl_->closed; }
const PoolOptions& Pool::options() const { return impl_->o; }

std::vector<WorkerInfo> Pool::Workers() const {
  std::vector<WorkerInfo> out;
  for (const Worker& w : impl_->workers) out.push_back(w.info);
  return out;
}

}  // namespace pyrmap
