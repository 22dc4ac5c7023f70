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
#include "job.h"
#include "outcome.h"
#include "spawn.h"
#include "unix_io.h"

namespace pyrmap {

namespace {

constexpr const char* kBootstrap = "from pyrmap._bootstrap import main; main()";
// Results are reserved ahead (see Runner::StartReserving) for inputs of at
// least this size, when /dev/shm keeps this much room besides.
constexpr uint64_t kReserveMinBytes = uint64_t{16} << 20;
constexpr uint64_t kReserveHeadroom = uint64_t{256} << 20;

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

// Drives the jobs of one call (job.h starts them and hands them their
// input, outcome.h judges how they ended). Owns the call's segment names
// (removed when the Runner is destroyed) and its jobs (their processes are
// killed and reaped likewise).
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

  // The processes are killed by ~Job first, then names go.
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
      data_ro_ = data_;
      return input.segment;
    }
    if (!input.fill && input.desc.nbytes > 0)
      throw Error(ErrorKind::kUsage, "input has no data and no segment");
    std::string name = prefix_ + "-data";
    // Filled whole by the input's fill (Write) before anyone maps it.
    data_ = std::make_shared<Segment>(Segment::Create(dir_, name, input.desc.nbytes, Reservation::kByWrites));
    guard_.Add(name);
    data_owned_ = true;
    // A read-only descriptor, opened while the name exists, for scripts
    // that must not write the input.
    data_ro_ = std::make_shared<Segment>(Segment::Open(dir_, name, false));
    return name;
  }

  // Writes the input, then removes the data segment's name: the scripts get
  // it as a descriptor with their ready byte, and its memory goes when the
  // last holder lets go of it, not at the end of the call.
  void FillData(const Input& input) {
    if (!data_owned_) return;
    // One thread: the interpreters start (and import numpy) on the other
    // cores meanwhile, and writing in parallel would only compete with them
    // (measured: B3's first call 0.9 -> 1.05 s, 0.35 s more CPU).
    SerialWrites serial;
    if (input.fill) input.fill(*data_, &Runner::CheckTrampoline, this);
    Segment::Remove(dir_, data_->name());
  }

  // Whether the data segment is this call's own (a script may then write
  // its result into it).
  bool DataOwned() const { return data_owned_; }

  // Forgets the data segment once every script that reads it holds it.
  void DropData() {
    data_.reset();
    data_ro_.reset();
  }

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
  // `data_name` (handed over by a Release). `desc` is the input's geometry,
  // or nullptr when it is not known yet (a pipeline stage started early).
  Job* Start(const Script& script, const std::string& data_name, const ArrayDesc* desc,
             uint32_t kind = kKindArray) {
    jobs_.push_back(StartJob(o_, prefix_, jobs_.size(), script, data_name, desc, kind, guard_));
    return jobs_.back().get();
  }

  // Hands `job` the call's data (geometry `desc`): writable when
  // `in_place`, else read-only.
  void ReleaseData(Job* job, const ArrayDesc& desc, bool in_place) {
    ReleaseJob(*job, o_, nullptr, kKindArray, in_place ? data_ : data_ro_, in_place);
    job->input_ro = data_ro_;
    Tell(RunEvent::Kind::kStarted, job, &desc, nullptr);
  }

  // Hands `job` the result of finished job `prev` as its input (geometry
  // `desc`): writable when `in_place` (only for this call's own segment that
  // nobody reads afterwards), else read-only.
  void ReleaseOutput(Job* job, const ArrayDesc& desc, uint32_t kind, Job* prev, bool in_place) {
    // prev's result lies in its own result segment, or over its input
    // (this call's data or an earlier stage's result, held writable by it).
    const bool in_input = prev->result_location == kResultInInputSegment;
    const std::shared_ptr<Segment>& rw = in_input ? prev->input : prev->res;
    const std::shared_ptr<Segment>& ro = in_input ? prev->input_ro : prev->res_ro;
    ArrayDesc d = desc;
    ReleaseJob(*job, o_, &d, kind, in_place ? rw : ro, in_place);
    job->input_ro = ro;
    Tell(RunEvent::Kind::kStarted, job, &desc, nullptr);
  }

  // Waits until one of `jobs` exits (or times out) and returns it.
  Job* WaitAny(const std::vector<Job*>& jobs) {
    for (;;) {
      double now = MonotonicSeconds();
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

  Result Finish(Job* job, bool map) {
    try {
      Result r = JudgeOutcome(*job, o_, map);
      Tell(RunEvent::Kind::kFinished, job, nullptr, &r.desc);
      return r;
    } catch (...) {
      Tell(RunEvent::Kind::kFailed, job, nullptr, nullptr);
      throw;
    }
  }
  [[noreturn]] void FinishEarly(Job* job) {
    try {
      JudgeEarlyExit(*job, o_);
    } catch (...) {
      Tell(RunEvent::Kind::kFailed, job, nullptr, nullptr);
      throw;
    }
  }

  // How many scripts the call runs (for the events' "k of n").
  void SetScriptCount(size_t n) { script_count_ = n; }

  // Whether a finished job's result lies in a segment of this call's own.
  bool OutputOwned(const Job* job) const {
    return job->result_location == kResultInInputSegment ? job->in_place : true;
  }

  // Lets go of a finished job's segments (an intermediate stage whose
  // result the next stage now holds): names and descriptors.
  void Forget(Job* job) {
    Segment::Remove(dir_, job->res_name);
    job->res.reset();
    job->res_ro.reset();
    job->input.reset();
    job->input_ro.reset();
  }

 private:
  // Tells o_.on_event about `job` (its index is its place among the jobs
  // started, which is its script's place in the call's list).
  void Tell(RunEvent::Kind kind, const Job* job, const ArrayDesc* input, const ArrayDesc* result) {
    if (!o_.on_event) return;
    RunEvent e;
    e.kind = kind;
    for (size_t i = 0; i < jobs_.size(); ++i)
      if (jobs_[i].get() == job) e.first = e.last = i;
    e.count = std::max(script_count_, jobs_.size());
    e.what = fmt::format("script '{}'", job->script.Display());
    if (input) e.input = *input;
    if (result) e.result = *result;
    if (kind != RunEvent::Kind::kStarted && job->released)
      e.seconds = MonotonicSeconds() - job->released_at;
    o_.on_event(e);
  }

  static void CheckTrampoline(void* self) {
    auto* r = static_cast<Runner*>(self);
    if (r->o_.check_interrupt) r->o_.check_interrupt();
  }

  const RunOptions& o_;
  std::string prefix_;
  SegmentDir dir_;  // where this call's segments are made
  SegmentGuard guard_;  // declared before jobs_: destroyed after them
  std::shared_ptr<Segment> data_;     // the input's segment until handed over
  std::shared_ptr<Segment> data_ro_;  // the same, read-only
  bool data_owned_ = false;           // data_ was created by this call
  std::thread reserver_;
  std::vector<std::unique_ptr<Job>> jobs_;
  size_t script_count_ = 0;
  WaitOptions wait_;
};

}  // namespace

