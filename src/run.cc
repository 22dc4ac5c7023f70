#include "run.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "error.h"
#include "spawn.h"

namespace pyrmap {

namespace {

constexpr const char* kBootstrap = "from pyrmap._bootstrap import main; main()";
constexpr int kReadyFdInChild = 3;
// Results are reserved ahead (see Runner::StartReserving) for inputs of at
// least this size, when /dev/shm keeps this much room besides.
constexpr uint64_t kReserveMinBytes = uint64_t{16} << 20;
constexpr uint64_t kReserveHeadroom = uint64_t{256} << 20;
// Bytes of a meta segment read back after a script ends (a newer minor
// version may use a larger header; 4096 is all version 1 needs).
constexpr size_t kMetaReadLimit = 65536;

double Now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

void WriteAllToStderr(std::string_view s) {
  while (!s.empty()) {
    ssize_t n = write(2, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    s.remove_prefix(static_cast<size_t>(n));
  }
}

// Last `max_lines` non-empty lines of `text`, for error messages.
std::string Tail(const std::string& text, size_t max_lines) {
  size_t end = text.find_last_not_of(" \n\r\t");
  if (end == std::string::npos) return "";
  size_t pos = end + 1;
  size_t lines = 0;
  while (pos > 0 && lines < max_lines) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) {
      pos = 0;
      break;
    }
    pos = nl;
    ++lines;
  }
  size_t start = pos == 0 ? 0 : pos + 1;
  return text.substr(start, end + 1 - start);
}

void CheckScriptReadable(const Script& s) {
  struct stat st;
  if (stat(s.path.c_str(), &st) != 0) {
    int err = errno;
    throw Error(ErrorKind::kNotFound,
                fmt::format("script '{}' not found ({})", s.path, ErrnoText(err)))
        .with_script(s.Display())
        .with_errno(err);
  }
  if (!S_ISREG(st.st_mode))
    throw Error(ErrorKind::kNotFound,
                fmt::format("script '{}' is not a regular file", s.path))
        .with_script(s.Display());
  if (access(s.path.c_str(), R_OK) != 0) {
    int err = errno;
    throw Error(ErrorKind::kNotFound,
                fmt::format("script '{}' cannot be read ({})", s.path, ErrnoText(err)))
        .with_script(s.Display())
        .with_errno(err);
  }
}

// One script's process and segments.
struct Job {
  Script script;
  std::string meta_name;
  std::string res_name;
  std::optional<Segment> meta;
  std::shared_ptr<Segment> res;    // read-write: reserved, then read back
  std::shared_ptr<Segment> input;  // the input's segment, kept while the
                                   // result may be written into it
  bool in_place = false;           // the job may write its result there
  uint32_t result_location = kResultInResultSegment;
  std::optional<Process> proc;
  int ready_fd = -1;  // our end of the ready socket; closing it is EOF
  bool released = false;
  double released_at = 0;
  bool exited = false;
  bool timed_out = false;
  ExitStatus status;

  ~Job() {
    if (ready_fd >= 0) close(ready_fd);
  }
};

// Runs jobs of one call. Owns the call's segment names (removed when the
// Runner is destroyed) and its processes (killed and reaped likewise).
class Runner {
 public:
  explicit Runner(const RunOptions& o)
      : o_(o), prefix_(NewCallPrefix()), dir_(SegmentDir::Choose(o.segment_dir)), guard_(dir_) {
    if (o_.jobs < 1) throw Error(ErrorKind::kUsage, "jobs must be at least 1");
    wait_.timeout_seconds = 0;
    wait_.on_stdout = o_.on_stdout;
    wait_.on_stderr = o_.on_stderr ? o_.on_stderr : WriteAllToStderr;
    wait_.check_interrupt = o_.check_interrupt;
    wait_.wake_fd = o_.wake_fd;
  }

  // The processes are killed by ~Job (via ~Process) first, then names go.
  ~Runner() {
    JoinReserving();
    jobs_.clear();
    guard_.RemoveAll();
  }

