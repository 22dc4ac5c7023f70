#include "output.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/random.h>
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
#include "npz.h"
#include "table.h"
#include "signals.h"
#include "unix_io.h"

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

// The path of what `fd` refers to, as the kernel resolved it.
std::string PathOfFd(int fd, const std::string& path) {
  char buf[PATH_MAX];
  std::string link = fmt::format("/proc/self/fd/{}", fd);
  ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
  if (n <= 0) throw SystemError("write output", path, "readlink /proc/self/fd", errno);
  return std::string(buf, static_cast<size_t>(n));
}

// The final target of `path`, following symlinks the way open() does (and
// so under the kernel's protections), without opening the file itself.
std::string ResolvedPath(const std::string& path) {
  int fd = open(path.c_str(), O_PATH | O_CLOEXEC);
  if (fd < 0) throw SystemError("write output", path, "open", errno);
  std::string real;
  try {
    real = PathOfFd(fd, path);
  } catch (...) {
    close(fd);
    throw;
  }
  close(fd);
  return real;
}

// Opens a fresh temporary file beside `target` (in its directory),
// exclusively and never through a symlink. Sets *tmp to its name.
int OpenTemporary(const std::string& target, mode_t mode, std::string* tmp, const std::string& path) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != sizeof r) throw SystemError("write output", path, "getrandom", errno);
    *tmp = fmt::format("{}/.{}.pyrmap-tmp-{:016x}", DirOf(target), BaseOf(target), r);
    int fd = open(tmp->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd >= 0) return fd;
    if (errno != EEXIST) throw SystemError("write output", path, "open " + *tmp, errno);
  }
  throw SystemError("write output", path, "open (a temporary name)", EEXIST);
}

// Writes a new version of `target` under a temporary name and renames it
// over `target`. `existing`: the file being replaced (its mode, owner and
// group are kept), or null for a new file.
void ReplaceAtomically(const std::string& target, const struct stat* existing, const Emit& emit,
                       const std::string& path) {
  std::string tmp;
  int fd = OpenTemporary(target, existing ? 0600 : 0666, &tmp, path);
  try {
    if (existing) {
      // Owner first: fchown clears set-id bits, which fchmod then restores.
      if (geteuid() == 0 && (existing->st_uid != 0 || existing->st_gid != getegid()) &&
          fchown(fd, existing->st_uid, existing->st_gid) != 0)
        throw SystemError("write output", path, "fchown", errno);
      if (fchmod(fd, existing->st_mode & 07777) != 0) throw SystemError("write output", path, "fchmod", errno);
    }
    emit(fd, path);
    int cfd = fd;
    fd = -1;
    CloseChecked(cfd, path);
    if (rename(tmp.c_str(), target.c_str()) != 0) throw SystemError("write output", path, "rename", errno);
  } catch (...) {
    if (fd >= 0) close(fd);
    unlink(tmp.c_str());
    throw;
  }
}

// Opens an existing non-regular file (device, FIFO) for writing; a FIFO
// blocks here until it has a reader, or a signal arrives.
int OpenInPlace(const std::string& path) {
  for (;;) {
    int fd = open(path.c_str(), O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0) return fd;
    if (errno != EINTR) throw SystemError("write output", path, "open", errno);
    ThrowIfSignalled(("while opening " + path).c_str());
  }
}

void WriteToPath(const std::string& path, const Emit& emit) {
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) {
      int fd = OpenInPlace(path);
      try {
        emit(fd, path);
      } catch (...) {
        close(fd);
        throw;
      }
      CloseChecked(fd, path);
      return;
    }
    std::string target = ResolvedPath(path);
    // The file may have been replaced since stat(): take its mode now.
    if (stat(target.c_str(), &st) != 0) throw SystemError("write output", path, "stat", errno);
    ReplaceAtomically(target, &st, emit, path);
    return;
  }
  if (errno != ENOENT) throw SystemError("write output", path, "stat", errno);
  struct stat lst;
  if (lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
    // A dangling symlink: create its target through it (as the kernel
    // follows it), then replace that empty file like any other; on failure
    // the file we created goes again.
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_NOCTTY | O_CLOEXEC, 0666);
    if (fd < 0) throw SystemError("write output", path, "open", errno);
    std::string target;
    struct stat created;
    try {
      target = PathOfFd(fd, path);
      if (fstat(fd, &created) != 0) throw SystemError("write output", path, "fstat", errno);
    } catch (...) {
      close(fd);
      throw;
    }
    close(fd);
    try {
      ReplaceAtomically(target, &created, emit, path);
    } catch (...) {
      unlink(target.c_str());
      throw;
    }
    return;
  }
  ReplaceAtomically(path, nullptr, emit, path);
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

