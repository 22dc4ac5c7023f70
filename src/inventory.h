// inventory.h — the pyrmap segments in the segment directories, their
// owners, and removing those whose owner died.
//
// Call segments carry their owner's pid in their name
// (pyrmap-<uid>-<pid>-...); registry pages (pyrmap-<uid>-ns-...) in their
// header. A segment is an orphan when that process no longer exists. A pid
// that was reused by an unrelated process keeps its segments alive: the safe
// direction (nothing in use is ever removed).
//
// Where: every directory of KnownSegmentDirs() (segment_dir.h) — /dev/shm,
// the DISK directory, $PYRMAP_SEGMENT_DIR, the recorded ones — plus any the
// caller names. Removal goes through Segment::RemoveIf: a name registered
// again meanwhile is never removed in its stead.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "segment_dir.h"

namespace pyrmap {

// What a pyrmap segment's name, file and header tell.
struct SegmentInfo {
  std::string dir;   // the segment directory
  std::string name;
  uid_t uid = 0;       // the user in the name
  uid_t file_uid = 0;  // the file's owner: another user's file under a
                       // pyrmap name (squatted) when != uid
  pid_t owner_pid = 0;  // 0 if unknown
  uint64_t size = 0;
  double age_seconds = 0;
  bool owner_alive = true;
  // What it holds: a call segment's role ("data", "meta-0", "res-0",
  // "page" for a page being written), or a page's "<namespace>.<variable>".
  std::string what;
  bool squatted() const { return file_uid != uid; }
};

// The pyrmap segments (names starting "pyrmap-") in `dirs`, with their owner
// pid (from the name, or from the page header for registry pages), size and
// age. Segments of other users are listed only for root; a file of another
// user under this user's segment name is listed (squatted()). A directory
// that cannot be read is skipped; `skipped` (may be null) gets one line per
// such directory saying why.
std::vector<SegmentInfo> ListSegments(const std::vector<std::string>& dirs,
                                      std::vector<std::string>* skipped = nullptr);
std::vector<SegmentInfo> ListSegments();  // in KnownSegmentDirs()

// A pyrmap segment whose name is gone but whose memory a process still
// holds (an open descriptor or a mapping): the input of a running call
// once it has been handed to its scripts, the result a view still maps, a
// page released while views of it live. Its memory is freed when the last
// holder lets go; gc has nothing to remove.
struct UnnamedSegment {
  std::string dir;   // the segment directory it was made in
  std::string name;  // the name it had
  uid_t uid = 0;     // the user in the name
  pid_t owner_pid = 0;  // the pid in the name (0 for a page)
  std::string what;  // the role in the name ("data", "res-0", ...), or "page"
  uint64_t size = 0;  // the file's size (for a segment only mapped: the
                      // extent its mappings cover, rounded up to pages)
  bool size_from_mappings = false;
  std::vector<pid_t> holders;  // the processes that hold it, ascending
};

// The unnamed pyrmap segments of `dirs` that this user's processes hold
// (every user's for root), found in /proc/<pid>/fd and /proc/<pid>/maps;
// only files on the directory's own device count (a process in another
// mount namespace shows its own /dev/shm under the same path). A process
// whose /proc entries cannot be read is passed over. One entry per file,
// in name order.
std::vector<UnnamedSegment> ListUnnamedSegments(const std::vector<std::string>& dirs);

// True if `pid` is a live process: kill(pid, 0) succeeds or fails with EPERM,
// and it is not a zombie (it has exited; its parent did not collect it yet).
bool ProcessAlive(pid_t pid);

// Removes segments whose owner process is dead and that belong to this user
// (all users for root; root also removes files squatted under a pyrmap
// name). Returns what was removed.
std::vector<SegmentInfo> CollectGarbage(const std::vector<std::string>& dirs,
                                        std::vector<std::string>* skipped = nullptr);
std::vector<SegmentInfo> CollectGarbage();  // in KnownSegmentDirs()

// The cheap clean-up run when the R package is loaded and when the command
// starts a run: removes this user's segments whose owner is dead from the
// known directories — one readdir each; a call segment is judged by the pid
// in its name (no stat, no open unless it is removed), a page by its header.
// Never throws. Returns how many it removed.
size_t RemoveDeadSegments();

}  // namespace pyrmap