  // Creates the data segment (space reserved, not yet filled), or opens the
  // segment the input names (a registry page: read-only, never ours).
  // Returns its name.
  std::string PrepareData(const Input& input) {
    if (!input.segment.empty()) {
      SegmentDir dir = input.segment_dir.empty() ? dir_ : SegmentDir::Open(input.segment_dir);
      data_ = std::make_shared<Segment>(Segment::Open(dir, input.segment, false));
      return input.segment;
    }
    if (!input.fill && input.desc.nbytes > 0)
      throw Error(ErrorKind::kUsage, "input has no data and no segment");
    std::string name = prefix_ + "-data";
    data_ = std::make_shared<Segment>(Segment::Create(dir_, name, input.desc.nbytes));
    guard_.Add(name);
    data_owned_ = true;
    return name;
  }

  // Writes the input, then removes the data segment's name: the scripts get
  // it as a descriptor with their ready byte, and its memory goes when the
  // last holder lets go of it, not at the end of the call.
  void FillData(const Input& input) {
    if (!data_owned_) return;
    if (input.fill) input.fill(*data_, &Runner::CheckTrampoline, this);
    Segment::Remove(dir_, data_->name());
  }

  // The data segment, for Release(); whether it is this call's own (a
  // script may then write its result into it).
  std::shared_ptr<Segment> Data() const { return data_; }
  bool DataOwned() const { return data_owned_; }

  // Forgets the data segment once every script that reads it holds it.
  void DropData() { data_.reset(); }

  // Reserves the result segments of `jobs` to `nbytes` each in a thread,
  // while the caller writes the input. Most results are the input's size,
  // and reserving tmpfs pages is most of what writing them costs, so this
  // takes that work off the script's critical path. The script still sizes
  // its result exactly (it truncates what it does not need). Skipped for
  // small inputs and when /dev/shm could not hold it with room to spare.
  void StartReserving(const std::vector<Job*>& jobs, uint64_t nbytes) {
    if (!o_.reserve_results || nbytes < kReserveMinBytes || jobs.empty()) return;
    struct statvfs v;
    if (fstatvfs(dir_.fd(), &v) != 0) return;
    const uint64_t free_bytes = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
    if (free_bytes < nbytes * jobs.size() + kReserveHeadroom) return;
    std::vector<int> fds;
    for (Job* j : jobs)
      if (!j->in_place) fds.push_back(j->res->fd());
    if (fds.empty()) return;
    reserver_ = std::thread([fds, nbytes] {
      for (int fd : fds) posix_fallocate(fd, 0, static_cast<off_t>(nbytes));  // failure: nothing reserved
    });
  }

  // Must be called before the scripts are released: they size their result
  // segments themselves and must not race a reservation.
  void JoinReserving() {
    if (reserver_.joinable()) reserver_.join();
  }

