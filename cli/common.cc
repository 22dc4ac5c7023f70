#include "common.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include "convert.h"
#include "npy.h"

namespace pyrmap::cli {

namespace {

std::atomic<int> g_signal{0};
int g_wake[2] = {-1, -1};

void OnSignal(int sig) {
  int expected = 0;
  g_signal.compare_exchange_strong(expected, sig);
  char c = 1;
  [[maybe_unused]] ssize_t n = write(g_wake[1], &c, 1);
}

[[noreturn]] void Usage(const std::string& msg) { throw Error(ErrorKind::kUsage, msg); }

// An open file descriptor, closed when the last owner goes.
using SharedFd = std::shared_ptr<int>;
SharedFd OpenShared(const std::string& path, int flags) {
  int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    ErrorKind kind = err == ENOENT || err == EACCES ? ErrorKind::kNotFound : ErrorKind::kSystem;
    throw Error(kind, fmt::format("input '{}': cannot open ({})", path, ErrnoText(err))).with_errno(err);
  }
  return SharedFd(new int(fd), [](int* p) {
    close(*p);
    delete p;
  });
}

void PreadAll(int fd, void* dst, uint64_t n, uint64_t off, const std::string& path) {
  auto* p = static_cast<uint8_t*>(dst);
  while (n > 0) {
    ssize_t r = pread(fd, p, std::min<uint64_t>(n, 1 << 30), static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw SystemError("read input", path, "pread", errno);
    if (r == 0) Usage(fmt::format("input '{}': ends early", path));
    p += r;
    off += static_cast<uint64_t>(r);
    n -= static_cast<uint64_t>(r);
  }
}

std::vector<uint8_t> ReadAllStdin() {
  std::vector<uint8_t> buf;
  size_t used = 0;
  buf.resize(1 << 16);
  for (;;) {
    if (used == buf.size()) buf.resize(buf.size() * 2);
    ssize_t r = read(0, buf.data() + used, buf.size() - used);
    if (r < 0 && errno == EINTR) {
      if (CaughtSignal()) throw Error(ErrorKind::kInterrupt, "interrupted while reading stdin");
      continue;
    }
    if (r < 0) throw SystemError("read input", "stdin", "read", errno);
    if (r == 0) break;
    used += static_cast<size_t>(r);
  }
  buf.resize(used);
  return buf;
}

std::vector<uint64_t> ParseShape(const std::string& s) {
  std::vector<uint64_t> dims;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) {
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(part.c_str(), &end, 10);
    if (part.empty() || *end != '\0' || errno != 0 || part[0] == '-')
      Usage(fmt::format("--shape '{}': '{}' is not a non-negative integer", s, part));
    dims.push_back(v);
  }
  if (dims.empty()) Usage(fmt::format("--shape '{}' is empty", s));
  return dims;
}

Dtype DtypeOption(const std::string& name) {
  auto d = ParseDtype(name);
  if (!d) Usage(fmt::format("unknown dtype '{}' (choose one of: {})", name, DtypeNameList()));
  return *d;
}

// The element geometry of raw or text input: --shape, or 1-D.
ArrayDesc Geometry(Dtype dtype, uint64_t count, const InputOptions& o, const std::string& where) {
  Order order = o.order == "F" ? Order::kF : Order::kC;
  if (o.shape.empty()) return ArrayDesc::Make(dtype, {count}, order);
  ArrayDesc d = ArrayDesc::Make(dtype, ParseShape(o.shape), order);
  if (d.count != count)
    Usage(fmt::format("{}: --shape {} holds {} elements but the input has {}", where, o.shape,
                      d.count, count));
  return d;
}

// Fills a segment from a file range, converting the dtype if asked.
Input FileInput(SharedFd fd, const std::string& path, uint64_t payload_off, const ArrayDesc& src,
                Dtype to) {
  Input in;
  in.desc = ArrayDesc::Make(to, src.shape, src.order);
  in.fill = [fd, path, payload_off, src, to](Segment& seg, void (*check)(void*), void* arg) {
    if (src.dtype == to) {
      // In-kernel copy: no user-space buffer, no page faults on our side.
      off_t off = static_cast<off_t>(payload_off);
      uint64_t left = src.nbytes;
      while (left > 0) {
        if (check) check(arg);
        ssize_t n = sendfile(seg.fd(), *fd, &off, std::min<uint64_t>(left, 64 << 20));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw SystemError("copy input", path, "sendfile", errno);
        if (n == 0) Usage(fmt::format("input '{}': ends early", path));
        left -= static_cast<uint64_t>(n);
      }
      return;
    }
    const size_t in_item = ItemSize(src.dtype), out_item = ItemSize(to);
    const uint64_t per_chunk = (8u << 20) / in_item;
    std::vector<uint8_t> a(per_chunk * in_item), b(per_chunk * out_item);
    for (uint64_t i = 0; i < src.count; i += per_chunk) {
      if (check) check(arg);
      uint64_t k = std::min(per_chunk, src.count - i);
      PreadAll(*fd, a.data(), k * in_item, payload_off + i * in_item, path);
      ConvertElements(src.dtype, a.data(), to, b.data(), k, i, path);
      seg.Write(i * out_item, b.data(), k * out_item);
    }
  };
  return in;
}

Input BufferInput(std::shared_ptr<std::vector<uint8_t>> buf, uint64_t payload_off,
                  const ArrayDesc& src, Dtype to, const std::string& where) {
  Input in;
  in.desc = ArrayDesc::Make(to, src.shape, src.order);
  if (src.dtype != to) {
    auto conv = std::make_shared<std::vector<uint8_t>>(in.desc.nbytes);
    ConvertElements(src.dtype, buf->data() + payload_off, to, conv->data(), src.count, 0, where);
    buf = conv;
    payload_off = 0;
  }
  uint64_t n = in.desc.nbytes;
  in.fill = [buf, payload_off, n](Segment& seg, void (*check)(void*), void* arg) {
    seg.Write(0, buf->data() + payload_off, n, check, arg);
  };
  return in;
}

void WriteAll(int fd, const void* data, uint64_t n, const std::string& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    ssize_t w = write(fd, p, std::min<uint64_t>(n, 1 << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw SystemError("write output", path, "write", errno);
    p += w;
    n -= static_cast<uint64_t>(w);
  }
}

std::string FormatFor(const std::string& path, const std::string& format) {
  if (format != "auto") return format;
  if (path.empty() || path == "-") return "text";
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".npy") == 0) return "npy";
  return "raw";
}

