#include "inventory.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include "error.h"
#include "registry.h"
#include "segment.h"

namespace pyrmap {

bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  return kill(pid, 0) == 0 || errno == EPERM;
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

}  // namespace

std::vector<SegmentInfo> ListSegments() {
  std::vector<SegmentInfo> out;
  DIR* dir = opendir(kShmDir);
  if (!dir) throw SystemError("list segments in", kShmDir, "opendir", errno);
  const uid_t me = getuid();
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  while (struct dirent* ent = readdir(dir)) {
    std::string name = ent->d_name;
    if (name.rfind(kNamePrefix, 0) != 0) continue;
    const char* s = name.c_str() + std::char_traits<char>::length(kNamePrefix);
    uint64_t uid = 0, pid = 0;
    if (!TakeNumber(s, &uid)) continue;
    if (me != 0 && uid != me) continue;
    SegmentInfo info;
    info.name = name;
    info.uid = static_cast<uid_t>(uid);
    struct stat st;
    std::string path = fmt::format("{}/{}", kShmDir, name);
    if (stat(path.c_str(), &st) != 0) continue;  // removed meanwhile
    info.size = static_cast<uint64_t>(st.st_size);
    info.age_seconds = static_cast<double>(now.tv_sec - st.st_mtim.tv_sec) +
                       (now.tv_nsec - st.st_mtim.tv_nsec) * 1e-9;
    if (IsPageName(name)) {
      info.owner_pid = static_cast<pid_t>(PageOwner(name));
      try {
        PageInfo p = ReadPageInfo(name);
        info.what = p.ns + "." + p.var;
      } catch (const Error&) {
        info.what = "page";
      }
      // A page without a readable owner is one whose writer died before
      // writing its header; give a live writer a minute to get there.
      info.owner_alive = info.owner_pid != 0 ? ProcessAlive(info.owner_pid)
                                             : info.age_seconds < kUnownedGraceSeconds;
    } else {
      if (TakeNumber(s, &pid)) info.owner_pid = static_cast<pid_t>(pid);
      size_t role = name.find('-', name.find('-', name.find('-', name.find('-') + 1) + 1) + 1);
      info.what = role == std::string::npos ? "" : name.substr(role + 1);
      info.owner_alive = info.owner_pid == 0 || ProcessAlive(info.owner_pid);
    }
    out.push_back(std::move(info));
  }
  closedir(dir);
  std::sort(out.begin(), out.end(),
            [](const SegmentInfo& a, const SegmentInfo& b) { return a.name < b.name; });
  return out;
}

std::vector<SegmentInfo> CollectGarbage() {
  std::vector<SegmentInfo> removed;
  for (auto& info : ListSegments())
    if (!info.owner_alive && Segment::Remove(info.name)) removed.push_back(info);
  return removed;
}

}  // namespace pyrmap