  // Starts the interpreter for `script`, whose input will be segment
  // `data_name` (handed over by Release()). `desc` is the input's geometry,
  // or nullptr when it is not known yet (a pipeline stage started early);
  // then Release() writes it.
  Job* Start(const Script& script, const std::string& data_name, const ArrayDesc* desc) {
    auto job = std::make_unique<Job>();
    size_t k = jobs_.size();
    job->script = script;
    job->meta_name = fmt::format("{}-meta-{}", prefix_, k);
    job->res_name = fmt::format("{}-res-{}", prefix_, k);
    job->meta.emplace(Segment::Create(dir_, job->meta_name, kHeaderSize));
    guard_.Add(job->meta_name);
    job->res = std::make_shared<Segment>(Segment::Create(dir_, job->res_name, 0));
    guard_.Add(job->res_name);

    ExchangeHeader h;
    h.state = State::kInputReady;
    h.flags = Flags();
    h.owner_pid = getpid();
    if (desc) h.input = *desc;
    uint8_t buf[kHeaderSize];
    EncodeHeader(h, buf, sizeof buf);
    job->meta->Write(0, buf, sizeof buf);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      throw SystemError("create ready socket for script", script.Display(),
                        "socketpair", errno);
    job->ready_fd = sv[0];
    SpawnOptions so;
    so.argv = PythonCommand(o_, script);
    so.what = "Python interpreter";
    so.capture_stdout = static_cast<bool>(o_.on_stdout);
    so.capture_stderr = true;
    so.fds.push_back({sv[1], kReadyFdInChild});
    std::string pypath = o_.package_dir;
    if (const char* old = getenv("PYTHONPATH"); old && *old)
      pypath = pypath.empty() ? old : pypath + ":" + old;
    if (!pypath.empty()) so.env.push_back({"PYTHONPATH", pypath});
    so.env.push_back({"PYRMAP_SEGMENT_DIR", dir_.path()});
    so.env.push_back({"PYRMAP_META", job->meta_name});
    so.env.push_back({"PYRMAP_DATA", data_name});
    so.env.push_back({"PYRMAP_RESULT", job->res_name});
    so.env.push_back({"PYRMAP_READY_FD", std::to_string(kReadyFdInChild)});
    so.env.push_back({"PYRMAP_FUNCTION", script.function});
    for (const auto& kv : o_.env) so.env.push_back(kv);
    try {
      job->proc.emplace(Process::Spawn(so));
    } catch (const Error& e) {
      close(sv[1]);
      if (e.kind() != ErrorKind::kSystem || e.sys_errno() == 0) throw;
      throw Error(ErrorKind::kInterpreter, e.what()).with_errno(e.sys_errno());
    } catch (...) {
      close(sv[1]);
      throw;
    }
    close(sv[1]);
    jobs_.push_back(std::move(job));
    return jobs_.back().get();
  }