std::string Stem(const std::string& script) {
  std::string base = script.substr(script.find_last_of('/') + 1);
  size_t dot = base.rfind(".py");
  if (dot != std::string::npos && dot + 3 == base.size()) base.resize(dot);
  return base;
}

// The directory holding the Python package `pyrmap`, next to this program:
// <dir>/../python (source tree and the R package), or
// <dir>/../share/pyrmap/python (an installed prefix).
std::string FindPackageDir() {
  if (const char* env = getenv("PYRMAP_PACKAGE_DIR"); env && *env) return env;
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string exe(buf, static_cast<size_t>(n));
  std::string dir = exe.substr(0, exe.find_last_of('/'));
  std::vector<std::string> candidates = {dir + "/../python", dir + "/../share/pyrmap/python",
                                         dir + "/python"};
#ifdef PYRMAP_SOURCE_PYTHON_DIR
  // The source tree this binary was built from, for copies of the binary.
  candidates.push_back(PYRMAP_SOURCE_PYTHON_DIR);
#endif
  for (const std::string& cand : candidates) {
    if (access((cand + "/pyrmap/_bootstrap.py").c_str(), R_OK) == 0) {
      char real[4096];
      return realpath(cand.c_str(), real) ? std::string(real) : cand;
    }
  }
  return "";  // rely on an installed package (pip install ./python)
}

}  // namespace

const char* ExitCodeHelp() {
  return "Exit codes:\n"
         "  0  success\n"
         "  2  usage error: bad arguments, invalid input, missing script\n"
         "  3  the script failed (exception, exit status, signal, no result)\n"
         "  4  the script exceeded --timeout and was killed\n"
         "  5  protocol error: a corrupt header or result\n"
         "  6  system error: /dev/shm full, segment or file I/O\n"
         "  7  the Python interpreter cannot be started or cannot import numpy\n"
         "  130/143  interrupted by SIGINT/SIGTERM (128 + signal)";
}

