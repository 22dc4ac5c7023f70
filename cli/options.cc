#include "options.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include "error.h"
#include "input.h"
#include "output.h"
#include "signals.h"

namespace pyrmap::cli {

namespace {

[[noreturn]] void Usage(const std::string& msg) { throw Error(ErrorKind::kUsage, msg); }

std::vector<uint8_t> ReadAllStdin() {
  std::vector<uint8_t> buf;
  size_t used = 0;
  buf.resize(1 << 16);
  for (;;) {
    if (used == buf.size()) buf.resize(buf.size() * 2);
    ssize_t r = read(0, buf.data() + used, buf.size() - used);
    if (r < 0 && errno == EINTR) {
      ThrowIfSignalled("while reading stdin");
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
      char real[PATH_MAX];
      return realpath(cand.c_str(), real) ? std::string(real) : cand;
    }
  }
  return "";  // rely on an installed package (pip install ./python)
}

Input ReadInput(const InputOptions& o);

}  // namespace

void AddInputOptions(CLI::App* app, InputOptions* o) {
  app->add_option("-i,--input", o->input,
                  "Input: a .npy file, an .npz file (np.savez: its arrays become keyword "
                  "arguments), a raw binary file (needs --dtype), or - for stdin "
                  "(.npy, .npz or whitespace-separated numbers). Default: stdin");
  app->add_option("--input-format", o->input_format,
                  "auto, npy, npz (several named arrays: the function gets them as keyword "
                  "arguments), raw or text")
      ->check(CLI::IsMember({"auto", "npy", "npz", "raw", "text"}))
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
  app->add_flag("-v,--progress", o->progress,
                "Print a line on stderr as the input is read, as each script (or stage) starts "
                "and ends, and as each result is written, with sizes and times");
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
                  several ? "Write the (final) result to this file (.npy, .npz, else raw bytes; - for stdout)"
                          : "Write the result to this file (.npy, .npz, else raw bytes; - for stdout). "
                            "Default: text on stdout");
  if (several)
    app->add_option("--output-dir", o->output_dir,
                    "Write every result to DIR/<k>-<script>.npy (.npz for several arrays, .bin with "
                    "--output-format raw)");
  app->add_option("--output-format", o->output_format,
                  "auto, npy, npz (a dict, tuple or frame of arrays), raw or text")
      ->check(CLI::IsMember({"auto", "npy", "npz", "raw", "text"}))
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
  r.wake_fd = SignalWakeFd();
  std::string running;
  for (const auto& s : scripts) running += (running.empty() ? "'" : ", '") + s.Display() + "'";
  running = fmt::format("while running script{} {}", scripts.size() == 1 ? "" : "s", running);
  r.check_interrupt = [running] { ThrowIfSignalled(running.c_str()); };
  r.on_event = Progress(o.progress).Events();
  return r;
}

PoolOptions MakePoolOptions(const RunOptions& r, size_t workers) {
  PoolOptions p;
  p.workers = static_cast<int>(std::max<size_t>(1, workers));
  p.python = r.python;
  p.package_dir = r.package_dir;
  return p;
}

void SetResultOrder(RunOptions* r, const InputOptions& in, const OutputOptions& out) {
  const bool raw = out.output_dir.empty() ? FormatFor(out.output, out.output_format) == "raw"
                                          : out.output_format == "raw";
  if (raw) r->result_order = in.order == "F" ? ResultOrder::kF : ResultOrder::kC;
}

Input LoadInput(const InputOptions& o, const Progress& progress) {
  Input input = ReadInput(o);
  progress.Input(o.input.empty() || o.input == "-" ? "stdin" : o.input, input.desc);
  return input;
}

namespace {

Input ReadInput(const InputOptions& o) {
  const bool from_stdin = o.input.empty() || o.input == "-";
  if (o.input.empty() && isatty(0))
    Usage("no input: give --input FILE, or pipe a .npy file or numbers into stdin");
  InputLayout layout;
  layout.format = o.input_format;
  if (!o.dtype.empty()) layout.dtype = DtypeOption(o.dtype);
  if (!o.shape.empty()) layout.shape = ParseShape(o.shape);
  layout.order = o.order == "F" ? Order::kF : Order::kC;
  if (!from_stdin) return FileInput(o.input, layout);
  auto bytes = std::make_shared<const std::vector<uint8_t>>(ReadAllStdin());
  return BytesInput(bytes, layout, "stdin");
}

}  // namespace

}  // namespace pyrmap::cli
