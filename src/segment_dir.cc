#include "segment_dir.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include "error.h"

namespace pyrmap {

namespace {

std::string Env(const char* name) {
  const char* v = getenv(name);
  return v ? std::string(v) : std::string();
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// realpath() of an existing path, else `path` itself.
std::string Canonical(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) ? std::string(buf) : path;
}

std::shared_ptr<const int> OwnFd(int fd) {
  return std::shared_ptr<const int>(new int(fd), [](const int* p) {
    close(*p);
    delete p;
  });
}

// Whether other users cannot replace or remove entries of a directory with
// this owner and mode: ours and not group/other-writable, or sticky and
// owned by root or us.
bool SafeDirectory(const struct stat& st) {
  const uid_t me = geteuid();
  const bool others_write = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
  const bool sticky = (st.st_mode & S_ISVTX) != 0;
  return (st.st_uid == me && !others_write) || (sticky && (st.st_uid == 0 || st.st_uid == me));
}

bool IsRamFs(const std::string& dir) {
  struct statfs fs;
  if (statfs(dir.c_str(), &fs) != 0) return false;
  return static_cast<unsigned long>(fs.f_type) == TMPFS_MAGIC ||
         static_cast<unsigned long>(fs.f_type) == RAMFS_MAGIC;
}

}  // namespace

std::string DescribeUser(uid_t uid) {
  struct passwd pw, *found = nullptr;
  char buf[4096];
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found && found->pw_name)
    return fmt::format("{} (uid {})", found->pw_name, uid);
  return fmt::format("uid {}", uid);
}

std::string SegmentDirRemedy() {
  return "choose another segment directory: path = \"DISK\" or segment_dir = \"/a/dir\" in R "
         "(or options(pyrmap.segment_dir = )), --segment-dir DISK|DIR on the command, or the "
         "environment variable PYRMAP_SEGMENT_DIR";
}

std::string DiskSegmentDir() {
  std::vector<std::string> bases = {"/var/tmp"};
  if (std::string t = Env("TMPDIR"); !t.empty() && t[0] == '/') bases.push_back(t);
  bases.push_back("/tmp");
  std::string first_writable;
  for (const auto& b : bases) {
    if (!IsDirectory(b) || access(b.c_str(), W_OK | X_OK) != 0) continue;
    if (first_writable.empty()) first_writable = b;
    if (!IsRamFs(b)) return fmt::format("{}/pyrmap-{}", b, geteuid());
  }
  return fmt::format("{}/pyrmap-{}", first_writable.empty() ? "/tmp" : first_writable, geteuid());
}

std::string ResolveSegmentDir(const std::string& choice) {
  std::string c = choice.empty() ? Env(kSegmentDirEnv) : choice;
  if (c.empty() || c == "RAM") return kShmDir;
  if (c == "DISK") return DiskSegmentDir();
  if (c.find('\n') != std::string::npos || c.find('\0') != std::string::npos)
    throw Error(ErrorKind::kUsage, "a segment directory's path must not contain a newline");
  if (c[0] != '/') {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) throw SystemError("resolve segment directory", c, "getcwd", errno);
    c = std::string(cwd) + "/" + c;
  }
  while (c.size() > 1 && c.back() == '/') c.pop_back();
  return Canonical(c);
}

SegmentDir SegmentDir::Open(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR)
      throw Error(ErrorKind::kUsage,
                  fmt::format("segment directory '{}' {} ({})", path,
                              err == ENOENT ? "does not exist" : "is not a directory", ErrnoText(err)))
          .with_errno(err);
    throw SystemError("open segment directory", path, "open", err);
  }
  auto owned = OwnFd(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) throw SystemError("open segment directory", path, "fstat", errno);
  if (!SafeDirectory(st))
    throw Error(ErrorKind::kSystem,
                fmt::format("segment directory '{}' is not safe to use: it is owned by {} with mode "
                            "{:04o}, so {} could replace or remove the segments in it. Use a "
                            "directory that only you can write (yours, mode 0700), or remove this "
                            "one and let pyrmap make it; or {}",
                            path, DescribeUser(st.st_uid), st.st_mode & 07777,
                            st.st_uid == geteuid() ? "other users" : "its owner or other users",
                            SegmentDirRemedy()));
  return SegmentDir(path, std::move(owned));
}