const char* EntryKindText(EntryKind k) {
  switch (k) {
    case EntryKind::kArray: return "an array";
    case EntryKind::kString: return "strings";
    case EntryKind::kCategory: return "a categorical (factor)";
    case EntryKind::kDatetime: return "date-times";
    case EntryKind::kList: return "a list";
    case EntryKind::kFrame: return "a data frame";
    case EntryKind::kNull: return "None";
  }
  return "an unknown kind";
}

// The arrays of a table result, named as .npz members: the elements of a
// dict, list or tuple (unnamed ones arr_0, arr_1, ... as np.savez names
// positional arrays) or the columns of a frame. Throws Error(kUsage) naming
// the script and the element for anything else: strings, categories,
// date-times, nested lists, None, or values with missing ones (a mask).
std::vector<NpzArray> TableArrays(const Result& r) {
  const Table& t = *r.table;
  const TableEntry& root = t.entries.at(0);
  const std::string who = fmt::format("the result of script '{}'", r.script.Display());
  auto refuse = [&](uint32_t i, const std::string& what) {
    Usage(fmt::format("{}: {} is {}, which an .npy/.npz file or text output cannot hold; return "
                      "numeric arrays (or call the script from R or Python)",
                      who, i == 0 ? std::string("it") : EntryPath(t, i), what));
  };
  auto array = [&](uint32_t i, std::string name) {
    const TableEntry& e = t.entries[i];
    if (e.kind != EntryKind::kArray) refuse(i, EntryKindText(e.kind));
    if (e.mask != kNoIndex) refuse(i, "an array with missing values (a mask)");
    NpzArray a;
    a.name = std::move(name);
    a.desc = t.buffers.at(e.buffer);
    a.data = r.buffer(e.buffer);
    return a;
  };
  std::vector<NpzArray> out;
  if (root.kind == EntryKind::kArray) {
    out.push_back(array(0, "arr_0"));
    return out;
  }
  if (root.kind != EntryKind::kList && root.kind != EntryKind::kFrame) refuse(0, EntryKindText(root.kind));
  const bool named = root.kind == EntryKind::kFrame || (root.flags & kEntryNamed);
  for (uint32_t c : root.children) {
    if (t.entries[c].role != EntryRole::kElement) continue;
    out.push_back(array(c, named ? t.entries[c].name : fmt::format("arr_{}", out.size())));
  }
  return out;
}

// The arrays of any result: a table's (TableArrays), or the one array.
std::vector<NpzArray> ResultArrays(const Result& r) {
  if (r.kind == kKindTable) return TableArrays(r);
  NpzArray a;
  a.name = "arr_0";
  a.desc = r.desc;
  a.data = r.data();
  return {a};
}

// Text of several arrays: each headed by "== name ==".
void FormatTextArrays(const std::vector<NpzArray>& arrays, std::ostream& os) {
  for (const NpzArray& a : arrays) {
    os << "== " << a.name << " ==\n";
    FormatTextArray(a.desc, a.data, os);
  }
}

}  // namespace

std::string FormatFor(const std::string& path, const std::string& format) {
  if (format != "auto") return format;
  if (path.empty() || path == "-") return "text";
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".npy") == 0) return "npy";
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".npz") == 0) return "npz";
  return "raw";
}

void CheckOutputWritable(const OutputOptions& o) {
  if (!o.output_dir.empty()) CheckDirectory(o.output_dir, "--output-dir");
  if (o.output.empty() || o.output == "-") return;
  struct stat st;
  if (stat(o.output.c_str(), &st) != 0) {
    // New (or the target of a dangling symlink, checked when written).
    CheckDirectory(DirOf(o.output), "the directory of --output");
    return;
  }
  if (S_ISDIR(st.st_mode)) Usage(fmt::format("--output '{}' is a directory; give a file name", o.output));
  if (!S_ISREG(st.st_mode)) {
    // Written in place: the file itself must be writable, not its directory.
    if (access(o.output.c_str(), W_OK) != 0)
      Usage(fmt::format("--output '{}' is not writable ({})", o.output, ErrnoText(errno)));
    return;
  }
  char real[PATH_MAX];
  CheckDirectory(DirOf(realpath(o.output.c_str(), real) ? std::string(real) : o.output),
                 "the directory of --output");
}