const uint8_t* Result::buffer(size_t b) const {
  const ArrayDesc& d = table->buffers.at(b);
  if (d.nbytes == 0) return nullptr;
  if (table->locations.at(b) == kInInput)
    return input_mapping ? input_mapping->data() + input_offset + d.offset : nullptr;
  return data() + d.offset;
}

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
  runner.SetScriptCount(scripts.size());
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
    by_index[next] = runner.Start(scripts[next], data, &input.desc, input.kind);
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
    runner.ReleaseData(by_index[released], input.desc, in_place);
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
                                const RunOptions& options, bool keep_intermediate) {
  if (scripts.empty()) throw Error(ErrorKind::kUsage, "no script given");
  // A stage's result is the next stage's input: it holds its own data.
  RunOptions o = options;
  o.input_refs = false;
  for (const auto& s : scripts) CheckScriptReadable(s);
  Runner runner(o);
  runner.SetScriptCount(scripts.size());
  std::string data = runner.PrepareData(input);
  const size_t n = scripts.size();
  std::vector<Job*> stage(n, nullptr);
  stage[0] = runner.Start(scripts[0], data, &input.desc, input.kind);
  // Stage k+1 reads stage k's result; start it before stage k finishes, its
  // input follows on release.
  if (n > 1) stage[1] = runner.Start(scripts[1], stage[0]->res_name, nullptr);
  runner.FillData(input);
  // Each stage may write its result over its input when that input is this
  // call's own and no one needs it afterwards: the data always, a previous
  // stage's result unless the caller keeps the intermediates (they are
  // returned as they are).
  runner.ReleaseData(stage[0], input.desc, runner.DataOwned());
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
      runner.ReleaseOutput(stage[k + 1], r.desc, r.kind, stage[k],
                           runner.OutputOwned(stage[k]) && !keep_intermediate);
      // Stage k+1 holds this result now; its memory goes when that stage is
      // done with it (or with the caller's mapping, when kept).
      runner.Forget(stage[k]);
    }
  }
  return results;
}

}  // namespace pyrmap