  // Gives `job` its input: writes the descriptor if it was not known at
  // Start, then sends the ready byte with a descriptor of `input` (the
  // segment holding it). With `in_place`, that descriptor is writable and
  // the script may put its result into the segment (header flag bit 2):
  // only for a segment of this call that nobody else reads afterwards.
  void Release(Job* job, const ArrayDesc* desc, const std::shared_ptr<Segment>& input,
               bool in_place) {
    if (desc && !job->exited) {
      uint8_t buf[kArrayDescSize];
      EncodeArrayDesc(*desc, buf);
      job->meta->Write(off::kInput, buf, sizeof buf);
    }
    int fd = -1, read_only = -1;
    if (input) {
      if (in_place) {
        fd = input->fd();
        job->input = input;
        job->in_place = true;
        uint32_t flags = Flags() | kFlagInPlace;
        job->meta->Write(off::kFlags, &flags, sizeof flags);
      } else {
        // A read-only descriptor of the same segment (its name may be gone).
        read_only = open(fmt::format("/proc/self/fd/{}", input->fd()).c_str(), O_RDONLY | O_CLOEXEC);
        fd = read_only >= 0 ? read_only : input->fd();
      }
    }
    // A child that already died makes this fail with EPIPE; its exit is
    // reported by Finish().
    char go = '1';
    struct iovec iov = {&go, 1};
    union {
      char buf[CMSG_SPACE(sizeof(int))];
      struct cmsghdr align;
    } control;
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
      msg.msg_control = control.buf;
      msg.msg_controllen = sizeof control.buf;
      struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    ssize_t n;
    do {
      n = sendmsg(job->ready_fd, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (read_only >= 0) close(read_only);
    job->released = true;
    job->released_at = Now();
  }

  // Waits until one of `jobs` exits (or times out) and returns it.
  Job* WaitAny(const std::vector<Job*>& jobs) {
    for (;;) {
      double now = Now();
      int wait_ms = 100;
      for (Job* j : jobs) {
        if (j->proc->Poll(&j->status)) {
          j->proc->Drain(wait_);
          j->exited = true;
          return j;
        }
        if (j->released && o_.timeout_seconds > 0) {
          double left = j->released_at + o_.timeout_seconds - now;
          if (left <= 0) {
            j->proc->Kill(SIGKILL);
            j->timed_out = true;
            while (!j->proc->Poll(&j->status)) usleep(1000);
            j->proc->Drain(wait_);
            j->exited = true;
            return j;
          }
          wait_ms = std::min(wait_ms, static_cast<int>(std::min(left, 1.0) * 1000) + 1);
        }
      }
      std::vector<struct pollfd> pfds;
      for (Job* j : jobs) {
        for (int fd : {j->proc->pidfd(), j->proc->stdout_fd(), j->proc->stderr_fd()})
          if (fd >= 0) pfds.push_back({fd, POLLIN, 0});
        if (j->proc->pidfd() < 0) wait_ms = std::min(wait_ms, 10);
      }
      if (o_.wake_fd >= 0) pfds.push_back({o_.wake_fd, POLLIN, 0});
      int r = poll(pfds.data(), pfds.size(), wait_ms);
      if (r < 0 && errno != EINTR)
        throw SystemError("wait for", "scripts", "poll", errno);
      if (o_.check_interrupt) o_.check_interrupt();
      for (Job* j : jobs) j->proc->Drain(wait_);
    }
  }

  // Checks how `job` ended and returns its result; throws on any failure.
  // The result payload is mapped only when `map` is set.
  Result Finish(Job* job, bool map) {
    const std::string who = fmt::format("script '{}'", job->script.Display());
    if (job->timed_out)
      throw Error(ErrorKind::kTimeout,
                  fmt::format("{} timed out after {:g} s and was killed", who,
                              o_.timeout_seconds))
          .with_script(job->script.Display())
          .with_status(job->status.code, job->status.signal);
    ExchangeHeader h = ReadHeader(*job);
    const std::string stderr_tail = Tail(job->proc->stderr_tail(), 20);
    auto with_stderr = [&](std::string msg) {
      if (!stderr_tail.empty()) msg += "\nstderr:\n" + stderr_tail;
      return msg;
    };
    if (h.state == State::kError) {
      if (h.error_type == "pyrmap.NumpyMissing")
        throw Error(ErrorKind::kInterpreter, h.error_text).with_script(job->script.Display());
      if (h.error_type == "pyrmap.NoResult")
        throw Error(ErrorKind::kScript,
                    fmt::format("{} finished without writing a result: it must call its "
                                "@process_via_mmap function under `if __name__ == "
                                "\"__main__\":`, or name a function to call "
                                "(SCRIPT::FUNCTION)",
                                who))
            .with_script(job->script.Display())
            .with_status(job->status.code, job->status.signal);
      std::string tb = h.error_text;
      std::string last = Tail(tb, 1);
      throw Error(ErrorKind::kScript,
                  fmt::format("{} raised {}\n{}", who,
                              last.empty() ? h.error_type : last,
                              (h.error_truncated ? "[...]\n" : "") + Tail(tb, 12)))
          .with_script(job->script.Display())
          .with_python(h.error_type, tb)
          .with_status(job->status.code, job->status.signal);
    }
    if (h.state == State::kInputReady &&
        job->proc->stderr_tail().find("No module named 'pyrmap'") != std::string::npos)
      throw Error(ErrorKind::kInterpreter,
                  fmt::format("the Python interpreter '{}' cannot import the pyrmap package{}: "
                              "install it (pip install ./python) or set PYRMAP_PACKAGE_DIR",
                              o_.python,
                              o_.package_dir.empty() ? "" : " from '" + o_.package_dir + "'"))
          .with_script(job->script.Display());
    if (!job->status.ok()) {
      const char* when = h.state == State::kResultReady ? "after writing its result"
                                                        : "without writing a result";
      throw Error(ErrorKind::kScript,
                  with_stderr(fmt::format("{} {} {}", who, job->status.Describe(), when)))
          .with_script(job->script.Display())
          .with_status(job->status.code, job->status.signal);
    }
    if (h.state != State::kResultReady)
      throw Error(ErrorKind::kScript,
                  with_stderr(fmt::format("{} finished without writing a result", who)))
          .with_script(job->script.Display())
          .with_status(job->status.code, job->status.signal);
    Result r;
    r.script = job->script;
    r.desc = h.result;
    if (h.result_location == kResultInInputSegment && !job->in_place)
      throw Error(ErrorKind::kProtocol,
                  fmt::format("{} says it wrote its result into its input, which it was not "
                              "given to write",
                              who))
          .with_script(job->script.Display());
    job->result_location = h.result_location;
    const Segment& res = h.result_location == kResultInInputSegment ? *job->input : *job->res;
    try {
      CheckPayloadFits(h.result, res.Size(), res.name());
    } catch (const Error& e) {
      throw Error(e.kind(), fmt::format("{}: {}", who, e.what())).with_script(job->script.Display());
    }
    if (map && h.result.nbytes > 0)
      r.mapping = std::make_shared<Mapping>(
          res.Map(o_.result_map, h.result.offset, h.result.nbytes));
    return r;
  }

  // For a job that ended before it was given its input: it failed (throws),
  // or it broke the protocol by writing a result without one.
  [[noreturn]] void FinishEarly(Job* job) {
    Finish(job, false);
    throw Error(ErrorKind::kProtocol,
                fmt::format("script '{}' wrote a result before its input was ready",
                            job->script.Display()));
  }

  uint32_t Flags() const {
    return o_.result_order == ResultOrder::kF     ? kFlagResultOrderF
           : o_.result_order == ResultOrder::kAny ? kFlagResultOrderAny
                                                  : 0u;
  }

  // The segment that holds a finished job's result (its own result
  // segment, or its input's if it wrote there), and whether it is this
  // call's own.
  std::shared_ptr<Segment> Output(const Job* job) const {
    return job->result_location == kResultInInputSegment ? job->input : job->res;
  }
  bool OutputOwned(const Job* job) const {
    return job->result_location == kResultInInputSegment ? job->in_place : true;
  }

  // Lets go of a finished job's segments (an intermediate stage whose
  // result the next stage now holds): names and descriptors.
  void Forget(Job* job) {
    Segment::Remove(dir_, job->res_name);
    job->res.reset();
    job->input.reset();
  }

 private:
  ExchangeHeader ReadHeader(const Job& job) {
    uint64_t size = job.meta->Size();
    std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(size, kMetaReadLimit)));
    job.meta->Read(0, buf.data(), buf.size());
    try {
      return DecodeHeader(buf.data(), buf.size(), job.meta_name);
    } catch (const Error& e) {
      throw Error(e.kind(), fmt::format("script '{}' ({}): {}", job.script.Display(),
                                        job.status.Describe(), e.what()))
          .with_script(job.script.Display())
          .with_status(job.status.code, job.status.signal);
    }
  }