void WriteResult(const Result& r, const std::string& path, const std::string& format,
                 const Progress* progress) {
  const double start = MonotonicSeconds();
  const std::string fmt_name = FormatFor(path, format);
  const bool to_stdout = path.empty() || path == "-";
  // A table result (several arrays, or one with extras) is checked here,
  // before anything is written.
  const bool table = r.kind == kKindTable;
  std::vector<NpzArray> arrays;
  if (table || fmt_name == "npz") arrays = ResultArrays(r);
  const bool several = table && !(arrays.size() == 1 && r.table->entries.at(0).kind == EntryKind::kArray);
  if (several && (fmt_name == "npy" || fmt_name == "raw"))
    Usage(fmt::format("the result of script '{}' is several arrays (a dict, list, tuple or frame); "
                      "write it as .npz (an output path ending in .npz, or --output-format npz) or as text",
                      r.script.Display()));
  // The one array written as npy, raw or text: the result's, or a table's
  // single unmasked array (e.g. a Series without its index).
  const ArrayDesc& desc = table && !several ? arrays[0].desc : r.desc;
  const uint8_t* data = table && !several ? arrays[0].data : r.data();
  uint64_t bytes = desc.nbytes;
  if (several) {
    bytes = 0;
    for (const NpzArray& a : arrays) bytes += a.desc.nbytes;
  }
  struct Told {
    const Progress* progress;
    std::string where;
    uint64_t bytes;
    double start;
    void Done() const {
      if (progress) progress->Output(where, bytes, MonotonicSeconds() - start);
    }
  } told{progress, to_stdout ? "stdout (" + fmt_name + ")" : path, bytes, start};
  if (fmt_name == "text" && to_stdout && several) {
    FormatTextArrays(arrays, std::cout);
    std::cout.flush();
    if (!std::cout) throw SystemError("write output", "stdout", "write", errno ? errno : EIO);
    told.Done();
    return;
  }
  if (fmt_name == "text" && to_stdout) {
    FormatTextArray(desc, data, std::cout);
    std::cout.flush();
    if (!std::cout) throw SystemError("write output", "stdout", "write", errno ? errno : EIO);
    told.Done();
    return;
  }
  Emit emit = [&](int fd, const std::string& where) {
    if (fmt_name == "npz") {
      WriteNpz(arrays, [&](const void* p, uint64_t n) { WriteAll(fd, p, n, where); });
      return;
    }
    if (fmt_name == "text") {
      std::ostringstream os;
      if (several)
        FormatTextArrays(arrays, os);
      else
        FormatTextArray(desc, data, os);
      const std::string s = os.str();
      WriteAll(fd, s.data(), s.size(), where);
      return;
    }
    if (fmt_name == "npy") {
      const std::string header = FormatNpyHeader(desc);
      WriteAll(fd, header.data(), header.size(), where);
    }
    WriteAll(fd, data, desc.nbytes, where);
  };
  if (to_stdout) {
    std::cout.flush();
    emit(1, "stdout");
    told.Done();
    return;
  }
  WriteToPath(path, emit);
  told.Done();
}

void WriteResults(const std::vector<Result>& results, const std::vector<std::string>& titles,
                  const OutputOptions& o, size_t first_number, const Progress* progress) {
  if (!o.output_dir.empty()) {
    for (size_t k = 0; k < results.size(); ++k) {
      // Automatically: .npy for an array, .npz for several (a table).
      std::string f = o.output_format != "auto"        ? o.output_format
                      : results[k].kind == kKindTable ? "npz"
                                                      : "npy";
      const char* ext = f == "npy" ? "npy" : f == "npz" ? "npz" : f == "raw" ? "bin" : "txt";
      WriteResult(results[k],
                  fmt::format("{}/{}-{}.{}", o.output_dir, k + first_number,
                              Stem(results[k].script.path), ext),
                  f, progress);
    }
    return;
  }
  for (size_t k = 0; k < results.size(); ++k) {
    std::cout << "== " << titles[k] << " ==\n";
    WriteResult(results[k], "", "text", progress);
  }
}

namespace {

void PrintWarning(const std::string& script, const std::string& text) {
  std::cout.flush();
  std::cerr << "pyrmap: warning: script '" << script << "': " << text << "\n";
}

}  // namespace

void ReportWarnings(const std::vector<Result>& results) {
  for (const Result& r : results)
    for (const std::string& w : r.warnings) PrintWarning(r.script.Display(), w);
}

void ReportWarnings(const Error& e) {
  for (const std::string& w : e.warnings()) PrintWarning(e.script(), w);
}

}  // namespace pyrmap::cli