void AddInputOptions(CLI::App* app, InputOptions* o) {
  app->add_option("-i,--input", o->input,
                  "Input: a .npy file, a raw binary file (needs --dtype), or - for stdin "
                  "(.npy or whitespace-separated numbers). Default: stdin");
  app->add_option("--input-format", o->input_format, "auto, npy, raw or text")
      ->check(CLI::IsMember({"auto", "npy", "raw", "text"}))
      ->capture_default_str();
  app->add_option("-d,--dtype", o->dtype,
                  "Element type given to Python: int32, int64, float32, float64, uint8, bool. "
                  "Default: the .npy file's, float64 for text");
  app->add_option("-s,--shape", o->shape, "Shape of raw or text input, e.g. 1000,3 (default: 1-D)");
  app->add_option("--order", o->order, "Element order of raw or text input with --shape, and of raw output: C (row-major) or F")
      ->check(CLI::IsMember({"C", "F"}))
      ->capture_default_str();
}

void AddExecOptions(CLI::App* app, ExecOptions* o) {
  app->add_option("--python", o->python,
                  "Python interpreter with numpy (default: $PYRMAP_PYTHON, else python3)");
  app->add_option("-t,--timeout", o->timeout, "Kill a script that runs longer than this many seconds")
      ->check(CLI::NonNegativeNumber);
  AddSegmentDirOption(app, &o->segment_dir);
}

void AddSegmentDirOption(CLI::App* app, std::string* dir) {
  app->add_option("--segment-dir", *dir,
                  "Where the segments are made: RAM (/dev/shm), DISK (a private directory on disk, "
                  "for data larger than /dev/shm: pyrmap-<uid> in /var/tmp, $TMPDIR or /tmp), or a "
                  "directory only you can write. Default: $PYRMAP_SEGMENT_DIR, else RAM")
      ->type_name("RAM|DISK|DIR");
}