  static void CheckTrampoline(void* self) {
    auto* r = static_cast<Runner*>(self);
    if (r->o_.check_interrupt) r->o_.check_interrupt();
  }

  const RunOptions& o_;
  std::string prefix_;
  SegmentDir dir_;      // where this call's segments are made
  SegmentGuard guard_;  // declared before jobs_: destroyed after them
  std::shared_ptr<Segment> data_;  // the input's segment until handed over
  bool data_owned_ = false;        // data_ was created by this call
  std::thread reserver_;
  std::vector<std::unique_ptr<Job>> jobs_;
  WaitOptions wait_;
};

}  // namespace

std::string Script::Display() const {
  return function.empty() ? path : path + "::" + function;
}

Script ParseScript(std::string_view spec) {
  Script s;
  size_t pos = spec.rfind("::");
  if (pos == std::string_view::npos) {
    s.path = std::string(spec);
  } else {
    s.path = std::string(spec.substr(0, pos));
    s.function = std::string(spec.substr(pos + 2));
    if (s.function.empty())
      throw Error(ErrorKind::kUsage,
                  fmt::format("'{}': no function name after '::'", spec));
  }
  if (s.path.empty()) throw Error(ErrorKind::kUsage, "empty script path");
  return s;
}

std::vector<std::string> PythonCommand(const RunOptions& o, const Script& script) {
  std::vector<std::string> argv = {o.python, "-c", kBootstrap, script.path};
  argv.insert(argv.end(), o.script_args.begin(), o.script_args.end());
  return argv;
}

Result RunScript(const Script& script, const Input& input, const RunOptions& o) {
  return RunShared({script}, input, o).front();
}

