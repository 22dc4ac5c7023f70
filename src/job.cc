#include "job.h"

#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "error.h"
#include "unix_io.h"

namespace pyrmap {

namespace {

constexpr int kReadyFdInChild = 3;
constexpr char kHelloByte = 'h';
constexpr char kWarningByte = 'w';

}  // namespace

Job::~Job() {
  // The process goes first (killed and reaped with its group), then our
  // end of the socket.
  proc.reset();
  if (ready_fd >= 0) close(ready_fd);
}

uint32_t ResultFlags(const RunOptions& o) {
  const uint32_t order = o.result_order == ResultOrder::kF     ? kFlagResultOrderF
                         : o.result_order == ResultOrder::kAny ? kFlagResultOrderAny
                                                               : 0u;
  return order | ((o.tables << kFlagTablesShift) & kFlagTablesMask) |
         (o.input_refs ? kFlagInputRefs : 0u);
}

std::unique_ptr<Job> StartJob(const RunOptions& o, const std::string& prefix, size_t k,
                              const Script& script, const std::string& data_name,
                              const ArrayDesc* desc, uint32_t input_kind, SegmentGuard& guard) {
  auto job = std::make_unique<Job>();
  job->script = script;
  job->meta_name = fmt::format("{}-meta-{}", prefix, k);
  job->res_name = fmt::format("{}-res-{}", prefix, k);
  job->meta.emplace(Segment::Create(guard.dir(), job->meta_name, kHeaderSize));
  guard.Add(job->meta_name);
  job->res = std::make_shared<Segment>(Segment::Create(guard.dir(), job->res_name, 0));
  guard.Add(job->res_name);
  // A read-only twin, opened while the name exists: a later stage may be
  // handed this result, and must not be able to write it.
  job->res_ro = std::make_shared<Segment>(Segment::Open(guard.dir(), job->res_name, false));

  ExchangeHeader h;
  h.state = State::kInputReady;
  h.flags = ResultFlags(o);
  h.owner_pid = getpid();
  if (desc) {
    h.input = *desc;
    h.input_kind = input_kind;
  }
  uint8_t buf[kHeaderSize];
  EncodeHeader(h, buf, sizeof buf);
  job->meta->Write(0, buf, sizeof buf);

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    throw SystemError("create ready socket for script", script.Display(), "socketpair", errno);
  job->ready_fd = sv[0];
  SpawnOptions so;
  so.argv = PythonCommand(o, script);
  so.what = "Python interpreter";
  so.capture_stdout = static_cast<bool>(o.on_stdout);
  so.capture_stderr = true;
  so.fds.push_back({sv[1], kReadyFdInChild});
  std::string pypath = o.package_dir;
  if (const char* old = getenv("PYTHONPATH"); old && *old)
    pypath = pypath.empty() ? old : pypath + ":" + old;
  if (!pypath.empty()) so.env.push_back({"PYTHONPATH", pypath});
  so.env.push_back({"PYRMAP_SEGMENT_DIR", guard.dir().path()});
  so.env.push_back({"PYRMAP_META", job->meta_name});
  so.env.push_back({"PYRMAP_DATA", data_name});
  so.env.push_back({"PYRMAP_RESULT", job->res_name});
  so.env.push_back({"PYRMAP_READY_FD", std::to_string(kReadyFdInChild)});
  so.env.push_back({"PYRMAP_FUNCTION", script.function});
  for (const auto& kv : o.env) so.env.push_back(kv);
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
  return job;
}

bool SendReady(int sock, int pass_fd, const std::string& script) {
  const char go = '1';
  long n = SendWithDescriptor(sock, &go, 1, pass_fd);
  if (n == 1) return true;
  if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) return false;
  // Anything else would leave the script waiting for ever.
  throw SystemError("send the ready byte to script", script, "sendmsg", n < 0 ? errno : EIO);
}

void ReleaseJob(Job& job, const RunOptions& o, const ArrayDesc* desc, uint32_t kind,
                const std::shared_ptr<Segment>& input, bool in_place) {
  if (desc && !job.exited) {
    uint8_t buf[kArrayDescSize];
    EncodeArrayDesc(*desc, buf);
    job.meta->Write(off::kInput, buf, sizeof buf);
    job.meta->Write(off::kInputKind, &kind, sizeof kind);
  }
  int fd = -1;
  if (input) {
    fd = input->fd();
    if (in_place) {
      job.input = input;
      job.in_place = true;
      uint32_t flags = ResultFlags(o) | kFlagInPlace;
      job.meta->Write(off::kFlags, &flags, sizeof flags);
    }
  }
  // A script that died already makes this fail with EPIPE; its exit is
  // judged when it is collected.
  SendReady(job.ready_fd, fd, job.script.Display());
  job.released = true;
  job.released_at = MonotonicSeconds();
}

void ReadScriptMessages(Job& job) {
  if (job.ready_fd < 0) return;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(job.ready_fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    job.unread.append(buf, static_cast<size_t>(n));
  }
  size_t pos = 0;
  while (pos < job.unread.size()) {
    const char kind = job.unread[pos];
    if (kind == kHelloByte) {
      job.bootstrap_started = true;
      ++pos;
      continue;
    }
    if (kind != kWarningByte) {  // not ours: the rest cannot be parsed
      pos = job.unread.size();
      break;
    }
    if (job.unread.size() - pos < 5) break;
    uint32_t len;
    std::memcpy(&len, job.unread.data() + pos + 1, 4);
    if (job.unread.size() - pos - 5 < len) break;
    job.warnings.push_back(job.unread.substr(pos + 5, len));
    pos += 5 + len;
  }
  job.unread.erase(0, pos);
}

bool BootstrapStarted(Job& job) {
  ReadScriptMessages(job);
  return job.bootstrap_started;
}

}  // namespace pyrmap
