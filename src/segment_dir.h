// segment_dir.h — where segments live: the segment directory.
//
// Every segment is a file in a segment directory, opened relative to the
// directory's descriptor. The default is /dev/shm (RAM); "DISK" stands for a
// private directory on a disk-backed file system, for inputs larger than
// /dev/shm (a 64 MB /dev/shm in a container) or than RAM.
//
// The user's choice, first wins: the explicit argument (R `segment_dir =` /
// `path =`, the command's `--segment-dir`), then the R option
// `pyrmap.segment_dir` (read by the R package), then the environment
// variable PYRMAP_SEGMENT_DIR, then /dev/shm. Each is "RAM", "DISK" or a
// directory path.
//
// Other users are adversaries: a directory is used only when they cannot
// replace or remove what we put in it — it is ours and not writable by group
// or others, or it is sticky (like /dev/shm and /tmp) and owned by root or
// us. Anything else is refused with an error naming the directory and its
// owner.
//
// Directories other than /dev/shm that pyrmap used are recorded, one path a
// line, in $XDG_STATE_HOME/pyrmap/segment-dirs (default
// ~/.local/state/pyrmap/segment-dirs), so that `pyrmap ls` / `pyrmap gc` and
// the clean-up at start find their segments later.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace pyrmap {

inline constexpr const char* kShmDir = "/dev/shm";
inline constexpr const char* kSegmentDirEnv = "PYRMAP_SEGMENT_DIR";

// An open, checked segment directory. Copies share one descriptor, which is
// closed with the last copy. Safe to use from several threads.
class SegmentDir {
 public:
  // The directory the user chose (see above): "" means not given
  // ($PYRMAP_SEGMENT_DIR, else /dev/shm). "DISK" is created (mode 0700) if
  // needed. A directory other than /dev/shm is recorded as used.
  // Error(kUsage) for a path that is not an existing directory,
  // Error(kSystem) for one that is not safe (see Open).
  static SegmentDir Choose(const std::string& choice);

  // Opens the directory `path` (absolute) and checks its owner and mode.
  static SegmentDir Open(const std::string& path);

  // No directory (the directory of an unnamed or adopted segment): empty
  // path, fd() -1.
  SegmentDir() = default;

  const std::string& path() const { return path_; }
  int fd() const { return fd_ ? *fd_ : -1; }
  // path() + "/" + name.
  std::string PathOf(const std::string& name) const { return path_ + "/" + name; }

 private:
  SegmentDir(std::string path, std::shared_ptr<const int> fd)
      : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  std::shared_ptr<const int> fd_;
};

// The absolute path `choice` stands for ("" / "RAM" / "DISK" / a path, as
// for Choose), without opening or creating anything.
std::string ResolveSegmentDir(const std::string& choice);

// The directory "DISK" stands for: pyrmap-<uid> in the first of /var/tmp,
// $TMPDIR and /tmp that is a writable directory on a file system other than
// tmpfs/ramfs (when none is, the first writable one).
std::string DiskSegmentDir();

// Directories that may hold this user's segments: /dev/shm, the DISK
// directory, $PYRMAP_SEGMENT_DIR, the recorded ones, and `extra` — those
// that exist, each once.
std::vector<std::string> KnownSegmentDirs(const std::vector<std::string>& extra = {});

// Records `path` as used (see above); failures to record are ignored.
void RecordSegmentDir(const std::string& path);

// The file the used directories are recorded in ("" when there is no home).
std::string SegmentDirsFile();

// How to choose another segment directory, for error messages.
std::string SegmentDirRemedy();

// "alice (uid 1000)", or "uid 1000" when the user has no name.
std::string DescribeUser(uid_t uid);

}  // namespace pyrmap