std::vector<Result> RunShared(const std::vector<Script>& scripts, const Input& input,
                              const RunOptions& o) {
  if (scripts.empty()) throw Error(ErrorKind::kUsage, "no script given");
  for (const auto& s : scripts) CheckScriptReadable(s);
  Runner runner(o);
  std::string data = runner.PrepareData(input);
  const size_t n = scripts.size();
  const size_t width = std::min<size_t>(static_cast<size_t>(o.jobs), n);
  // One script alone may write its result over this call's own input.
  const bool in_place = n == 1 && runner.DataOwned();
  std::vector<Job*> by_index(n, nullptr);
  std::vector<Job*> running;  // released, not finished
  size_t next = 0;
  auto start_next = [&]() {
    if (next >= n) return;
    by_index[next] = runner.Start(scripts[next], data, &input.desc);
    ++next;
  };
  // The first wave, plus one started early to hide its start-up.
  for (size_t i = 0; i < std::min(n, width + 1); ++i) start_next();
  if (!in_place)
    runner.StartReserving(std::vector<Job*>(by_index.begin(), by_index.begin() + width),
                          input.desc.nbytes);
  runner.FillData(input);
  runner.JoinReserving();
  size_t released = 0;
  auto release_next = [&]() {
    runner.Release(by_index[released], nullptr, runner.Data(), in_place);
    running.push_back(by_index[released]);
    if (++released == n) runner.DropData();  // every script holds the data now
  };
  while (released < width) release_next();
  std::vector<Result> results(n);
  size_t finished = 0;
  while (finished < n) {
    // Watch the early-started one too: it may fail before its turn.
    std::vector<Job*> watch = running;
    for (size_t i = released; i < next; ++i) watch.push_back(by_index[i]);
    Job* done = runner.WaitAny(watch);
    size_t idx = static_cast<size_t>(
        std::find(by_index.begin(), by_index.end(), done) - by_index.begin());
    if (idx >= released) runner.FinishEarly(done);
    results[idx] = runner.Finish(done, true);
    ++finished;
    running.erase(std::remove(running.begin(), running.end(), done), running.end());
    if (released < n && released < next) release_next();
    start_next();
  }
  return results;
}

std::vector<Result> RunPipeline(const std::vector<Script>& scripts, const Input& input,
                                const RunOptions& o, bool keep_intermediate) {
  if (scripts.empty()) throw Error(ErrorKind::kUsage, "no script given");
  for (const auto& s : scripts) CheckScriptReadable(s);
  Runner runner(o);
  std::string data = runner.PrepareData(input);
  const size_t n = scripts.size();
  std::vector<Job*> stage(n, nullptr);
  stage[0] = runner.Start(scripts[0], data, &input.desc);
  // Stage k+1 reads stage k's result; start it before stage k finishes, its
  // input follows on release.
  if (n > 1) stage[1] = runner.Start(scripts[1], stage[0]->res_name, nullptr);
  runner.FillData(input);
  // Each stage may write its result over its input when that input is this
  // call's own and no one needs it afterwards: the data always, a previous
  // stage's result unless the caller keeps the intermediates (they are
  // returned as they are).
  runner.Release(stage[0], nullptr, runner.Data(), runner.DataOwned());
  runner.DropData();
  std::vector<Result> results;
  for (size_t k = 0; k < n; ++k) {
    std::vector<Job*> watch = {stage[k]};
    if (k + 1 < n) watch.push_back(stage[k + 1]);
    if (runner.WaitAny(watch) != stage[k]) runner.FinishEarly(stage[k + 1]);
    bool last = k + 1 == n;
    Result r = runner.Finish(stage[k], keep_intermediate || last);
    if (keep_intermediate || last) results.push_back(r);
    if (!last) {
      if (k + 2 < n) stage[k + 2] = runner.Start(scripts[k + 2], stage[k + 1]->res_name, nullptr);
      ArrayDesc next_in = r.desc;
      runner.Release(stage[k + 1], &next_in, runner.Output(stage[k]),
                     runner.OutputOwned(stage[k]) && !keep_intermediate);
      // Stage k+1 holds this result now; its memory goes when that stage is
      // done with it (or with the caller's mapping, when kept).
      runner.Forget(stage[k]);
    }
  }
  return results;
}

}  // namespace pyrmap
