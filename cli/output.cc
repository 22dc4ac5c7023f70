#include "output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <sstream>

#include <fmt/format.h>

#include "convert.h"
#include "error.h"
#include "npy.h"
#include "signals.h"

namespace pyrmap::cli {

namespace {

[[noreturn]] void Usage(const std::string& msg) { throw Error(ErrorKind::kUsage, msg); }

// Writes the result's bytes to `fd`; `path` names it in messages.
using Emit = std::function<void(int fd, const std::string& path)>;

void WriteAll(int fd, const void* data, uint64_t n, const std::string& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    ssize_t w = write(fd, p, std::min<uint64_t>(n, 1 << 30));
    if (w < 0 && errno == EINTR) {
      ThrowIfSignalled(("while writing " + path).c_str());
      continue;
    }
    if (w < 0) throw SystemError("write output", path, "write", errno);
    p += w;
    n -= static_cast<uint64_t>(w);
  }
}

void CloseChecked(int fd, const std::string& path) {
  // Data that did not reach the file shows up here on some file systems.
  if (close(fd) != 0 && errno != EINTR) throw SystemError("write output", path, "close", errno);
}

std::string DirOf(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return path.substr(0, slash + (slash == 0));
}

std::string BaseOf(const std::string& path) { return path.substr(path.find_last_of('/') + 1); }

// Writes beside the target and renames, so a failure never leaves half a file.
void WriteToPath(const std::string& path, const Emit& emit) {
  std::string tmp = fmt::format("{}.pyrmap-tmp-{}", path, getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw SystemError("write output", path, "open", errno);
  try {
    emit(fd, path);
    int cfd = fd;
    fd = -1;
    CloseChecked(cfd, path);
    if (rename(tmp.c_str(), path.c_str()) != 0) throw SystemError("write output", path, "rename", errno);
  } catch (...) {
    if (fd >= 0) close(fd);
    unlink(tmp.c_str());
    throw;
  }
}

std::string Stem(const std::string& script) {
  std::string base = BaseOf(script);
  size_t dot = base.rfind(".py");
  if (dot != std::string::npos && dot + 3 == base.size()) base.resize(dot);
  return base;
}

void CheckDirectory(const std::string& dir, const std::string& what) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    Usage(fmt::format("{} '{}' is not an existing directory", what, dir));
  if (access(dir.c_str(), W_OK) != 0)
    Usage(fmt::format("{} '{}' is not writable ({})", what, dir, ErrnoText(errno)));
}

}  // namespace

std::string FormatFor(const std::string& path, const std::string& format) {
  if (format != "auto") return format;
  if (path.empty() || path == "-") return "text";
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".npy") == 0) return "npy";
  return "raw";
}

void CheckOutputWritable(const OutputOptions& o) {
  if (!o.output_dir.empty()) CheckDirectory(o.output_dir, "--output-dir");
  if (o.output.empty() || o.output == "-") return;
  struct stat st;
  if (stat(o.output.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    Usage(fmt::format("--output '{}' is a directory; give a file name", o.output));
  CheckDirectory(DirOf(o.output), "the directory of --output");
}

void WriteResult(const Result& r, const std::string& path, const std::string& format) {
  const std::string fmt_name = FormatFor(path, format);
  const bool to_stdout = path.empty() || path == "-";
  if (fmt_name == "text" && to_stdout) {
    FormatTextArray(r.desc, r.data(), std::cout);
    std::cout.flush();
    if (!std::cout) throw SystemError("write output", "stdout", "write", errno ? errno : EIO);
    return;
  }
  Emit emit = [&](int fd, const std::string& where) {
    if (fmt_name == "text") {
      std::ostringstream os;
      FormatTextArray(r.desc, r.data(), os);
      const std::string s = os.str();
      WriteAll(fd, s.data(), s.size(), where);
      return;
    }
    if (fmt_name == "npy") {
      const std::string header = FormatNpyHeader(r.desc);
      WriteAll(fd, header.data(), header.size(), where);
    }
    WriteAll(fd, r.data(), r.desc.nbytes, where);
  };
  if (to_stdout) {
    std::cout.flush();
    emit(1, "stdout");
    return;
  }
  WriteToPath(path, emit);
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

}  // namespace pyrmap::cli