SegmentDir SegmentDir::Choose(const std::string& choice) {
  const std::string c = choice.empty() ? Env(kSegmentDirEnv) : choice;
  const std::string path = ResolveSegmentDir(choice);
  if (c == "DISK" && mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
    throw SystemError("create the segment directory for path = \"DISK\"", path, "mkdir", errno);
  SegmentDir dir = Open(path);
  if (path != kShmDir) RecordSegmentDir(path);
  return dir;
}

// ---- the record of used directories -----------------------------------------

std::string SegmentDirsFile() {
  std::string base = Env("XDG_STATE_HOME");
  if (base.empty() || base[0] != '/') {
    std::string home = Env("HOME");
    if (home.empty() || home[0] != '/') {
      struct passwd pw, *found = nullptr;
      char buf[4096];
      if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &found) == 0 && found && found->pw_dir)
        home = found->pw_dir;
    }
    if (home.empty() || home[0] != '/') return "";
    base = home + "/.local/state";
  }
  return base + "/pyrmap/segment-dirs";
}

namespace {

std::vector<std::string> ReadLines(const std::string& file) {
  std::vector<std::string> lines;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] == '/') lines.push_back(line);
  return lines;
}

void MakeParents(const std::string& file) {
  for (size_t pos = 1; (pos = file.find('/', pos)) != std::string::npos; ++pos)
    mkdir(file.substr(0, pos).c_str(), 0700);  // EEXIST and the like: open() below tells
}

}  // namespace

void RecordSegmentDir(const std::string& path) {
  static std::mutex mu;
  static std::set<std::string> recorded;  // in this process
  std::lock_guard<std::mutex> lock(mu);
  if (recorded.count(path)) return;
  const std::string file = SegmentDirsFile();
  if (file.empty()) return;
  std::vector<std::string> lines = ReadLines(file);
  if (std::find(lines.begin(), lines.end(), path) != lines.end()) {
    recorded.insert(path);
    return;
  }
  MakeParents(file);
  // Directories that are gone are dropped when the file is rewritten; else
  // the new line is appended (one short write: atomic with O_APPEND).
  std::vector<std::string> keep;
  for (const auto& l : lines)
    if (IsDirectory(l)) keep.push_back(l);
  std::string text;
  if (keep.size() != lines.size()) {
    keep.push_back(path);
    for (const auto& l : keep) text += l + "\n";
    std::string tmp = fmt::format("{}.tmp-{}", file, getpid());
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return;
    bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    close(fd);
    if (!ok || rename(tmp.c_str(), file.c_str()) != 0) {
      unlink(tmp.c_str());
      return;
    }
  } else {
    text = path + "\n";
    int fd = open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return;
    bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    close(fd);
    if (!ok) return;
  }
  recorded.insert(path);
}

std::vector<std::string> KnownSegmentDirs(const std::vector<std::string>& extra) {
  std::vector<std::string> candidates = {kShmDir, DiskSegmentDir()};
  try {
    if (!Env(kSegmentDirEnv).empty()) candidates.push_back(ResolveSegmentDir(""));
  } catch (const Error&) {
  }
  if (std::string f = SegmentDirsFile(); !f.empty())
    for (auto& l : ReadLines(f)) candidates.push_back(l);
  for (const auto& e : extra) candidates.push_back(e);
  // The same directory under two spellings is listed once (by its inode).
  std::vector<std::string> out;
  std::vector<std::pair<dev_t, ino_t>> seen;
  for (auto& c : candidates) {
    struct stat st;
    if (stat(c.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    auto id = std::make_pair(st.st_dev, st.st_ino);
    if (std::find(seen.begin(), seen.end(), id) != seen.end()) continue;
    seen.push_back(id);
    out.push_back(c);
  }
  return out;
}

}  // namespace pyrmap
