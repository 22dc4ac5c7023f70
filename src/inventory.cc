#include "inventory.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <cerrno>
#include <map>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "error.h"
#include "registry.h"
#include "segment.h"

namespace pyrmap {

bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno != EPERM) return false;
  // A zombie has exited (its parent has not collected it yet, or never will:
  // an orphan under an init that does not reap).
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno != ENOENT;  // gone meanwhile; else (no /proc) trust kill()
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return n == 0 || errno != ESRCH;
  buf[n] = '\0';
  const char* close_paren = std::strrchr(buf, ')');  // the command name may hold anything
  if (!close_paren || close_paren[1] != ' ') return true;
  const char state = close_paren[2];
  return state != 'Z' && state != 'X';
}

namespace {

constexpr double kUnownedGraceSeconds = 60;

// Parses "<digits>" at the start of `s`, advancing it past a following '-'.
bool TakeNumber(const char*& s, uint64_t* out) {
  if (*s < '0' || *s > '9') return false;
  uint64_t v = 0;
  while (*s >= '0' && *s <= '9') v = v * 10 + static_cast<uint64_t>(*s++ - '0');
  if (*s != '-') return false;
  ++s;
  *out = v;
  return true;
}

// What a name "pyrmap-<uid>-<pid>-<hex>-<role>" or "pyrmap-<uid>-ns-<hash>"
// says; false for other names.
struct NameParts {
  uid_t uid = 0;
  bool page = false;
  pid_t pid = 0;     // call segments (0 if the name has none)
  std::string role;  // call segments
};

bool ParseName(const std::string& name, NameParts* out) {
  if (name.rfind(kNamePrefix, 0) != 0) return false;
  const char* s = name.c_str() + std::char_traits<char>::length(kNamePrefix);
  uint64_t uid = 0, pid = 0;
  if (!TakeNumber(s, &uid)) return false;
  out->uid = static_cast<uid_t>(uid);
  out->page = IsPageName(name);
  if (out->page) return true;
  if (TakeNumber(s, &pid)) out->pid = static_cast<pid_t>(pid);
  const char* dash = std::strchr(s, '-');  // after the random part
  out->role = dash ? dash + 1 : "";
  return true;
}

// The entries of an open segment directory.
std::vector<std::string> Entries(const SegmentDir& dir) {
  std::vector<std::string> names;
  // A descriptor of its own: readdir's position is not shared with dir's.
  int fd = openat(dir.fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw SystemError("list segments in", dir.path(), "open", errno);
  DIR* d = fdopendir(fd);
  if (!d) {
    int err = errno;
    close(fd);
    throw SystemError("list segments in", dir.path(), "fdopendir", err);
  }
  while (struct dirent* ent = readdir(d))
    if (std::strncmp(ent->d_name, kNamePrefix, std::char_traits<char>::length(kNamePrefix)) == 0)
      names.push_back(ent->d_name);
  closedir(d);
  return names;
}

std::optional<SegmentDir> OpenDir(const std::string& path, std::vector<std::string>* skipped) {
  try {
    return SegmentDir::Open(path);
  } catch (const Error& e) {
    if (skipped) skipped->push_back(e.what());
    return std::nullopt;
  }
}

// Whether a page's recorded owner is dead; `seg` open.
bool PageOwnerDead(const Segment& seg, uid_t uid) {
  if (!seg.MadeFor(uid)) return false;
  int64_t owner = PageOwner(seg);
  return owner > 0 && !ProcessAlive(static_cast<pid_t>(owner));
}

}  // namespace

std::vector<SegmentInfo> ListSegments(const std::vector<std::string>& dirs,
                                      std::vector<std::string>* skipped) {
  std::vector<SegmentInfo> out;
  const uid_t me = geteuid();
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  for (const auto& path : dirs) {
    std::optional<SegmentDir> dir = OpenDir(path, skipped);
    if (!dir) continue;
    for (const auto& name : Entries(*dir)) {
      NameParts parts;
      if (!ParseName(name, &parts)) continue;
      if (me != 0 && parts.uid != me) continue;
      struct stat st;
      if (fstatat(dir->fd(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // removed meanwhile
      SegmentInfo info;
      info.dir = dir->path();
      info.name = name;
      info.uid = parts.uid;
      info.file_uid = st.st_uid;
      info.size = static_cast<uint64_t>(st.st_size);
      info.age_seconds = static_cast<double>(now.tv_sec - st.st_mtim.tv_sec) +
                         (now.tv_nsec - st.st_mtim.tv_nsec) * 1e-9;
      if (info.squatted()) {
        info.what = "?";
        info.owner_alive = true;  // not a pyrmap segment: never "dead"
      } else if (parts.page) {
        try {
          Segment seg = Segment::Open(*dir, name, false, parts.uid);
          info.owner_pid = static_cast<pid_t>(PageOwner(seg));
          try {
            PageInfo p = ReadPageInfo(seg);
            info.what = p.ns + "." + p.var;
          } catch (const Error&) {
            info.what = "page";
          }
        } catch (const Error&) {
          info.what = "page";
        }
        // A page without a readable owner is one whose writer died before
        // writing its header; give a live writer a minute to get there.
        info.owner_alive = info.owner_pid != 0 ? ProcessAlive(info.owner_pid)
                                               : info.age_seconds < kUnownedGraceSeconds;
      } else {
        info.owner_pid = parts.pid;
        info.what = parts.role;
        info.owner_alive = info.owner_pid == 0 || ProcessAlive(info.owner_pid);
      }
      out.push_back(std::move(info));
    }
  }
  std::sort(out.begin(), out.end(), [](const SegmentInfo& a, const SegmentInfo& b) {
    return a.dir != b.dir ? a.dir < b.dir : a.name < b.name;
  });
  return out;
}

std::vector<SegmentInfo> ListSegments() { return ListSegments(KnownSegmentDirs()); }

namespace {

constexpr const char* kDeleted = " (deleted)";

// If `path` (as /proc shows a file) is a removed pyrmap segment of one of
// `dirs`, its directory and name.
bool RemovedSegmentPath(const std::string& path, const std::vector<std::string>& dirs, std::string* dir,
                        std::string* name) {
  const size_t tail = std::char_traits<char>::length(kDeleted);
  if (path.size() <= tail || path.compare(path.size() - tail, tail, kDeleted) != 0) return false;
  const std::string file = path.substr(0, path.size() - tail);
  const size_t slash = file.rfind('/');
  if (slash == std::string::npos) return false;
  const std::string d = slash == 0 ? "/" : file.substr(0, slash);
  if (std::find(dirs.begin(), dirs.end(), d) == dirs.end()) return false;
  NameParts parts;
  if (!ParseName(file.substr(slash + 1), &parts)) return false;
  *dir = d;
  *name = file.substr(slash + 1);
  return true;
}

std::vector<pid_t> Processes() {
  std::vector<pid_t> pids;
  DIR* d = opendir("/proc");
  if (!d) return pids;
  while (struct dirent* ent = readdir(d)) {
    char* end = nullptr;
    long v = std::strtol(ent->d_name, &end, 10);
    if (end != ent->d_name && *end == '\0' && v > 0) pids.push_back(static_cast<pid_t>(v));
  }
  closedir(d);
  return pids;
}

}  // namespace

std::vector<UnnamedSegment> ListUnnamedSegments(const std::vector<std::string>& dirs) {
  // Directories as /proc shows them (real paths), and their devices: a
  // process in another mount namespace shows its own /dev/shm under the
  // same path, and its files are not this directory's.
  std::vector<std::string> real;
  std::map<std::string, uint64_t> device;
  for (const auto& d : dirs) {
    char buf[PATH_MAX];
    std::string r = realpath(d.c_str(), buf) ? std::string(buf) : d;
    struct stat st;
    if (stat(r.c_str(), &st) != 0) continue;
    real.push_back(r);
    device[r] = static_cast<uint64_t>(st.st_dev);
  }
  const uid_t me = geteuid();
  // Keyed by (device, inode): one entry per file, whoever holds it.
  std::map<std::pair<uint64_t, uint64_t>, UnnamedSegment> found;
  auto note = [&](uint64_t dev, uint64_t ino, const std::string& dir, const std::string& name, pid_t pid,
                  uint64_t size, bool from_mappings) {
    if (device[dir] != dev) return;  // the same path in another mount namespace
    UnnamedSegment& u = found[{dev, ino}];
    if (u.name.empty()) {
      NameParts parts;
      ParseName(name, &parts);
      u.dir = dir;
      u.name = name;
      u.uid = parts.uid;
      u.owner_pid = parts.pid;
      u.what = parts.page ? "page" : parts.role;
      u.size_from_mappings = true;
    }
    if (!from_mappings) {
      u.size = size;
      u.size_from_mappings = false;
    } else if (u.size_from_mappings) {
      u.size = std::max(u.size, size);
    }
    if (std::find(u.holders.begin(), u.holders.end(), pid) == u.holders.end()) u.holders.push_back(pid);
  };
  for (pid_t pid : Processes()) {
    const std::string base = fmt::format("/proc/{}", pid);
    struct stat pst;
    if (stat(base.c_str(), &pst) != 0 || (me != 0 && pst.st_uid != me)) continue;
    // Descriptors: the file's own size.
    if (DIR* fds = opendir((base + "/fd").c_str())) {
      while (struct dirent* ent = readdir(fds)) {
        if (ent->d_name[0] == '.') continue;
        const std::string link = base + "/fd/" + ent->d_name;
        char target[PATH_MAX];
        ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
        if (n <= 0) continue;
        std::string dir, name;
        if (!RemovedSegmentPath(std::string(target, static_cast<size_t>(n)), real, &dir, &name)) continue;
        struct stat st;
        if (stat(link.c_str(), &st) != 0) continue;  // closed meanwhile
        note(static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), dir, name, pid,
             static_cast<uint64_t>(st.st_size), false);
      }
      closedir(fds);
    }
    // Mappings: "start-end perms offset major:minor inode path".
    FILE* maps = fopen((base + "/maps").c_str(), "re");
    if (!maps) continue;
    char line[PATH_MAX + 256];
    while (fgets(line, sizeof line, maps)) {
      unsigned long long start, end, offset, ino;
      unsigned major, minor;
      int path_at = 0;
      if (sscanf(line, "%llx-%llx %*s %llx %x:%x %llu %n", &start, &end, &offset, &major, &minor, &ino,
                 &path_at) < 6 ||
          path_at == 0)
        continue;
      std::string path(line + path_at);
      while (!path.empty() && (path.back() == '\n' || path.back() == ' ')) path.pop_back();
      std::string dir, name;
      if (!RemovedSegmentPath(path, real, &dir, &name)) continue;
      note(static_cast<uint64_t>(makedev(major, minor)), ino, dir, name, pid, offset + (end - start), true);
    }
    fclose(maps);
  }
  std::vector<UnnamedSegment> out;
  for (auto& [key, u] : found) {
    std::sort(u.holders.begin(), u.holders.end());
    out.push_back(std::move(u));
  }
  std::sort(out.begin(), out.end(), [](const UnnamedSegment& a, const UnnamedSegment& b) {
    return a.dir != b.dir ? a.dir < b.dir : a.name < b.name;
  });
  return out;
}

std::vector<SegmentInfo> CollectGarbage(const std::vector<std::string>& dirs,
                                        std::vector<std::string>* skipped) {
  std::vector<SegmentInfo> removed;
  std::map<std::string, SegmentDir> open;
  for (auto& info : ListSegments(dirs, skipped)) {
    auto it = open.find(info.dir);
    if (it == open.end()) {
      std::optional<SegmentDir> d = OpenDir(info.dir, nullptr);
      if (!d) continue;
      it = open.emplace(info.dir, *d).first;
    }
    const SegmentDir& dir = it->second;
    bool gone = false;
    if (info.squatted()) {
      // Only root can remove another user's file from a shared directory.
      if (geteuid() == 0)
        gone = Segment::RemoveIf(dir, info.name,
                                 [&](const Segment& seg) { return seg.OwnerUid() != info.uid; });
    } else if (!info.owner_alive) {
      const bool page = IsPageName(info.name);
      gone = Segment::RemoveIf(dir, info.name, [&](const Segment& seg) {
        if (!page) return seg.MadeFor(info.uid);
        return PageOwnerDead(seg, info.uid) || (info.owner_pid == 0 && seg.MadeFor(info.uid) &&
                                                PageOwner(seg) == 0);
      });
    }
    if (gone) removed.push_back(info);
  }
  return removed;
}

std::vector<SegmentInfo> CollectGarbage() { return CollectGarbage(KnownSegmentDirs()); }

size_t RemoveDeadSegments() {
  size_t removed = 0;
  try {
    const uid_t me = geteuid();
    const std::string mine = fmt::format("{}{}-", kNamePrefix, me);
    std::map<pid_t, bool> alive;
    for (const auto& path : KnownSegmentDirs()) {
      std::optional<SegmentDir> dir = OpenDir(path, nullptr);
      if (!dir) continue;
      for (const auto& name : Entries(*dir)) {
        if (name.rfind(mine, 0) != 0) continue;
        NameParts parts;
        if (!ParseName(name, &parts)) continue;
        bool gone = false;
        if (parts.page) {
          gone = Segment::RemoveIf(*dir, name, [&](const Segment& seg) { return PageOwnerDead(seg, me); });
        } else if (parts.pid > 0) {
          auto it = alive.find(parts.pid);
          if (it == alive.end()) it = alive.emplace(parts.pid, ProcessAlive(parts.pid)).first;
          if (!it->second)
            gone = Segment::RemoveIf(*dir, name, [&](const Segment& seg) { return seg.MadeFor(me); });
        }
        removed += gone;
      }
    }
  } catch (const std::exception&) {
    // A clean-up at start must never stop what was started.
  }
  return removed;
}

}  // namespace pyrmap
