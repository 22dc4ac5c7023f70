// inventory.h — the pyrmap segments in /dev/shm, their owners, and
// removing those whose owner died.
//
// Call segments carry their owner's pid in their name
// (pyrmap-<uid>-<pid>-...); registry pages (pyrmap-<uid>-ns-...) in their
// header. A segment is an orphan when that process no longer exists. A pid
// that was reused by an unrelated process keeps its segments alive: the safe
// direction (nothing in use is ever removed).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace pyrmap {

// What the name of a pyrmap segment tells.
struct SegmentInfo {
  std::string name;
  uid_t uid = 0;
  pid_t owner_pid = 0;  // 0 if unknown
  uint64_t size = 0;
  double age_seconds = 0;
  bool owner_alive = true;
  // What it holds: a call segment's role ("data", "meta-0", "res-0"), or a
  // page's "<namespace>.<variable>".
  std::string what;
};

// The pyrmap segments in /dev/shm (names starting "pyrmap-"), with their
// owner pid (from the name, or from the page header for registry pages), size
// and age. Segments of other users are listed only for root.
std::vector<SegmentInfo> ListSegments();

// True if `pid` is a live process (kill(pid, 0) succeeds or fails with EPERM).
bool ProcessAlive(pid_t pid);

// Removes segments whose owner process is dead and that belong to this user
// (all users for root). Returns what was removed.
std::vector<SegmentInfo> CollectGarbage();

}  // namespace pyrmap