void AddSegmentDirOption(CLI::App* app, std::vector<std::string>* dirs) {
  app->add_option("--segment-dir", *dirs,
                  "Also look in this segment directory (RAM, DISK or a path; repeatable). "
                  "Always looked in: /dev/shm, the DISK directory, $PYRMAP_SEGMENT_DIR and every "
                  "directory pyrmap recorded as used")
      ->type_name("RAM|DISK|DIR")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

void AddScriptArgOption(CLI::App* app, std::vector<std::string>* args, bool every_script) {
  app->add_option("-a,--arg", *args,
                  every_script ? "An argument for the scripts (their sys.argv[1:]); repeat for more. "
                                 "Every script gets the same arguments"
                               : "An argument for the script (its sys.argv[1:]); repeat for more. "
                                 "These come before the arguments after --")
      ->type_name("ARG")
      ->allow_extra_args(false)  // one value per -a: the scripts after it stay scripts
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

void AddOutputOptions(CLI::App* app, OutputOptions* o, bool several) {
  app->add_option("-o,--output", o->output,
                  several ? "Write the (final) result to this file (.npy, else raw bytes; - for stdout)"
                          : "Write the result to this file (.npy, else raw bytes; - for stdout). "
                            "Default: text on stdout");
  if (several)
    app->add_option("--output-dir", o->output_dir,
                    "Write every result to DIR/<k>-<script>.npy (or .bin with --output-format raw)");
  app->add_option("--output-format", o->output_format, "auto, npy, raw or text")
      ->check(CLI::IsMember({"auto", "npy", "raw", "text"}))
      ->capture_default_str();
}

RunOptions MakeRunOptions(const ExecOptions& o, const std::vector<Script>& scripts) {
  RunOptions r;
  if (!o.python.empty()) {
    r.python = o.python;
  } else if (const char* env = getenv("PYRMAP_PYTHON"); env && *env) {
    r.python = env;
  } else {
    r.python = "python3";
  }
  r.package_dir = FindPackageDir();
  r.timeout_seconds = o.timeout;
  r.script_args = o.script_args;
  r.segment_dir = o.segment_dir;
  r.result_order = ResultOrder::kAny;
  r.result_map = MapMode::kReadOnly;
  r.wake_fd = g_wake[0];
  std::string running;
  for (const auto& s : scripts) running += (running.empty() ? "'" : ", '") + s.Display() + "'";
  running = fmt::format("while running script{} {}", scripts.size() == 1 ? "" : "s", running);
  r.check_interrupt = [running] {
    if (int sig = CaughtSignal())
      throw Error(ErrorKind::kInterrupt,
                  fmt::format("interrupted by SIG{} {}", sigabbrev_np(sig), running));
  };
  return r;
}

void SetResultOrder(RunOptions* r, const InputOptions& in, const OutputOptions& out) {
  const bool raw = out.output_dir.empty() ? FormatFor(out.output, out.output_format) == "raw"
                                          : out.output_format == "raw";
  if (raw) r->result_order = in.order == "F" ? ResultOrder::kF : ResultOrder::kC;
}

Input LoadInput(const InputOptions& o) {
  const bool from_stdin = o.input.empty() || o.input == "-";
  if (o.input.empty() && isatty(0))
    Usage("no input: give --input FILE, or pipe a .npy file or numbers into stdin");
  const std::string where = from_stdin ? std::string("stdin") : o.input;
  std::optional<Dtype> want;
  if (!o.dtype.empty()) want = DtypeOption(o.dtype);

  if (from_stdin) {
    auto buf = std::make_shared<std::vector<uint8_t>>(ReadAllStdin());
    bool npy = o.input_format == "npy" ||
               (o.input_format == "auto" && IsNpy(buf->data(), buf->size()));
    if (npy) {
      NpyHeader h = ParseNpyHeader(buf->data(), buf->size(), where);
      if (buf->size() - h.payload_offset != h.desc.nbytes)
        Usage(fmt::format("{}: .npy payload holds {} bytes, its header describes {}", where,
                          buf->size() - h.payload_offset, h.desc.nbytes));
      if (!o.shape.empty()) Usage("--shape applies to raw and text input; a .npy file has its own");
      return BufferInput(buf, h.payload_offset, h.desc, want.value_or(h.desc.dtype), where);
    }
    if (o.input_format == "raw") {
      if (!want) Usage("raw input needs --dtype");
      if (buf->size() % ItemSize(*want) != 0)
        Usage(fmt::format("{}: {} bytes is not a whole number of {} elements", where, buf->size(),
                          DtypeName(*want)));
      ArrayDesc d = Geometry(*want, buf->size() / ItemSize(*want), o, where);
      return BufferInput(buf, 0, d, *want, where);
    }
    std::string text(buf->begin(), buf->end());
    std::istringstream in(text);
    uint64_t count = 0;
    Dtype dt = want.value_or(Dtype::kFloat64);
    auto bytes = std::make_shared<std::vector<uint8_t>>(ParseTextNumbers(in, dt, where, &count));
    return BufferInput(bytes, 0, Geometry(dt, count, o, where), dt, where);
  }

  SharedFd fd = OpenShared(o.input, O_RDONLY);
  struct stat st;
  if (fstat(*fd, &st) != 0) throw SystemError("read input", o.input, "fstat", errno);
  if (S_ISDIR(st.st_mode)) Usage(fmt::format("input '{}' is a directory", o.input));
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  uint8_t pre[16] = {};
  PreadAll(*fd, pre, std::min<uint64_t>(size, sizeof pre), 0, o.input);
  bool npy = o.input_format == "npy" || (o.input_format == "auto" && IsNpy(pre, std::min<uint64_t>(size, 16)));
  if (npy) {
    uint64_t hlen = NpyHeaderLength(pre, std::min<uint64_t>(size, 16), o.input);
    if (hlen == 0) Usage(fmt::format("{}: not a .npy file (no magic)", o.input));
    if (hlen > size) Usage(fmt::format("{}: file ends inside its .npy header", o.input));
    std::vector<uint8_t> head(hlen);
    PreadAll(*fd, head.data(), hlen, 0, o.input);
    NpyHeader h = ParseNpyHeader(head.data(), head.size(), o.input);
    if (size - h.payload_offset != h.desc.nbytes)
      Usage(fmt::format("{}: .npy payload holds {} bytes, its header describes {}", o.input,
                        size - h.payload_offset, h.desc.nbytes));
    if (!o.shape.empty()) Usage("--shape applies to raw and text input; a .npy file has its own");
    return FileInput(fd, o.input, h.payload_offset, h.desc, want.value_or(h.desc.dtype));
  }
  if (o.input_format == "text") {
    std::ifstream in(o.input);
    uint64_t count = 0;
    Dtype dt = want.value_or(Dtype::kFloat64);
    auto bytes = std::make_shared<std::vector<uint8_t>>(ParseTextNumbers(in, dt, o.input, &count));
    return BufferInput(bytes, 0, Geometry(dt, count, o, o.input), dt, o.input);
  }
  if (!want) Usage(fmt::format("{}: not a .npy file; raw binary input needs --dtype", o.input));
  if (size % ItemSize(*want) != 0)
    Usage(fmt::format("{}: {} bytes is not a whole number of {} elements", o.input, size,
                      DtypeName(*want)));
  ArrayDesc d = Geometry(*want, size / ItemSize(*want), o, o.input);
  return FileInput(fd, o.input, 0, d, *want);
}

void CheckOutputWritable(const OutputOptions& o) {
  auto check_dir = [](const std::string& dir, const std::string& what) {
    struct stat st;
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      Usage(fmt::format("{} '{}' is not an existing directory", what, dir));
    if (access(dir.c_str(), W_OK) != 0)
      Usage(fmt::format("{} '{}' is not writable ({})", what, dir, ErrnoText(errno)));
  };
  if (!o.output_dir.empty()) check_dir(o.output_dir, "--output-dir");
  if (!o.output.empty() && o.output != "-") {
    struct stat st;
    if (stat(o.output.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
      Usage(fmt::format("--output '{}' is a directory; give a file name", o.output));
    size_t slash = o.output.find_last_of('/');
    check_dir(slash == std::string::npos ? "." : o.output.substr(0, slash + (slash == 0)),
              "the directory of --output");
  }
}

void WriteResult(const Result& r, const std::string& path, const std::string& format) {
  const std::string fmt_name = FormatFor(path, format);
  const bool to_stdout = path.empty() || path == "-";
  if (fmt_name == "text") {
    if (to_stdout) {
      FormatTextArray(r.desc, r.data(), std::cout);
      std::cout.flush();
      if (!std::cout) throw SystemError("write output", "stdout", "write", errno ? errno : EIO);
      return;
    }
  }
  std::string header = fmt_name == "npy" ? FormatNpyHeader(r.desc) : "";
  if (to_stdout) {
    std::cout.flush();
    WriteAll(1, header.data(), header.size(), "stdout");
    WriteAll(1, r.data(), r.desc.nbytes, "stdout");
    return;
  }
  // Write beside the target and rename, so a failure never leaves half a file.
  std::string tmp = fmt::format("{}.pyrmap-tmp-{}", path, getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw SystemError("write output", path, "open", errno);
  try {
    if (fmt_name == "text") {
      std::ostringstream os;
      FormatTextArray(r.desc, r.data(), os);
      std::string s = os.str();
      WriteAll(fd, s.data(), s.size(), path);
    } else {
      WriteAll(fd, header.data(), header.size(), path);
      WriteAll(fd, r.data(), r.desc.nbytes, path);
    }
    if (close(fd) != 0) {
      fd = -1;
      throw SystemError("write output", path, "close", errno);
    }
    fd = -1;
    if (rename(tmp.c_str(), path.c_str()) != 0) throw SystemError("write output", path, "rename", errno);
  } catch (...) {
    if (fd >= 0) close(fd);
    unlink(tmp.c_str());
    throw;
  }
}

void WriteResults(const std::vector<Result>& results, const std::vector<std::string>& titles,
                  const OutputOptions& o, size_t first_number) {
  if (!o.output_dir.empty()) {
    std::string f = o.output_format == "auto" ? "npy" : o.output_format;
    const char* ext = f == "npy" ? "npy" : f == "raw" ? "bin" : "txt";
    for (size_t k = 0; k < results.size(); ++k)
      WriteResult(results[k],
                  fmt::format("{}/{}-{}.{}", o.output_dir, k + first_number,
                              Stem(results[k].script.path), ext),
                  f);
    return;
  }
  for (size_t k = 0; k < results.size(); ++k) {
    std::cout << "== " << titles[k] << " ==\n";
    WriteResult(results[k], "", "text");
  }
}

int InstallSignalHandlers() {
  if (g_wake[0] < 0 && pipe2(g_wake, O_CLOEXEC | O_NONBLOCK) != 0)
    throw SystemError("install signal handlers", "self-pipe", "pipe2", errno);
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking reads return EINTR
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);
  return g_wake[0];
}

int CaughtSignal() { return g_signal.load(); }

int ExitCodeFor(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kUsage:
    case ErrorKind::kNotFound:
    case ErrorKind::kNotRegistered: return kExitUsage;
    case ErrorKind::kScript: return kExitScript;
    case ErrorKind::kTimeout: return kExitTimeout;
    case ErrorKind::kProtocol: return kExitProtocol;
    case ErrorKind::kSystem: return kExitSystem;
    case ErrorKind::kInterpreter: return kExitInterpreter;
    case ErrorKind::kInterrupt: return 128 + (CaughtSignal() ? CaughtSignal() : SIGINT);
  }
  return 1;
}

}  // namespace pyrmap::cli
